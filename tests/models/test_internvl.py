"""Structure of the teacher model: parameter tree, logical axis names, visual-token merging."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from configs import internvl3_8b, internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.models.internvl import abstract_params, init_params
from liteframe_jax.models.llm_front import merge_visual_tokens

KNOWN_AXES = {"embed", "mlp", "heads", "kv_heads", "vocab", "qkv", "positions", "conv_h", "conv_w", "conv_in"}


def test_internvl3_8b_has_the_reference_parameter_count():
    # 304,012,288 (InternViT-300M) + 27,540,480 (mlp1) + 7,612,820,992 (Qwen2.5-7B, vocab 151674)
    params = nn.unbox(abstract_params(model_from_config(internvl3_8b.get_config())))
    sizes = {k: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v)) for k, v in params.items()}
    assert sizes == {"vision": 304_012_288, "projector": 27_540_480, "llm": 7_612_820_992}


def test_every_parameter_carries_logical_axis_names():
    boxed = abstract_params(model_from_config(internvl3_8b.get_config()))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    for box in leaves:
        assert len(box.names) == box.value.ndim and set(box.names) <= KNOWN_AXES, box.names
    specs = nn.get_partition_spec(boxed)
    assert specs["llm"]["layers_0"]["attn"]["k"]["kernel"] == jax.sharding.PartitionSpec("embed", "kv_heads")
    assert specs["vision"]["layers_0"]["attn"]["qkv"]["kernel"] == jax.sharding.PartitionSpec("embed", "qkv", "heads")


def test_blocks_after_select_layer_still_own_parameters():
    cfg = model_from_config(internvl3_tiny.get_config("vision_layers=3"))
    cfg = cfg.replace(vision=cfg.vision.__class__(**{**cfg.vision.__dict__, "select_layer": 1}))
    params = nn.unbox(init_params(cfg))
    assert sorted(k for k in params["vision"] if k.startswith("layers_")) == ["layers_0", "layers_1", "layers_2"]


def test_visual_tokens_fill_placeholders_in_row_major_order():
    img = 9
    ids = jnp.array([[1, img, img, 2], [img, 3, img, 4]])
    embeds = jnp.zeros((2, 4, 2)) + jnp.arange(4)[None, :, None] * 0.01
    visual = jnp.arange(8.0).reshape(4, 2) + 100
    out = np.asarray(merge_visual_tokens(embeds, ids, visual, img))
    np.testing.assert_array_equal(out[0, 1], visual[0])
    np.testing.assert_array_equal(out[0, 2], visual[1])
    np.testing.assert_array_equal(out[1, 0], visual[2])
    np.testing.assert_array_equal(out[1, 2], visual[3])
    np.testing.assert_array_equal(out[0, 3], embeds[0, 3])  # text keeps its embedding


def test_tied_head_reuses_the_token_embedding():
    cfg = model_from_config(internvl3_tiny.get_config())
    tied = cfg.replace(text=cfg.text.__class__(**{**cfg.text.__dict__, "tie_word_embeddings": True}))
    params = nn.unbox(init_params(tied))
    assert "lm_head" not in params["llm"]
    from liteframe_jax.models.internvl import InternVL
    ids = jnp.array([[1, 2, 3]])
    mask = jnp.ones((1, 3), bool)
    logits, _ = InternVL(tied).apply({"params": params}, ids, None, jnp.arange(3)[None], mask)
    untied_params = {**params, "llm": {**params["llm"], "lm_head": {"kernel": params["llm"]["embedding"].T}}}
    want, _ = InternVL(cfg).apply({"params": untied_params}, ids, None, jnp.arange(3)[None], mask)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(want), rtol=1e-6, atol=1e-6)


def test_an_llm_with_dynamic_rope_refuses_positions_beyond_its_table():
    import dataclasses
    import pytest
    from liteframe_jax.models.qwen2 import Qwen2
    text = dataclasses.replace(model_from_config(internvl3_tiny.get_config()).text, rope_scaling="dynamic",
                               max_position_embeddings=16)
    model = Qwen2(text)

    def run(length):
        embeds = jnp.zeros((1, length, text.hidden_size))
        positions = jnp.arange(length)[None]
        params = model.init(jax.random.key(0), embeds, positions, jnp.ones((1, length), bool))
        return model.apply(params, embeds, positions, jnp.ones((1, length), bool))

    run(16)  # up to the table, dynamic scaling changes nothing: computed as plain RoPE
    with pytest.raises(ValueError, match="17 positions exceed max_position_embeddings=16.*dynamic RoPE"):
        run(17)
