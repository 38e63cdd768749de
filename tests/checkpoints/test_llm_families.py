"""Which InternVL LLM families `config_from_hf` accepts, checked at real sizes with abstract parameters only.

InternVL3.5 dense models pair InternViT with a Qwen3 LLM. Their configs are built here with transformers'
own `InternVLConfig` (the "-hf" layout) and as OpenGVLab `llm_config` dicts (the original layout); our parameter
count must equal the count of the model transformers builds from the same config (on the meta device, nothing
allocated). Refused families (MoE, InternLM3, Qwen3 with attention biases) fail with a message naming them.
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


def count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.unbox(tree))))


def hf_config(llm: dict):
    return transformers.InternVLConfig(text_config=QWEN3_COMMON | llm, vision_config=VISION_300M,
                                       image_token_id=IMG_CONTEXT, tie_word_embeddings=llm["tie_word_embeddings"])


def write_hf(directory, llm: dict):
    (directory / "config.json").write_text(json.dumps(hf_config(llm).to_dict()))
    return directory


def write_original(directory, llm: dict, **llm_overrides):
    vision = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
              "image_size": 448, "patch_size": 14, "qkv_bias": True, "qk_normalization": False,
              "norm_type": "layer_norm", "layer_norm_eps": 1e-6, "hidden_act": "gelu"}
    llm_config = {"architectures": ["Qwen3ForCausalLM"], **QWEN3_COMMON, **llm, **llm_overrides}
    raw = {"architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "downsample_ratio": 0.5,
           "ps_version": "v2", "select_layer": -1, "force_image_size": 448, "img_context_token_id": IMG_CONTEXT,
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
    (dict(model_type="internlm3", architectures=["InternLM3ForCausalLM"]), "unsupported LLM 'internlm3'"),
    (dict(attention_bias=True), "attention_bias=True"),
    (dict(use_sliding_window=True), "use_sliding_window=True"),
    (dict(architectures=["Qwen2ForCausalLM"]), "'qwen3'/'Qwen2ForCausalLM'"),
])
def test_unsupported_llms_are_refused_with_a_message_naming_them(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        config_from_hf(write_original(tmp_path, QWEN3["1B"], **overrides), "fused")
