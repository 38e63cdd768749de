"""Model configs: impossible values are rejected with one clear error before anything compiles."""

import json

import pytest

from configs import internvl3_8b, internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.models.config import ConfigError, InternVLConfig, TextConfig, VisionConfig


def tiny(**changes) -> InternVLConfig:
    return model_from_config(internvl3_tiny.get_config()).replace(**changes)


@pytest.mark.parametrize("vision, text, top, message", [
    (dict(num_heads=5), {}, {}, "vision.num_heads=5 does not divide vision.hidden_size=64"),
    (dict(image_size=(60, 56)), {}, {}, "not a multiple of vision.patch_size=14"),
    (dict(image_size=(42, 42)), {}, {}, "patch grid 3x3"),
    (dict(norm_type="batch_norm"), {}, {}, "vision.norm_type='batch_norm'"),
    (dict(qkv_layout="packed"), {}, {}, "vision.qkv_layout='packed'"),
    (dict(select_layer=7), {}, {}, "vision.select_layer=7"),
    (dict(num_layers=0), {}, {}, "vision.num_layers=0 must be a positive integer"),
    ({}, dict(num_heads=5), {}, "text.num_heads=5 does not divide text.hidden_size=96"),
    ({}, dict(num_kv_heads=4), {}, "text.num_kv_heads=4 does not divide text.num_heads=6"),
    ({}, dict(hidden_size=60, num_heads=12), {}, "head_dim=5 must be even"),
    ({}, dict(explicit_head_dim=15), {}, "head_dim=15 must be even"),
    ({}, dict(explicit_head_dim=0), {}, "text.explicit_head_dim=0 must be a positive integer"),
    ({}, dict(rope_scaling="yarn"), {}, "text.rope_scaling='yarn'"),
    ({}, {}, dict(downsample_ratio=0.3), "downsample_ratio=0.3 must be 1/k"),
    ({}, {}, dict(image_token_id=512), "image_token_id=512 is outside the vocabulary [0, 512)"),
    ({}, {}, dict(ps_version="v3"), "ps_version='v3'"),
    ({}, {}, dict(dtype="float16"), "dtype='float16'"),
])
def test_impossible_values_are_rejected_with_a_clear_message(vision, text, top, message):
    base = tiny()
    cfg = base.replace(vision=base.vision.__class__(**{**base.vision.__dict__, **vision}),
                       text=base.text.__class__(**{**base.text.__dict__, **text}), **top)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert message in str(err.value)


def test_all_problems_are_reported_together():
    cfg = tiny().replace(vision=VisionConfig(num_heads=5, image_size=(60, 60)), text=TextConfig(num_kv_heads=3))
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    text = str(err.value)
    assert "vision.num_heads=5" in text and "not a multiple of vision.patch_size" in text
    assert "text.num_kv_heads=3" in text


def test_unknown_fields_are_rejected():
    d = tiny().to_dict()
    d["vision"]["hidden"] = 3
    with pytest.raises(ConfigError, match="unknown vision config field"):
        InternVLConfig.from_dict(d)


@pytest.mark.parametrize("llm", ["qwen2", "qwen3"])
def test_config_round_trips_through_json(llm):
    cfg = model_from_config(internvl3_tiny.get_config(f"llm={llm}"))
    assert InternVLConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_an_explicit_head_dim_need_not_divide_the_width():
    """Qwen3: head_dim is its own field; hidden_size need not be num_heads * head_dim."""
    text = TextConfig(hidden_size=100, num_heads=6, num_kv_heads=2, explicit_head_dim=24, qk_norm=True,
                      qkv_bias=False)
    assert text.validate().head_dim == 24 and TextConfig(hidden_size=96, num_heads=6).head_dim == 16


def test_a_config_saved_before_the_qwen3_fields_reads_as_qwen2():
    d = tiny().to_dict()
    del d["text"]["qk_norm"], d["text"]["explicit_head_dim"]
    text = InternVLConfig.from_dict(d).text
    assert (text.qk_norm, text.explicit_head_dim, text.head_dim) == (False, None, 16)


def test_command_line_arguments_reach_the_tiny_config():
    cfg = model_from_config(internvl3_tiny.get_config("image_size=84,vision_layers=3"))
    assert cfg.vision.image_size == (84, 84) and cfg.vision.num_layers == 3 and cfg.tokens_per_frame() == 9
    with pytest.raises(ValueError, match="unknown config argument 'layers'"):
        internvl3_tiny.get_config("layers=3")
    with pytest.raises(ConfigError, match="patch grid 5x5"):
        model_from_config(internvl3_tiny.get_config("image_size=70"))


def test_internvl3_8b_config_has_the_real_sizes():
    cfg = model_from_config(internvl3_8b.get_config())
    assert cfg.vision.grid == (32, 32) and cfg.tokens_per_frame() == 256
    assert (cfg.text.hidden_size, cfg.text.num_layers, cfg.text.num_heads, cfg.text.num_kv_heads) == (3584, 28, 28, 4)
    assert cfg.text.vocab_size == 151674 and cfg.image_token_id == 151667 and cfg.eos_token_id == 151645
