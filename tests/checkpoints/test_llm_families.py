"""Which InternVL LLM families `config_from_hf` accepts, checked at real sizes with abstract parameters only.

InternVL3.5 dense models pair InternViT with a Qwen3 LLM, InternVL3-9B with InternLM3-8B. Their configs are built
here with transformers' own `InternVLConfig` (the "-hf" layout) and as OpenGVLab `llm_config` dicts (the original
layout); our parameter count must equal the count of the model transformers builds from the same config (on the
meta device, nothing allocated). Refused families (MoE, Qwen3 with attention biases, InternLM3 with
qkv_bias != bias) fail with a message naming them.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
import torch
from flax import linen as nn

from liteframe_jax.checkpoints.hf_config import config_from_hf
from liteframe_jax.models.config import ConfigError
from liteframe_jax.models.internvl import abstract_params

transformers = pytest.importorskip("transformers")

VISION_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                   image_size=448, patch_size=14, attention_bias=True, norm_type="layer_norm")
# Qwen3 LLMs of InternVL3.5-1B and -8B (the Qwen3-0.6B and Qwen3-8B shapes: head_dim 128 != hidden / heads for
# 0.6B, tied embeddings for 0.6B only).
QWEN3 = {
    "1B": dict(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
               num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True),
    "8B": dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
               num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
}
QWEN3_COMMON = dict(model_type="qwen3", rope_theta=1_000_000.0, max_position_embeddings=40960, rms_norm_eps=1e-6,
                    attention_bias=False, use_sliding_window=False)
IMG_CONTEXT = 151671

# InternLM3-8B-Instruct's config.json (InternVL3-9B's llm_config, assumed the same: see the README), in its own
# remote-code names (qkv_bias / bias; transformers' InternLM3Config reads them as attention_bias / mlp_bias).
INTERNLM3_8B = dict(model_type="internlm3", architectures=["InternLM3ForCausalLM"], vocab_size=128512,
                    hidden_size=4096, intermediate_size=10240, num_hidden_layers=48, num_attention_heads=32,
                    num_key_value_heads=2, head_dim=128, qkv_bias=False, bias=False, rms_norm_eps=1e-5,
                    max_position_embeddings=32768, rope_theta=50_000_000,
                    rope_scaling={"factor": 6.0, "rope_type": "dynamic"}, tie_word_embeddings=False)
INTERNVL3_9B_IMG_CONTEXT = 128131  # any id below the vocabulary size: only the count is checked here


def count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.unbox(tree))))


def hf_config(llm: dict):
    return transformers.InternVLConfig(text_config=QWEN3_COMMON | llm, vision_config=VISION_300M,
                                       image_token_id=IMG_CONTEXT, tie_word_embeddings=llm["tie_word_embeddings"])


def write_hf(directory, llm: dict):
    (directory / "config.json").write_text(json.dumps(hf_config(llm).to_dict()))
    return directory


def write_original(directory, llm: dict, img_context: int = IMG_CONTEXT, **llm_overrides):
    vision = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
              "image_size": 448, "patch_size": 14, "qkv_bias": True, "qk_normalization": False,
              "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "hidden_act": "gelu"}
    family = llm if llm.get("model_type") == "internlm3" else {"architectures": ["Qwen3ForCausalLM"], **QWEN3_COMMON}
    llm_config = {**family, **llm, **llm_overrides}
    raw = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "downsample_ratio": 0.5,
           "ps_version": "v2", "select_layer": -1, "force_image_size": 448, "img_context_token_id": img_context,
           "vision_config": vision, "llm_config": llm_config}
    (directory / "config.json").write_text(json.dumps(raw))
    return directory


def torch_llm_count(llm: dict) -> int:
    with torch.device("meta"):
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**(QWEN3_COMMON | llm)))
    return sum(p.numel() for p in model.parameters())  # tied lm_head is counted once


@pytest.mark.parametrize("size", list(QWEN3))
def test_hf_layout_internvl35_config_gives_transformers_parameter_count(tmp_path, size):
    cfg = config_from_hf(write_hf(tmp_path, QWEN3[size]), "split")
    t = cfg.text
    assert (t.qk_norm, t.qkv_bias, t.head_dim) == (True, False, 128)
    assert t.hidden_size // t.num_heads == {"1B": 64, "8B": 128}[size]  # 1B: head_dim != width / heads
    with torch.device("meta"):
        reference = transformers.InternVLForConditionalGeneration(hf_config(QWEN3[size]))
    assert count(abstract_params(cfg)) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("size", list(QWEN3))
def test_original_layout_internvl35_config_gives_the_qwen3_llm_parameter_count(tmp_path, size):
    cfg = config_from_hf(write_original(tmp_path, QWEN3[size]), "fused")
    assert cfg.text.qk_norm and not cfg.text.qkv_bias and cfg.text.head_dim == 128
    assert count(abstract_params(cfg)["llm"]) == torch_llm_count(QWEN3[size])


def test_qwen3_8b_llm_count_is_the_published_one():
    """Qwen3-8B (InternVL3.5-8B's LLM) has 8,190,735,360 parameters (its model card: 8.2B, 6.95B non-embedding)."""
    assert torch_llm_count(QWEN3["8B"]) == 8_190_735_360


def test_qwen3_without_head_dim_uses_transformers_default(tmp_path):
    llm = {k: v for k, v in QWEN3["8B"].items() if k != "head_dim"}
    assert config_from_hf(write_original(tmp_path, llm), "fused").text.head_dim == transformers.Qwen3Config().head_dim


@pytest.mark.parametrize("overrides, message", [
    (dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"]), "unsupported LLM 'qwen3_moe'"),
    (dict(model_type="internlm3", architectures=["Qwen3ForCausalLM"]), "'internlm3'/'Qwen3ForCausalLM'"),
    (dict(model_type="llama", architectures=["LlamaForCausalLM"]), "unsupported LLM 'llama'"),
    (dict(attention_bias=True), "attention_bias=True"),
    (dict(use_sliding_window=True), "use_sliding_window=True"),
    (dict(architectures=["Qwen2ForCausalLM"]), "'qwen3'/'Qwen2ForCausalLM'"),
])
def test_unsupported_llms_are_refused_with_a_message_naming_them(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_from_hf(write_original(tmp_path, QWEN3["1B"], **overrides), "fused")


def internvl3_9b_hf_config(**llm_overrides):
    text = {k: v for k, v in INTERNLM3_8B.items() if k != "architectures"} | llm_overrides
    return transformers.InternVLConfig(text_config=text, vision_config=VISION_300M,
                                       image_token_id=INTERNVL3_9B_IMG_CONTEXT, tie_word_embeddings=False)


def test_internvl3_9b_config_gives_transformers_parameter_count_in_both_layouts(tmp_path):
    """InternViT-300M + projector + InternLM3-8B: 9,141,824,512 parameters (the model card: 9.14B); the LLM alone
    8,804,241,408."""
    hf_dir, orig_dir = tmp_path / "hf", tmp_path / "orig"
    hf_dir.mkdir(), orig_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps(internvl3_9b_hf_config().to_dict()))
    hf = config_from_hf(hf_dir, "split")
    original = config_from_hf(write_original(orig_dir, INTERNLM3_8B, INTERNVL3_9B_IMG_CONTEXT), "fused")
    for cfg in (hf, original):
        t = cfg.text
        assert (t.qk_norm, t.qkv_bias, t.o_mlp_bias, t.head_dim) == (False, False, False, 128)
        assert (t.rope_theta, t.rope_scaling, t.rope_scaling_factor, t.rms_norm_eps) == (5e7, "dynamic", 6.0, 1e-5)
    assert original.text == hf.text
    with torch.device("meta"):
        reference = transformers.InternVLForConditionalGeneration(internvl3_9b_hf_config())
    assert type(reference.model.language_model).__name__ == "LlamaModel"  # transformers runs InternLM3 as Llama
    n = sum(p.numel() for p in reference.parameters())
    assert count(abstract_params(hf)) == count(abstract_params(original)) == n == 9_141_824_512
    assert count(abstract_params(hf)["llm"]) == 8_804_241_408


def test_internlm3_with_biases_gives_transformers_parameter_count(tmp_path):
    """qkv_bias = bias = True: biases on q/k/v/o and gate/up/down, each counted as transformers' Llama has them."""
    (tmp_path / "config.json").write_text(json.dumps(internvl3_9b_hf_config(qkv_bias=True, bias=True).to_dict()))
    cfg = config_from_hf(tmp_path, "split")
    assert cfg.text.qkv_bias and cfg.text.o_mlp_bias
    with torch.device("meta"):
        reference = transformers.InternVLForConditionalGeneration(internvl3_9b_hf_config(qkv_bias=True, bias=True))
    assert count(abstract_params(cfg)) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("overrides, message", [
    (dict(qkv_bias=True), r"InternLM3 qkv_bias=True != bias=False"),
    (dict(head_dim=None, num_attention_heads=16), "InternLM3 config without head_dim"),
    (dict(hidden_act="gelu"), "unsupported LLM activation 'gelu'"),
])
def test_unsupported_internlm3_configs_are_refused(tmp_path, overrides, message):
    llm = {k: v for k, v in (INTERNLM3_8B | overrides).items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        config_from_hf(write_original(tmp_path, llm, INTERNVL3_9B_IMG_CONTEXT), "fused")


def test_internlm3_without_head_dim_is_hidden_over_heads_when_that_is_transformers_default(tmp_path):
    llm = {k: v for k, v in INTERNLM3_8B.items() if k != "head_dim"}
    cfg = config_from_hf(write_original(tmp_path, llm, INTERNVL3_9B_IMG_CONTEXT), "fused")
    assert cfg.text.head_dim == transformers.InternLM3Config().head_dim == 4096 // 32
