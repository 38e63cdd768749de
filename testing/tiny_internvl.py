"""Hub-free tiny InternVL3 reference model (PyTorch), used by the parity tests and the quickstart.

This module builds a tiny, random, fully deterministic transformers ``InternVLForConditionalGeneration``
(InternViT-style vision tower + pixel shuffle + ``mlp1`` projector + Qwen2 LLM), writes it to disk in the three
weight layouts a converter has to read, and computes the PyTorch reference outputs that the JAX port is compared
against. Nothing is downloaded: everything is built from configs.

Public API
----------
* :class:`TinySpec`                    sizes / ids / seed of the tiny model (frozen dataclass).
* :func:`build_reference`              the seeded fp32 eval-mode eager-attention HF model.
* :func:`write_checkpoint`             ``"original"`` (OpenGVLab remote-code) / ``"hf"`` (``save_pretrained``) /
                                       ``"hf_runtime"`` (in-memory ``state_dict()`` key names) checkpoints.
* :func:`reference_outputs`            vision hidden states, projected image features, logits, greedy tokens.
* :func:`make_inputs` / :class:`TinyInputs`   deterministic pixels + prompts with image placeholders.
* :func:`hf_runtime_to_original`, :func:`original_to_hf_runtime`   key mappings (fusing / splitting ``attn.qkv``).
* :func:`expected_key_counts`          number of tensors per layout.
* :func:`position_ids_from_mask`       the position-id convention used for padded batches.
* :func:`tokens_per_frame`             visual tokens per frame for a pixel size.

Token ids (``TinySpec`` properties): ``pad=0``, ``bos=1``, ``eos=2`` (fields), ``img_start = vocab-3`` (``<img>``),
``img_end = vocab-2`` (``</img>``), ``image_token_id = vocab-1`` (``<IMG_CONTEXT>``). Random text tokens are drawn
from ``[3, vocab-3)`` so they never collide with a special id.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from transformers import InternVLForConditionalGeneration

__all__ = [
    "TinySpec",
    "TinyInputs",
    "LAYOUTS",
    "build_reference",
    "write_checkpoint",
    "reference_outputs",
    "make_inputs",
    "hf_runtime_to_original",
    "original_to_hf_runtime",
    "expected_key_counts",
    "position_ids_from_mask",
    "tokens_per_frame",
    "original_config_dict",
    "tokenizer_config_dict",
]

LAYOUTS = ("original", "hf", "hf_runtime")

# Files this module may write into a checkpoint directory; removed before writing so layouts never mix.
_SINGLE_FILE = "model.safetensors"
_INDEX_FILE = "model.safetensors.index.json"


# ----------------------------------------------------------------------------------------------------------------
# Spec
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TinySpec:
    """Sizes of the tiny InternVL3. Defaults: 4x4 patch grid at 56 px -> 4 visual tokens per frame."""

    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 4
    vision_mlp: int = 256
    image_size: int = 56
    patch_size: int = 14
    use_qk_norm: bool = False
    vision_feature_layer: int = -1
    text_hidden: int = 96
    text_layers: int = 2
    text_heads: int = 6
    text_kv_heads: int = 2
    text_mlp: int = 160
    vocab_size: int = 300
    rope_theta: float = 1e6
    rms_norm_eps: float = 1e-6
    seed: int = 0
    # Extra fields (not in the original brief; defaults keep the brief's constructor calls valid).
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2
    max_position_embeddings: int = 512
    # "qwen2" (InternVL3), "qwen3" (InternVL3.5: per-head q/k RMSNorm, no q/k/v bias, explicit head_dim) or
    # "internlm3" (InternVL3-9B: transformers runs it as Llama; biases on all of q/k/v/o and the MLP, or none).
    text_model_type: str = "qwen2"
    explicit_head_dim: int | None = None  # Qwen3 / InternLM3 only; None: text_hidden // text_heads
    internlm3_bias: bool = False  # InternLM3 only: qkv_bias = bias (transformers' attention_bias = mlp_bias)
    rope_dynamic_factor: float | None = None  # dynamic NTK RoPE scaling (changes nothing below max_position_embeddings)

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if (self.image_size // self.patch_size) % 2:
            raise ValueError("the patch grid must be even (pixel shuffle with ratio 0.5)")
        if self.text_model_type not in ("qwen2", "qwen3", "internlm3"):
            raise ValueError("text_model_type must be 'qwen2', 'qwen3' or 'internlm3'")
        if self.explicit_head_dim is not None and self.text_model_type == "qwen2":
            raise ValueError("explicit_head_dim is a Qwen3 / InternLM3 setting")
        if self.internlm3_bias and self.text_model_type != "internlm3":
            raise ValueError("internlm3_bias is an InternLM3 setting")
        text_split = self.explicit_head_dim is None and self.text_hidden % self.text_heads
        if self.vision_hidden % self.vision_heads or text_split:
            raise ValueError("heads must divide hidden sizes")
        if self.text_heads % self.text_kv_heads:
            raise ValueError("text_kv_heads must divide text_heads")
        if max(self.pad_token_id, self.bos_token_id, self.eos_token_id) >= self.vocab_size - 3:
            raise ValueError("pad/bos/eos must be below the image special ids")
        n_states = self.vision_layers + 1  # embeddings + each block
        if not -n_states <= self.vision_feature_layer < n_states:
            raise ValueError("vision_feature_layer out of range")

    @property
    def image_token_id(self) -> int:
        """``<IMG_CONTEXT>`` placeholder id."""
        return self.vocab_size - 1

    @property
    def img_start(self) -> int:
        """``<img>`` id."""
        return self.vocab_size - 3

    @property
    def img_end(self) -> int:
        """``</img>`` id."""
        return self.vocab_size - 2

    @property
    def grid(self) -> int:
        """Patch grid side at the native ``image_size``."""
        return self.image_size // self.patch_size

    @property
    def image_seq_length(self) -> int:
        """Visual tokens per frame at the native ``image_size``: ``(grid // 2) ** 2``."""
        return (self.grid // 2) ** 2

    @property
    def text_head_dim(self) -> int:
        return self.explicit_head_dim or self.text_hidden // self.text_heads

    @property
    def llm_architecture(self) -> str:
        return {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                "internlm3": "InternLM3ForCausalLM"}[self.text_model_type]

    def llm_fields(self, original: bool = False) -> dict:
        """The text-config fields that differ between the LLM families (`original`: InternLM3's remote-code bias
        names qkv_bias / bias instead of transformers' attention_bias / mlp_bias), plus the RoPE scaling."""
        rope = {}
        if self.rope_dynamic_factor is not None:
            rope = {"rope_scaling": {"rope_type": "dynamic", "factor": self.rope_dynamic_factor}}
        if self.text_model_type == "qwen2":
            return {"model_type": "qwen2", "use_sliding_window": False, **rope}
        if self.text_model_type == "qwen3":
            return {"model_type": "qwen3", "head_dim": self.text_head_dim, "attention_bias": False,
                    "use_sliding_window": False, **rope}
        bias = {"qkv_bias": self.internlm3_bias, "bias": self.internlm3_bias} if original else \
            {"attention_bias": self.internlm3_bias, "mlp_bias": self.internlm3_bias}
        return {"model_type": "internlm3", "head_dim": self.text_head_dim, **bias, **rope}


def tokens_per_frame(spec: TinySpec, pixel_size: int | None = None) -> int:
    """Visual tokens per frame for square frames of ``pixel_size`` px (default ``spec.image_size``)."""
    s = spec.image_size if pixel_size is None else int(pixel_size)
    return (s // spec.patch_size // 2) ** 2


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def _hf_config(spec: TinySpec):
    from transformers import InternVLConfig

    cfg = InternVLConfig(
        vision_config=dict(
            hidden_size=spec.vision_hidden,
            num_hidden_layers=spec.vision_layers,
            num_attention_heads=spec.vision_heads,
            intermediate_size=spec.vision_mlp,
            image_size=spec.image_size,
            patch_size=spec.patch_size,
            num_channels=3,
            attention_bias=True,
            use_qk_norm=spec.use_qk_norm,
            norm_type="layer_norm",
            layer_norm_eps=1e-6,
            layer_scale_init_value=0.1,
            hidden_act="gelu",
            use_mean_pooling=True,
            use_absolute_position_embeddings=True,
        ),
        text_config=dict(
            **spec.llm_fields(),
            vocab_size=spec.vocab_size,
            hidden_size=spec.text_hidden,
            intermediate_size=spec.text_mlp,
            num_hidden_layers=spec.text_layers,
            num_attention_heads=spec.text_heads,
            num_key_value_heads=spec.text_kv_heads,
            rms_norm_eps=spec.rms_norm_eps,
            rope_theta=spec.rope_theta,
            max_position_embeddings=spec.max_position_embeddings,
            hidden_act="silu",
            tie_word_embeddings=False,
            bos_token_id=spec.bos_token_id,
            eos_token_id=spec.eos_token_id,
            pad_token_id=spec.pad_token_id,
        ),
        tie_word_embeddings=False,  # 5.x defaults to True at the top level (ties lm_head to embed_tokens)
        image_token_id=spec.image_token_id,
        image_seq_length=spec.image_seq_length,
        downsample_ratio=0.5,
        projector_hidden_act="gelu",
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy="default",
        attn_implementation="eager",
    )
    # Belt and braces: eager on the top level and on both sub-configs.
    for c in (cfg, cfg.vision_config, cfg.text_config):
        c._attn_implementation = "eager"
    return cfg


def build_reference(spec: TinySpec) -> "InternVLForConditionalGeneration":
    """Build the tiny fp32 eval-mode eager-attention model.

    Weights: transformers' default init under ``torch.manual_seed(spec.seed)`` (inside ``fork_rng``, so the caller's
    global RNG is untouched), then every parameter gets ``p += 0.02 * randn`` from a generator seeded with
    ``spec.seed`` so LayerNorm/RMSNorm weights, biases, layer scales, CLS and position tables are all non-trivial.
    Same spec -> bitwise-identical weights.
    """
    from transformers import InternVLForConditionalGeneration

    cfg = _hf_config(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = InternVLForConditionalGeneration(cfg)
    model = model.to(torch.float32).eval()
    gen = torch.Generator().manual_seed(spec.seed + 1)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    # Sanity: untied head, eager attention everywhere, fp32.
    lm_w = model.lm_head.weight
    emb_w = model.model.language_model.embed_tokens.weight
    if lm_w.data_ptr() == emb_w.data_ptr():
        raise RuntimeError("lm_head is tied to embed_tokens; tie_word_embeddings=False was not honoured")
    for sub in (model.config, model.model.vision_tower.config, model.model.language_model.config):
        if sub._attn_implementation != "eager":
            raise RuntimeError(f"attention implementation is {sub._attn_implementation!r}, expected 'eager'")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise RuntimeError("expected fp32 parameters")
    return model


# ----------------------------------------------------------------------------------------------------------------
# Key mappings
# ----------------------------------------------------------------------------------------------------------------

_VT = "model.vision_tower."
_PROJ = "model.multi_modal_projector."
_LM = "model.language_model."

# HF runtime vision sub-key -> original sub-key (applied as plain substring replacements, in this order).
_VISION_RENAMES = (
    (".encoder.layer.", ".encoder.layers."),
    ("embeddings.cls_token", "embeddings.class_embedding"),
    ("embeddings.position_embeddings", "embeddings.position_embedding"),
    ("embeddings.patch_embeddings.projection", "embeddings.patch_embedding"),
    (".lambda_1", ".ls1"),
    (".lambda_2", ".ls2"),
    (".attention.projection_layer.", ".attn.proj."),
    (".attention.q_norm.", ".attn.q_norm."),
    (".attention.k_norm.", ".attn.k_norm."),
    (".layernorm_before.", ".norm1."),
    (".layernorm_after.", ".norm2."),
)
_PROJ_RENAMES = (("layer_norm.", "mlp1.0."), ("linear_1.", "mlp1.1."), ("linear_2.", "mlp1.3."))


def hf_runtime_to_original(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF runtime ``state_dict()`` keys -> OpenGVLab remote-code keys (q/k/v fused into ``attn.qkv`` rows [q;k;v]).

    Accepts the legacy on-disk HF keys too (``vision_tower.*``, ``multi_modal_projector.*``, ``language_model.*``).
    """
    sd = _legacy_to_runtime(sd)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith(_VT):
            nk = "vision_model." + k[len(_VT):]
            for a, b in _VISION_RENAMES:
                nk = nk.replace(a, b)
            if ".attention.q_proj." in nk:
                kind = nk.rsplit(".", 1)[1]
                base = nk.split(".attention.q_proj.")[0]
                q = v
                kk = sd[k.replace(".attention.q_proj.", ".attention.k_proj.")]
                vv = sd[k.replace(".attention.q_proj.", ".attention.v_proj.")]
                out[f"{base}.attn.qkv.{kind}"] = torch.cat([q, kk, vv], 0)
            elif ".attention.k_proj." in nk or ".attention.v_proj." in nk:
                continue
            else:
                if ".attention." in nk:
                    raise KeyError(f"unmapped vision attention key {k}")
                out[nk] = v
        elif k.startswith(_PROJ):
            rest = k[len(_PROJ):]
            for a, b in _PROJ_RENAMES:
                if rest.startswith(a):
                    rest = b + rest[len(a):]
                    break
            else:
                raise KeyError(f"unmapped projector key {k}")
            out[rest] = v
        elif k.startswith(_LM):
            out["language_model.model." + k[len(_LM):]] = v
        elif k == "lm_head.weight":
            out["language_model.lm_head.weight"] = v
        else:
            raise KeyError(f"unmapped key {k}")
    return out


def original_to_hf_runtime(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenGVLab remote-code keys -> HF runtime keys (``attn.qkv`` split into equal q/k/v row blocks)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k.startswith("vision_model."):
            nk = k
            for a, b in reversed(_VISION_RENAMES):
                nk = nk.replace(b, a)
            nk = _VT + nk[len("vision_model."):]
            if ".attn.qkv." in nk:
                kind = nk.rsplit(".", 1)[1]
                base = nk.split(".attn.qkv.")[0]
                if v.shape[0] % 3:
                    raise ValueError(f"{k}: fused qkv rows not divisible by 3")
                q, kk, vv = torch.chunk(v, 3, dim=0)
                for name, t in (("q_proj", q), ("k_proj", kk), ("v_proj", vv)):
                    out[f"{base}.attention.{name}.{kind}"] = t.clone()
            else:
                if ".attn." in nk:
                    raise KeyError(f"unmapped vision attention key {k}")
                out[nk] = v
        elif k.startswith("mlp1."):
            for a, b in _PROJ_RENAMES:
                if k.startswith(b):
                    out[_PROJ + a + k[len(b):]] = v
                    break
            else:
                raise KeyError(f"unmapped projector key {k}")
        elif k.startswith("language_model.model."):
            out[_LM + k[len("language_model.model."):]] = v
        elif k == "language_model.lm_head.weight":
            out["lm_head.weight"] = v
        else:
            raise KeyError(f"unmapped key {k}")
    return out


def _legacy_to_runtime(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Legacy on-disk HF keys (what ``save_pretrained`` writes) -> runtime keys; runtime keys pass through."""
    out = {}
    for k, v in sd.items():
        if k.startswith("language_model.model."):
            k = _LM + k[len("language_model.model."):]
        elif k == "language_model.lm_head.weight":
            k = "lm_head.weight"
        elif k.startswith("vision_tower."):
            k = "model." + k
        elif k.startswith("multi_modal_projector."):
            k = "model." + k
        out[k] = v
    return out


def expected_key_counts(spec: TinySpec) -> dict[str, int]:
    """Tensor counts per layout.

    original  : 4 (cls, patch w/b, pos) + L_v*14 (+2 with qk norm) + 6 (mlp1) + 1 (embed) + L_t*12 + 2 (norm, head);
                Qwen3 LLM layers have 11 (no q/k/v biases, plus q_norm and k_norm), InternLM3 layers 9 (7 weights,
                2 norms) plus 7 biases with internlm3_bias
    hf / hf_runtime: same but 18 (+2) per vision layer (q, k, v split: 3 weights + 3 biases instead of 2).
    """
    qk = 2 if spec.use_qk_norm else 0
    per_layer = {"qwen2": 12, "qwen3": 11, "internlm3": 16 if spec.internlm3_bias else 9}[spec.text_model_type]
    llm = 1 + spec.text_layers * per_layer + 2
    orig = 4 + spec.vision_layers * (14 + qk) + 6 + llm
    hf = 4 + spec.vision_layers * (18 + qk) + 6 + llm
    return {"original": orig, "hf": hf, "hf_runtime": hf}


# ----------------------------------------------------------------------------------------------------------------
# Checkpoint writing
# ----------------------------------------------------------------------------------------------------------------


def original_config_dict(spec: TinySpec) -> dict:
    """An OpenGVLab-style ``config.json`` (``InternVLChatConfig`` with ``vision_config`` / ``llm_config``)."""
    return {
        "architectures": ["InternVLChatModel"],
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "ps_version": "v2",
        "select_layer": spec.vision_feature_layer,
        "force_image_size": spec.image_size,
        "template": "internvl2_5",
        "dynamic_image_size": True,
        "use_thumbnail": True,
        "max_dynamic_patch": 12,
        "min_dynamic_patch": 1,
        "pad2square": False,
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": spec.vision_hidden,
            "num_hidden_layers": spec.vision_layers,
            "num_attention_heads": spec.vision_heads,
            "intermediate_size": spec.vision_mlp,
            "image_size": spec.image_size,
            "patch_size": spec.patch_size,
            "num_channels": 3,
            "qkv_bias": True,
            "qk_normalization": spec.use_qk_norm,
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "hidden_act": "gelu",
            "initializer_factor": 0.1,
            "initializer_range": 0.02,
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "drop_path_rate": 0.0,
            "use_flash_attn": False,
        },
        "llm_config": {
            "architectures": [spec.llm_architecture],
            **spec.llm_fields(original=True),
            "hidden_size": spec.text_hidden,
            "intermediate_size": spec.text_mlp,
            "num_hidden_layers": spec.text_layers,
            "num_attention_heads": spec.text_heads,
            "num_key_value_heads": spec.text_kv_heads,
            "vocab_size": spec.vocab_size,
            "rope_theta": spec.rope_theta,
            "rms_norm_eps": spec.rms_norm_eps,
            "max_position_embeddings": spec.max_position_embeddings,
            "tie_word_embeddings": False,
            "hidden_act": "silu",
            "bos_token_id": spec.bos_token_id,
            "eos_token_id": spec.eos_token_id,
            "attention_dropout": 0.0,
            "torch_dtype": "float32",
        },
    }


def tokenizer_config_dict(spec: TinySpec) -> dict:
    """Minimal ``tokenizer_config.json``: declares the three image tokens (no vocabulary; not loadable as a tokenizer).

    ``added_tokens_decoder`` maps str(id) -> token record, as in real HF tokenizer configs; the top-level
    ``start_image_token`` / ``end_image_token`` / ``context_image_token`` fields mirror the InternVL ``-hf`` repos.
    """

    def rec(content: str) -> dict:
        return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                "single_word": False, "special": True}

    return {
        "added_tokens_decoder": {
            str(spec.img_start): rec("<img>"),
            str(spec.img_end): rec("</img>"),
            str(spec.image_token_id): rec("<IMG_CONTEXT>"),
        },
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "model_max_length": spec.max_position_embeddings,
    }


def _shard_name(i: int, n: int) -> str:
    return f"model-{i:05d}-of-{n:05d}.safetensors"


def _clean_dir(out_dir: pathlib.Path) -> None:
    for p in out_dir.iterdir():
        if p.is_file() and (
            (p.name.startswith("model") and p.name.endswith(".safetensors"))
            or p.name in (_INDEX_FILE, "config.json", "generation_config.json", "tokenizer_config.json")
        ):
            p.unlink()


def _save_sharded(sd: dict[str, torch.Tensor], out_dir: pathlib.Path, num_shards: int) -> None:
    """Save ``sd`` (in its key order) as one file or ``num_shards`` byte-balanced contiguous shards plus an index."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}
    if num_shards == 1:
        save_file(tensors, str(out_dir / _SINGLE_FILE), metadata={"format": "pt"})
        return
    keys = list(tensors)
    if num_shards > len(keys):
        raise ValueError(f"num_shards={num_shards} > number of tensors {len(keys)}")
    sizes = [tensors[k].numel() * tensors[k].element_size() for k in keys]
    total = sum(sizes)
    # Contiguous split: boundary j sits at the prefix-sum closest to j/num_shards of the bytes, keeping every shard
    # non-empty.
    n = len(keys)
    cum = [0]
    for s in sizes:
        cum.append(cum[-1] + s)
    bounds = [0]
    for j in range(1, num_shards):
        lo, hi = bounds[-1] + 1, n - (num_shards - j)
        target = total * j / num_shards
        bounds.append(min(range(lo, hi + 1), key=lambda i: abs(cum[i] - target)))
    bounds.append(n)
    groups = [keys[bounds[j]:bounds[j + 1]] for j in range(num_shards)]
    assert all(groups) and sum(map(len, groups)) == len(keys)
    weight_map = {}
    for gi, group in enumerate(groups, start=1):
        name = _shard_name(gi, num_shards)
        save_file({k: tensors[k] for k in group}, str(out_dir / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in group})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / _INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _hf_save(model, out_dir: pathlib.Path, num_shards: int) -> None:
    """``model.save_pretrained`` with a ``max_shard_size`` searched so that exactly ``num_shards`` files come out."""
    if num_shards == 1:
        model.save_pretrained(out_dir)  # default 50GB shard size -> single model.safetensors
        if not (out_dir / _SINGLE_FILE).exists():
            raise RuntimeError("save_pretrained did not write model.safetensors")
        return
    total = sum(p.numel() * p.element_size() for p in model.state_dict().values())

    def count(max_bytes: int) -> int:
        with tempfile.TemporaryDirectory() as td:
            model.save_pretrained(td, max_shard_size=max_bytes)
            return len([f for f in os.listdir(td) if f.endswith(".safetensors")])

    # The shard count decreases (weakly) as max_shard_size grows: bisect for exactly num_shards.
    lo, hi = 1, total  # count(hi) == 1
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        c = count(mid)
        if c == num_shards:
            best = mid
            break
        if c > num_shards:
            lo = mid + 1
        else:
            hi = mid - 1
    if best is None:
        raise RuntimeError(f"no max_shard_size gives exactly {num_shards} shards with save_pretrained")
    model.save_pretrained(out_dir, max_shard_size=best)
    n = len([f for f in os.listdir(out_dir) if f.endswith(".safetensors")])
    if n != num_shards or not (out_dir / _INDEX_FILE).exists():
        raise RuntimeError(f"save_pretrained wrote {n} shards, expected {num_shards}")


def write_checkpoint(model, spec: TinySpec, out_dir, layout: str, num_shards: int = 1) -> pathlib.Path:
    """Write ``config.json``, safetensors weights and ``tokenizer_config.json`` to ``out_dir``; return it.

    layout:
      * ``"original"``   OpenGVLab remote-code keys (``vision_model.*`` with fused ``attn.qkv``, ``mlp1.{0,1,3}``,
        ``language_model.model.*``, ``language_model.lm_head.weight``) + :func:`original_config_dict`.
      * ``"hf"``         exactly ``model.save_pretrained(out_dir)`` (legacy on-disk keys ``vision_tower.*``,
        ``multi_modal_projector.*``, ``language_model.model.*``, ``language_model.lm_head.weight``; also writes
        ``generation_config.json``); ``num_shards > 1`` via a searched ``max_shard_size``.
      * ``"hf_runtime"`` the ``save_pretrained`` ``config.json`` / ``generation_config.json`` but weights under the
        in-memory ``model.state_dict()`` names (``model.vision_tower.*``, ``model.multi_modal_projector.*``,
        ``model.language_model.*``, ``lm_head.weight``).
    Sharded output: ``model-0000i-of-0000N.safetensors`` + ``model.safetensors.index.json``
    (``{"metadata": {"total_size": bytes}, "weight_map": {key: file}}``). Existing model/config files in
    ``out_dir`` are removed first.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if num_shards < 1:
        raise ValueError("num_shards must be >= 1")
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean_dir(out_dir)

    if layout == "hf":
        _hf_save(model, out_dir, num_shards)
    elif layout == "hf_runtime":
        with tempfile.TemporaryDirectory() as td:
            model.save_pretrained(td)  # only to get the exact config.json / generation_config.json
            for name in ("config.json", "generation_config.json"):
                if os.path.exists(os.path.join(td, name)):
                    shutil.copyfile(os.path.join(td, name), out_dir / name)
        _save_sharded(model.state_dict(), out_dir, num_shards)
    else:  # original
        sd = hf_runtime_to_original(model.state_dict())
        _save_sharded(sd, out_dir, num_shards)
        (out_dir / "config.json").write_text(json.dumps(original_config_dict(spec), indent=2) + "\n")

    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config_dict(spec), indent=2) + "\n")
    return out_dir


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TinyInputs:
    """Output of :func:`make_inputs`.

    pixel_values   : (F, 3, S, S) float32, NCHW, roughly unit-variance ("already normalized").
    input_ids      : (B, L) int64, left-padded with ``spec.pad_token_id``.
    attention_mask : (B, L) int64, 0 on left padding, 1 elsewhere (all ones when no row is padded).
    frames_per_row : frames consumed by each row, in order (row 0 uses frames 0..n0-1, row 1 the next ones, ...).
    tokens_per_frame: visual tokens per frame at pixel size S.
    pixel_size     : S.
    """

    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    frames_per_row: list[int]
    tokens_per_frame: int
    pixel_size: int

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.pixel_values.shape[0])


def _split_even(total: int, parts: int) -> list[int]:
    base, rem = divmod(total, parts)
    return [base + (1 if i < rem else 0) for i in range(parts)]


def make_inputs(
    spec: TinySpec,
    num_frames: int,
    batch_prompts: list[int],
    *,
    pixel_size: int | None = None,
    frames_per_row: list[int] | None = None,
    seed: int | None = None,
) -> TinyInputs:
    """Deterministic pixels and prompts for ``reference_outputs`` / the JAX model.

    Args:
      spec: the tiny model spec.
      num_frames: F, total number of frames (tiles) across the whole batch.
      batch_prompts: one entry per batch row = the number of random *text* tokens in that row (B = len).
      pixel_size: S (default ``spec.image_size``); must be a multiple of ``2 * patch_size``. S != image_size makes
        HF bicubically interpolate the position table, and changes ``tokens_per_frame`` to ``(S // patch // 2)**2``.
      frames_per_row: how many of the F frames each row holds (must sum to F); default splits F as evenly as
        possible, earlier rows getting the remainder (e.g. F=3, B=2 -> [2, 1]). Rows may hold 0 frames.
      seed: RNG seed (default ``spec.seed``); pixels and text come from ``torch.Generator(seed)``.

    Row layout, for a row with n text tokens and k frames: the n text ids (uniform in ``[3, vocab-3)``) are split
    into k+1 chunks as evenly as possible (earlier chunks larger), and the row is
    ``chunk_0, <img>, <IMG_CONTEXT> x T, </img>, chunk_1, <img>, ..., </img>, chunk_k`` with T = tokens_per_frame.
    Rows are then left-padded to the longest row with ``spec.pad_token_id`` (attention_mask 0 there). The total
    number of ``<IMG_CONTEXT>`` ids over the batch is exactly ``F * T``, and in row-major (batch, seq) order they
    consume frames 0..F-1 in order, as HF's ``masked_scatter`` does.
    """
    s = spec.image_size if pixel_size is None else int(pixel_size)
    if s % (2 * spec.patch_size):
        raise ValueError(f"pixel_size {s} must be a multiple of 2*patch_size={2 * spec.patch_size}")
    b = len(batch_prompts)
    if b < 1:
        raise ValueError("batch_prompts must have at least one row")
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    if frames_per_row is None:
        frames_per_row = _split_even(num_frames, b)
    frames_per_row = [int(x) for x in frames_per_row]
    if len(frames_per_row) != b or sum(frames_per_row) != num_frames or min(frames_per_row) < 0:
        raise ValueError("frames_per_row must have one non-negative entry per row and sum to num_frames")
    t = tokens_per_frame(spec, s)
    gen = torch.Generator().manual_seed(spec.seed if seed is None else int(seed))
    pixel_values = torch.randn((num_frames, 3, s, s), generator=gen, dtype=torch.float32)

    rows: list[list[int]] = []
    for n_text, k in zip(batch_prompts, frames_per_row):
        text = torch.randint(3, spec.vocab_size - 3, (int(n_text),), generator=gen).tolist()
        chunks = _split_even(int(n_text), k + 1)
        row: list[int] = []
        pos = 0
        for ci, c in enumerate(chunks):
            row.extend(text[pos:pos + c])
            pos += c
            if ci < k:
                row.extend([spec.img_start] + [spec.image_token_id] * t + [spec.img_end])
        if not row:
            raise ValueError("a row with no text and no frames would be empty")
        rows.append(row)
    length = max(len(r) for r in rows)
    input_ids = torch.full((b, length), spec.pad_token_id, dtype=torch.int64)
    attention_mask = torch.zeros((b, length), dtype=torch.int64)
    for i, r in enumerate(rows):
        input_ids[i, length - len(r):] = torch.tensor(r, dtype=torch.int64)
        attention_mask[i, length - len(r):] = 1
    assert int((input_ids == spec.image_token_id).sum()) == num_frames * t
    return TinyInputs(pixel_values, input_ids, attention_mask, frames_per_row, t, s)


# ----------------------------------------------------------------------------------------------------------------
# Reference outputs
# ----------------------------------------------------------------------------------------------------------------


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``cumsum(mask) - 1`` with 0 on padding: the convention of HF ``generate`` for left-padded batches.

    For an unpadded row this is ``arange(L)``.
    """
    m = attention_mask.to(torch.int64)
    pos = m.cumsum(-1) - 1
    return pos.masked_fill(m == 0, 0)


def reference_outputs(
    model,
    spec: TinySpec,
    pixel_values_nchw: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 0,
) -> dict[str, np.ndarray]:
    """PyTorch reference outputs (all under ``torch.no_grad()``; float32 / int64 numpy arrays).

    Keys:
      * ``"vision_hidden"``  (F, 1 + g*g, vision_hidden): vision tower output at ``spec.vision_feature_layer``
        (index into (embeddings, block_1, ..., block_L); -1 = last block), CLS token included, no final norm.
      * ``"image_features"`` (F, (g/2)**2, text_hidden): ``model.model.get_image_features(...).pooler_output``.
      * ``"logits"``         (B, L, vocab): ``model(input_ids, pixel_values, attention_mask, position_ids)``. When an
        attention_mask is given, position_ids = :func:`position_ids_from_mask` (same as ``generate``; identical to
        the HF default ``arange`` for unpadded rows). Logits at padded positions are meaningless (fully masked
        query rows) and should not be compared.
      * ``"generated"``      (B, max_new_tokens) int64, only when ``max_new_tokens > 0``: greedy
        (``do_sample=False``) new tokens. Generation uses a private GenerationConfig with ``eos_token_id=None``
        (so it never stops early and no eos logit suppression by ``min_new_tokens`` happens: pure argmax),
        ``pad_token_id=spec.pad_token_id``; the model's own ``generation_config`` is restored afterwards.
    g = S // patch_size for the given pixel size S (S != image_size -> bicubic position-table interpolation).
    """
    from transformers import GenerationConfig

    pixel_values = pixel_values_nchw.to(torch.float32)
    input_ids = input_ids.to(torch.int64)
    if attention_mask is not None:
        attention_mask = attention_mask.to(torch.int64)
    layer = spec.vision_feature_layer
    if model.training:
        raise RuntimeError("model must be in eval mode")
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        vis = model.model.vision_tower(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        vh = vis.last_hidden_state if layer == -1 else vis.hidden_states[layer]
        out["vision_hidden"] = vh.detach().to(torch.float32).numpy().copy()

        feats = model.model.get_image_features(
            pixel_values=pixel_values,
            vision_feature_layer=layer,
            vision_feature_select_strategy="default",
        )
        feats = getattr(feats, "pooler_output", feats)  # 5.x: BaseModelOutputWithPooling; 4.5x: tensor
        out["image_features"] = feats.detach().to(torch.float32).numpy().copy()

        kwargs = {}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
            kwargs["position_ids"] = position_ids_from_mask(attention_mask)
        res = model(input_ids=input_ids, pixel_values=pixel_values, use_cache=False, **kwargs)
        out["logits"] = res.logits.detach().to(torch.float32).numpy().copy()

        if max_new_tokens > 0:
            n = int(max_new_tokens)
            gcfg = GenerationConfig(
                do_sample=False,
                num_beams=1,
                max_new_tokens=n,
                min_new_tokens=n,
                eos_token_id=None,
                bos_token_id=spec.bos_token_id,
                pad_token_id=spec.pad_token_id,
                use_cache=True,
            )
            saved = model.generation_config
            # generate() fills unset (None) fields from model.generation_config, which would bring eos back:
            # swap in the private config for the duration of the call.
            model.generation_config = gcfg
            try:
                gen_kwargs = {"attention_mask": attention_mask} if attention_mask is not None else {}
                seq = model.generate(
                    input_ids=input_ids, pixel_values=pixel_values, generation_config=gcfg, **gen_kwargs
                )
            finally:
                model.generation_config = saved
            new = seq[:, input_ids.shape[1]:]
            if new.shape != (input_ids.shape[0], n):
                raise RuntimeError(f"generate returned {tuple(new.shape)} new tokens, "
                                   f"expected {(input_ids.shape[0], n)}")
            out["generated"] = new.detach().to(torch.int64).numpy().copy()
    return out
