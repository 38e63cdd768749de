"""LoRA adapters on the LLM's linear layers, merged functionally."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.models.config import ConfigError
from liteframe_jax.models.internvl import abstract_params, init_params
from liteframe_jax.models.lora import LoRAConfig, init_lora, merge_lora


def _llm(seed=0):
    cfg = model_from_config(internvl3_tiny.get_config())
    return cfg, nn.unbox(init_params(cfg, seed))["llm"]


def test_adapters_cover_exactly_the_targeted_linears_of_every_layer():
    cfg, llm = _llm()
    lora = init_lora(llm, LoRAConfig(rank=4, alpha=8, targets=("q", "down")), jax.random.key(0))
    assert set(lora) == {f"layers_{i}" for i in range(cfg.text.num_layers)}
    assert set(lora["layers_0"]) == {"attn", "down"} and set(lora["layers_0"]["attn"]) == {"q"}
    assert lora["layers_0"]["attn"]["q"]["a"].shape == (cfg.text.hidden_size, 4)
    assert lora["layers_0"]["down"]["b"].shape == (4, cfg.text.hidden_size)


def test_fresh_adapters_are_a_no_op_and_merging_adds_the_scaled_product():
    _, llm = _llm()
    lc = LoRAConfig(rank=4, alpha=8)
    lora = init_lora(llm, lc, jax.random.key(0))
    merged = merge_lora(llm, lora, lc)
    jax.tree.map(np.testing.assert_array_equal, merged, llm)
    lora = jax.tree.map(lambda x: x + 0.1, lora)
    merged = merge_lora(llm, lora, lc)
    ad = lora["layers_1"]["gate"]
    want = llm["layers_1"]["gate"]["kernel"] + 2.0 * ad["a"] @ ad["b"]
    np.testing.assert_allclose(merged["layers_1"]["gate"]["kernel"], want, rtol=1e-6)
    np.testing.assert_array_equal(merged["embedding"], llm["embedding"])
    np.testing.assert_array_equal(merged["layers_1"]["input_norm"]["scale"], llm["layers_1"]["input_norm"]["scale"])


def test_boxed_adapters_carry_the_kernels_logical_axes():
    cfg = model_from_config(internvl3_tiny.get_config())
    boxed_llm = abstract_params(cfg)["llm"]
    lora = jax.eval_shape(lambda: init_lora(boxed_llm, LoRAConfig(rank=2), jax.random.key(0), boxed=True))
    assert lora["layers_0"]["attn"]["q"]["a"].names == ("embed", None)
    assert lora["layers_0"]["attn"]["q"]["b"].names == (None, "heads")


def test_bad_lora_configs_fail_clearly():
    with pytest.raises(ConfigError, match="rank"):
        LoRAConfig(rank=0).validate()
    with pytest.raises(ConfigError, match="targets"):
        LoRAConfig(targets=("qkv",)).validate()
    assert LoRAConfig.from_dict(LoRAConfig(rank=3).to_dict()) == LoRAConfig(rank=3)
