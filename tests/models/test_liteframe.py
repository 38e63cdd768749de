"""The LiteFrame Video LLM: student tokens through the teacher's connector into the LLM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from liteframe_jax.compression.teacher_targets import targets_to_llm_tokens
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models.config import ConfigError, DownsampleStage, StudentConfig
from liteframe_jax.models.internvl import InternVL, init_params
from liteframe_jax.models.liteframe import LiteFrameConfig, LiteFrameVLM, abstract_liteframe, init_liteframe
from liteframe_jax.models.visual_path import for_model
from configs import internvl3_tiny
from configs.common import model_from_config


def _teacher():
    return model_from_config(internvl3_tiny.get_config())


def _student(out_dim=64, stages=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),)):
    return StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, out_dim=out_dim,
                         num_frames=4, downsample=stages, identity_init=False)


def test_token_counts_follow_the_student_strides_and_the_location():
    cfg = LiteFrameConfig(_student(), _teacher()).validate()
    assert cfg.frames_per_group == 2
    assert cfg.tokens_per_group() == 1  # 4x4 patches -> 2x2 after the stride -> 1 token after pixel shuffle
    assert for_model(cfg).num_visual_tokens(5) == 3  # ceil(5 / 2) groups
    post = LiteFrameConfig(_student(out_dim=256), _teacher(), "post_shuffle").validate()
    assert post.tokens_per_group() == 4


def test_invalid_configs_are_rejected_with_the_reason():
    with pytest.raises(ConfigError, match="out_dim=32 must equal"):
        LiteFrameConfig(_student(out_dim=32), _teacher()).validate()
    with pytest.raises(ConfigError, match="location"):
        LiteFrameConfig(_student(), _teacher(), "nowhere").validate()
    odd = _student(stages=(DownsampleStage(1, (2, 4, 4), (3, 3, 3)),))
    with pytest.raises(ConfigError, match="pixel-shuffle"):
        LiteFrameConfig(odd, _teacher()).validate()


def test_config_round_trips_through_json_dicts():
    cfg = LiteFrameConfig(_student(), _teacher(), "pre_shuffle")
    assert LiteFrameConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown"):
        LiteFrameConfig.from_dict({**cfg.to_dict(), "extra": 1})


def test_params_hold_student_projector_and_llm_with_logical_axes():
    cfg = LiteFrameConfig(_student(), _teacher())
    boxed = abstract_liteframe(cfg)
    assert set(boxed) == {"student", "projector", "llm"}
    assert set(abstract_liteframe(cfg, with_llm=False)) == {"student", "projector"}
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)


@pytest.mark.parametrize("location,out_dim", [("pre_shuffle", 64), ("post_shuffle", 256), ("post_projector", 96)])
def test_encode_video_equals_the_ctd_target_path(location, out_dim):
    """The student's output goes to the LLM exactly as a WAP target at the same location would."""
    teacher = _teacher()
    cfg = LiteFrameConfig(_student(out_dim), teacher, location).validate()
    params = nn.unbox(init_liteframe(cfg, seed=1))
    pixels = jax.random.normal(jax.random.key(0), (2, 3, 56, 56, 3))
    model = LiteFrameVLM(cfg)
    grid = model.apply({"params": params}, pixels, method=LiteFrameVLM.student_tokens)
    visual = model.apply({"params": params}, pixels, method=LiteFrameVLM.encode_video)
    connector = {k: v for k, v in params.items() if k == "projector"}  # unused (absent) after the projector
    want = targets_to_llm_tokens(teacher, connector, grid,
                                 WAPConfig(window=(2, 2, 2), location=location))
    assert visual.shape == (2, for_model(cfg).num_visual_tokens(3), teacher.text.hidden_size)
    np.testing.assert_allclose(visual, want, rtol=1e-6, atol=1e-6)


def test_llm_path_equals_the_teachers_llm_given_the_same_visual_tokens():
    teacher = _teacher()
    cfg = LiteFrameConfig(_student(), teacher).validate()
    params = nn.unbox(init_liteframe(cfg, seed=2))
    teacher_params = nn.unbox(init_params(teacher, seed=3))
    params = {**params, "llm": teacher_params["llm"]}
    ids = jnp.array([[5, teacher.image_token_id, 7, teacher.image_token_id, 9]], jnp.int32)
    visual = jax.random.normal(jax.random.key(4), (2, teacher.text.hidden_size))
    pos, valid = jnp.arange(5)[None], jnp.ones((1, 5), bool)
    ours, _ = LiteFrameVLM(cfg).apply({"params": params}, ids, visual, pos, valid)
    ref, _ = InternVL(teacher).apply({"params": teacher_params}, ids, visual, pos, valid)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
