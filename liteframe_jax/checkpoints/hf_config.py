"""Reads an InternVL3 (Qwen2/Qwen2.5 LLM), dense InternVL3.5 (Qwen3 LLM) or InternVL3-9B (InternLM3 LLM) checkpoint's
own config.json (OpenGVLab or transformers style) and tokenizer files into our `InternVLConfig`, and writes our
config back as either style's config.json (export). Other LLMs (the MoE LLMs of InternVL3.5) are refused.

Written configs carry everything `config_from_hf` reads; a few of our fields have no place in them (the qkv layout
is the layout's own, `dtype` / `attention_impl` / `remat` are runtime choices, `<img>` / `</img>` ids come from the
tokenizer files only). `export_internvl` checks that the written directory reads back as the config it exported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liteframe_jax.models.config import ConfigError, InternVLConfig, TextConfig, VisionConfig

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json", "chat_template.jinja",
                   "chat_template.json")


def read_special_tokens(directory: Path) -> dict[str, int]:
    """token text -> id for added/special tokens declared in the tokenizer files that are present."""
    found: dict[str, int] = {}
    cfg = directory / "tokenizer_config.json"
    if cfg.exists():
        for tid, tok in json.loads(cfg.read_text()).get("added_tokens_decoder", {}).items():
            found[tok["content"] if isinstance(tok, dict) else tok] = int(tid)
    added = directory / "added_tokens.json"
    if added.exists():
        found.update({k: int(v) for k, v in json.loads(added.read_text()).items()})
    tok = directory / "tokenizer.json"
    if tok.exists():
        for entry in json.loads(tok.read_text()).get("added_tokens", []):
            found.setdefault(entry["content"], int(entry["id"]))
    return found


def _rope(text: dict[str, Any]) -> tuple[float, str, float]:
    params = text.get("rope_parameters") or {}
    theta = params.get("rope_theta", text.get("rope_theta", 10000.0))
    scaling = text.get("rope_scaling") or ({k: v for k, v in params.items() if k != "rope_theta"} or None)
    kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
    if kind in ("default", None):
        return float(theta), "none", 1.0
    if kind != "dynamic":
        raise ConfigError(f"unsupported rope scaling {scaling!r} (supported: none, dynamic)")
    return float(theta), "dynamic", float(scaling.get("factor", 1.0))


# LLM model_type -> architecture: InternVL3 (Qwen2/Qwen2.5), dense InternVL3.5 (Qwen3), InternVL3-9B (InternLM3).
# Not qwen3_moe / gpt_oss (the InternVL3.5 MoE models).
_LLMS = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "internlm3": "InternLM3ForCausalLM"}
QWEN3_DEFAULT_HEAD_DIM = 128  # transformers' Qwen3Config default when a config omits head_dim
INTERNLM3_DEFAULT_HEAD_DIM = 128  # transformers' InternLM3Config default when a config omits head_dim


def _internlm3_fields(text: dict[str, Any]) -> dict[str, Any]:
    """InternLM3 (Llama-shaped): `qkv_bias` biases q/k/v, `bias` o_proj and the MLP (original names; transformers'
    InternLM3Config calls them `attention_bias` / `mlp_bias` and, running Llama, requires them equal)."""
    qkv_bias = bool(text.get("qkv_bias", text.get("attention_bias", False)))
    bias = bool(text.get("bias", text.get("mlp_bias", False)))
    if qkv_bias != bias:
        raise ConfigError(f"InternLM3 qkv_bias={qkv_bias} != bias={bias} is not supported (transformers' InternLM3 "
                          "refuses it too; InternVL3-9B has neither)")
    head_dim = text.get("head_dim")
    if head_dim is None:  # transformers assumes 128, the original remote code hidden_size / heads
        head_dim = text["hidden_size"] // text["num_attention_heads"]
        if head_dim != INTERNLM3_DEFAULT_HEAD_DIM:
            raise ConfigError(f"InternLM3 config without head_dim: transformers assumes {INTERNLM3_DEFAULT_HEAD_DIM}, "
                              f"hidden_size / num_attention_heads is {head_dim}; add head_dim to the llm config")
    return dict(qkv_bias=qkv_bias, o_mlp_bias=bias, explicit_head_dim=head_dim)


def _family_fields(model_type: str, text: dict[str, Any]) -> dict[str, Any]:
    """The TextConfig fields that tell the LLM families apart."""
    if model_type == "qwen3":
        if text.get("attention_bias", False):
            raise ConfigError("Qwen3 attention_bias=True (q/k/v/o biases) is not supported; InternVL3.5 has none")
        return dict(qkv_bias=False, qk_norm=True, explicit_head_dim=text.get("head_dim") or QWEN3_DEFAULT_HEAD_DIM)
    if model_type == "internlm3":
        return _internlm3_fields(text)
    if text.get("head_dim") not in (None, text["hidden_size"] // text["num_attention_heads"]):
        raise ConfigError(f"text head_dim={text['head_dim']} != hidden_size/num_heads is not supported")
    return dict(qkv_bias=True)


def text_config_from_dict(text: dict[str, Any], tie: bool) -> TextConfig:
    """An LLM config dict (original `llm_config` or transformers `text_config`, any supported family) -> ours."""
    model_type = text.get("model_type", "qwen2")
    arch = (text.get("architectures") or [_LLMS.get(model_type, "Qwen2ForCausalLM")])[0]
    if model_type not in _LLMS or arch != _LLMS[model_type]:
        raise ConfigError(f"unsupported LLM {text.get('model_type')!r}/{arch!r}: only Qwen2/Qwen2.5 InternVL3, "
                          "dense Qwen3 InternVL3.5 and InternLM3 InternVL3-9B models are supported")
    if model_type == "qwen3" and text.get("use_sliding_window", False):
        raise ConfigError("Qwen3 use_sliding_window=True is not supported")
    if text.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"unsupported LLM activation {text['hidden_act']!r} (InternVL's LLMs use 'silu')")
    theta, scaling, factor = _rope(text)
    return TextConfig(
        vocab_size=text["vocab_size"], hidden_size=text["hidden_size"], num_layers=text["num_hidden_layers"],
        num_heads=text["num_attention_heads"],
        num_kv_heads=text.get("num_key_value_heads") or text["num_attention_heads"], mlp_dim=text["intermediate_size"],
        rope_theta=theta, rope_scaling=scaling, rope_scaling_factor=factor,
        rms_norm_eps=text.get("rms_norm_eps", 1e-5 if model_type == "internlm3" else 1e-6),
        max_position_embeddings=text.get("max_position_embeddings", 32768), tie_word_embeddings=tie,
        **_family_fields(model_type, text))


def llm_family(t: TextConfig) -> str:
    """The LLM family (`model_type`) a TextConfig is: qwen2, qwen3 or internlm3. ConfigError for none of them."""
    if t.qk_norm and not t.qkv_bias and not t.o_mlp_bias:
        return "qwen3"
    if not t.qk_norm and t.qkv_bias and not t.o_mlp_bias and t.explicit_head_dim is None:
        return "qwen2"
    if not t.qk_norm and t.qkv_bias == t.o_mlp_bias:
        return "internlm3"
    raise ConfigError(f"a text config with qk_norm={t.qk_norm}, qkv_bias={t.qkv_bias}, o_mlp_bias={t.o_mlp_bias} "
                      "is none of Qwen2, Qwen3, InternLM3")


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def _check_act(name: str, act: str | None) -> None:
    if act not in (None, "gelu"):
        raise ConfigError(f"unsupported {name} activation {act!r} (InternVL3 uses exact 'gelu')")


def config_from_hf(directory: str | Path, qkv_layout: str, image_token_id: int | None = None) -> InternVLConfig:
    """Builds our config from `directory/config.json` (either style) and its tokenizer files."""
    directory = Path(directory)
    path = directory / "config.json"
    if not path.exists():
        raise ConfigError(f"{directory} has no config.json")
    raw = json.loads(path.read_text())
    if "llm_config" in raw:  # OpenGVLab InternVLChatConfig
        v, text = raw["vision_config"], raw["llm_config"]
        _check_act("vision", v.get("hidden_act"))
        patch = int(v["patch_size"])
        vision = VisionConfig(
            hidden_size=v["hidden_size"], num_layers=v["num_hidden_layers"], num_heads=v["num_attention_heads"],
            mlp_dim=v["intermediate_size"], image_size=_pair(raw.get("force_image_size") or v["image_size"]),
            patch_size=patch, num_channels=v.get("num_channels", 3), qkv_bias=bool(v.get("qkv_bias", True)),
            qkv_layout=qkv_layout, qk_norm=bool(v.get("qk_normalization", False)),
            norm_type=v.get("norm_type", "rms_norm"), layer_norm_eps=v.get("layer_norm_eps", 1e-6),
            select_layer=raw.get("select_layer", -1))
        tie = bool(text.get("tie_word_embeddings", False))
        ps_version = raw.get("ps_version", "v1")
        token_id = raw.get("img_context_token_id")
    elif "text_config" in raw:  # transformers InternVLConfig
        v, text = raw["vision_config"], raw["text_config"]
        _check_act("vision", v.get("hidden_act"))
        _check_act("projector", raw.get("projector_hidden_act"))
        if not v.get("use_absolute_position_embeddings", True):
            raise ConfigError("vision use_absolute_position_embeddings=False is not supported")
        if raw.get("vision_feature_select_strategy", "default") != "default":
            raise ConfigError("only vision_feature_select_strategy='default' (drop CLS) is supported")
        layer = raw.get("vision_feature_layer", -1)
        if not isinstance(layer, int):
            raise ConfigError(f"vision_feature_layer={layer!r}: only a single layer is supported")
        patch = _pair(v.get("patch_size", 14))
        if patch[0] != patch[1]:
            raise ConfigError(f"non-square patch size {patch} is not supported")
        vision = VisionConfig(
            hidden_size=v["hidden_size"], num_layers=v["num_hidden_layers"], num_heads=v["num_attention_heads"],
            mlp_dim=v["intermediate_size"], image_size=_pair(v.get("image_size", 448)), patch_size=patch[0],
            num_channels=v.get("num_channels", 3), qkv_bias=bool(v.get("attention_bias", False)),
            qkv_layout=qkv_layout, qk_norm=bool(v.get("use_qk_norm", False)),
            norm_type=v.get("norm_type", "layer_norm"), layer_norm_eps=v.get("layer_norm_eps", 1e-6),
            select_layer=layer)
        tie = bool(raw.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
        ps_version = "v2"
        token_id = raw.get("image_token_id", raw.get("image_token_index"))
    else:
        raise ConfigError(f"{path} is neither an OpenGVLab (llm_config) nor a transformers (text_config) "
                          "InternVL config")
    specials = read_special_tokens(directory)
    token_id = image_token_id if image_token_id is not None else specials.get("<IMG_CONTEXT>", token_id)
    if token_id is None:
        raise ConfigError(f"cannot resolve the <IMG_CONTEXT> token id: not in {path} nor in tokenizer files; "
                          "pass it explicitly (--image_token_id)")
    text_cfg = text_config_from_dict(text, tie)
    eos = specials.get("<|im_end|>", text.get("eos_token_id"))
    eos = eos[0] if isinstance(eos, list) else eos
    pad = specials.get("<|endoftext|>", text.get("pad_token_id"))
    in_vocab = lambda i: i if i is not None and 0 <= i < text_cfg.vocab_size else None
    return InternVLConfig(
        vision=vision, text=text_cfg, downsample_ratio=float(raw.get("downsample_ratio", 0.5)),
        ps_version=ps_version, image_token_id=int(token_id),
        img_start_token_id=in_vocab(specials.get("<img>")), img_end_token_id=in_vocab(specials.get("</img>")),
        eos_token_id=in_vocab(eos), pad_token_id=in_vocab(pad)).validate()


# ---------------------------------------------------------------------------------------------- export
def _size(hw: tuple[int, int]):
    return hw[0] if hw[0] == hw[1] else list(hw)


def _llm_fields(t: TextConfig, original: bool) -> dict[str, Any]:
    """Qwen2 / Qwen3 / InternLM3 fields both styles share (the rope fields differ); `original` names InternLM3's
    biases as its remote code does (qkv_bias / bias), otherwise as transformers (attention_bias / mlp_bias)."""
    family = llm_family(t)
    own = {"qwen2": {"use_sliding_window": False},
           "qwen3": {"head_dim": t.head_dim, "attention_bias": False, "use_sliding_window": False},
           "internlm3": {"head_dim": t.head_dim, **({"qkv_bias": t.qkv_bias, "bias": t.o_mlp_bias} if original else
                                                   {"attention_bias": t.qkv_bias, "mlp_bias": t.o_mlp_bias})}}
    return {"architectures": [_LLMS[family]], "model_type": family, **own[family], "hidden_size": t.hidden_size,
            "intermediate_size": t.mlp_dim, "num_hidden_layers": t.num_layers, "num_attention_heads": t.num_heads,
            "num_key_value_heads": t.num_kv_heads, "vocab_size": t.vocab_size,
            "rms_norm_eps": t.rms_norm_eps, "max_position_embeddings": t.max_position_embeddings,
            "tie_word_embeddings": t.tie_word_embeddings, "hidden_act": "silu", "attention_dropout": 0.0}


def _token_ids(cfg: InternVLConfig) -> dict[str, int]:
    return {k: v for k, v in (("eos_token_id", cfg.eos_token_id), ("pad_token_id", cfg.pad_token_id)) if v is not None}


def original_config_dict(cfg: InternVLConfig, torch_dtype: str) -> dict[str, Any]:
    """OpenGVLab `InternVLChatConfig` config.json (architectures ["InternVLChatModel"], llm_config / vision_config);
    the chat fields (template, dynamic tiling) are InternVL3's."""
    v, t = cfg.vision, cfg.text
    llm = _llm_fields(t, original=True) | {"rope_theta": t.rope_theta, "torch_dtype": torch_dtype, **_token_ids(cfg)}
    if t.rope_scaling != "none":
        llm["rope_scaling"] = {"type": t.rope_scaling, "factor": t.rope_scaling_factor}
    vision = {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": v.hidden_size,
              "num_hidden_layers": v.num_layers, "num_attention_heads": v.num_heads, "intermediate_size": v.mlp_dim,
              "image_size": _size(v.image_size), "patch_size": v.patch_size, "num_channels": v.num_channels,
              "qkv_bias": v.qkv_bias, "qk_normalization": v.qk_norm, "norm_type": v.norm_type,
              "layer_norm_eps": v.layer_norm_eps, "hidden_act": "gelu", "dropout": 0.0, "attention_dropout": 0.0,
              "drop_path_rate": 0.0, "use_flash_attn": False, "torch_dtype": torch_dtype}
    return {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat",
            "downsample_ratio": cfg.downsample_ratio, "ps_version": cfg.ps_version, "select_layer": v.select_layer,
            "force_image_size": _size(v.image_size), "img_context_token_id": cfg.image_token_id,
            "template": "internvl2_5", "dynamic_image_size": True, "use_thumbnail": True, "max_dynamic_patch": 12,
            "min_dynamic_patch": 1, "pad2square": False, "use_backbone_lora": 0, "use_llm_lora": 0,
            "tie_word_embeddings": t.tie_word_embeddings, "torch_dtype": torch_dtype,
            "vision_config": vision, "llm_config": llm}


def text_config_dict(t: TextConfig) -> dict[str, Any]:
    """Our TextConfig -> a transformers text config dict (Qwen2Config / Qwen3Config / InternLM3Config fields with
    `model_type`), as InternVLConfig's `text_config` holds it."""
    rope = {"rope_theta": t.rope_theta, "rope_type": "default" if t.rope_scaling == "none" else t.rope_scaling}
    if t.rope_scaling != "none":
        rope["factor"] = t.rope_scaling_factor
    text = _llm_fields(t, original=False) | {"rope_parameters": rope}
    del text["architectures"]
    return text


def transformers_config_dict(cfg: InternVLConfig, torch_dtype: str) -> dict[str, Any]:
    """transformers `InternVLConfig` config.json (InternVLForConditionalGeneration), as `save_pretrained` writes it."""
    v, t = cfg.vision, cfg.text
    text = text_config_dict(t) | _token_ids(cfg)
    vision = {"model_type": "internvl_vision", "hidden_size": v.hidden_size, "num_hidden_layers": v.num_layers,
              "num_attention_heads": v.num_heads, "intermediate_size": v.mlp_dim, "image_size": list(v.image_size),
              "patch_size": [v.patch_size, v.patch_size], "num_channels": v.num_channels,
              "attention_bias": v.qkv_bias, "use_qk_norm": v.qk_norm, "norm_type": v.norm_type,
              "layer_norm_eps": v.layer_norm_eps, "hidden_act": "gelu", "use_absolute_position_embeddings": True,
              "use_mean_pooling": True, "layer_scale_init_value": 0.1}
    return {"architectures": ["InternVLForConditionalGeneration"], "model_type": "internvl",
            "downsample_ratio": cfg.downsample_ratio, "image_token_id": cfg.image_token_id,
            "image_seq_length": cfg.tokens_per_frame(), "projector_hidden_act": "gelu",
            "vision_feature_layer": v.select_layer, "vision_feature_select_strategy": "default",
            "tie_word_embeddings": t.tie_word_embeddings, "dtype": torch_dtype,
            "vision_config": vision, "text_config": text}
