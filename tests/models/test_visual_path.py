"""The visual paths, as a specification: what each reads, how many frames and tokens make a prompt group, the
tokens it gives, the inputs it refuses, and that it computes what the functions it replaced computed."""

import jax
import numpy as np
import pytest
from flax import linen as nn
from flax.errors import ScopeParamNotFoundError

from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.compression.teacher_targets import targets_to_llm_tokens, teacher_targets
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models.config import ConfigError, DownsampleStage, StudentConfig
from liteframe_jax.models.internvl import InternVL, init_params
from liteframe_jax.models.liteframe import LiteFrameConfig, LiteFrameVLM, init_liteframe
from liteframe_jax.models.visual_path import (ENCODERS, StudentPath, TeacherPath, TeacherWAPPath, encode_frames,
                                              for_model, make_visual_path)

TEACHER = model_from_config(internvl3_tiny.get_config())  # 56 px frames, patch 14, pixel shuffle 2, d_llm 96
STUDENT = StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, out_dim=64,
                        num_frames=4, downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),), identity_init=False)
LITEFRAME = LiteFrameConfig(STUDENT, TEACHER).validate()
WAP = WAPConfig(window=(2, 2, 2))


def _path(encoder):
    return make_visual_path(encoder, TEACHER, liteframe=LITEFRAME, wap=WAP)


@pytest.fixture(scope="module")
def params():
    """Pipeline params holding every path's subtrees: {"vision", "projector", "student", "llm"}."""
    teacher = nn.unbox(init_params(TEACHER, seed=0))
    return {**teacher, "student": nn.unbox(init_liteframe(LITEFRAME, seed=1, with_llm=False))["student"]}


def _pixels(b, t, seed=0):
    return jax.random.normal(jax.random.key(seed), (b, t, 56, 56, 3))


# ------------------------------------------------------------------------------------------------ the factory

def test_the_factory_names_each_path_and_what_it_needs():
    assert ENCODERS == ("student", "teacher", "teacher_wap")
    assert type(_path("teacher")) is TeacherPath and type(_path("teacher_wap")) is TeacherWAPPath
    assert type(_path("student")) is StudentPath
    assert [_path(e).encoder for e in ENCODERS] == list(ENCODERS)
    with pytest.raises(ConfigError, match=r"encoder='vit' must be one of \('student', 'teacher', 'teacher_wap'\)"):
        make_visual_path("vit", TEACHER)
    with pytest.raises(ConfigError, match="encoder='teacher_wap' needs a WAP config"):
        make_visual_path("teacher_wap", TEACHER)
    with pytest.raises(ConfigError, match="encoder='student' needs the LiteFrame config"):
        make_visual_path("student", TEACHER)


def test_a_loaded_model_config_gives_its_path():
    assert for_model(TEACHER) == TeacherPath(TEACHER)
    assert for_model(TEACHER, WAP) == TeacherWAPPath(TEACHER, wap=WAP)
    assert for_model(LITEFRAME) == StudentPath(TEACHER, liteframe=LITEFRAME)
    with pytest.raises(ValueError, match="post-hoc WAP applies to teacher"):
        for_model(LITEFRAME, WAP)


# ------------------------------------------------------------------------------------------------ layout

@pytest.mark.parametrize("encoder, frames_per_group, tokens_per_group, tokens_at_112px", [
    ("teacher", 1, 4, 16),      # 4x4 patches -> 2x2 tokens after the pixel shuffle, per frame
    ("teacher_wap", 2, 1, 4),   # WAP (2, 2, 2) before the shuffle: 2 frames, 2x2 -> 1 token
    ("student", 2, 1, 4),       # the student's (2, 2, 2) stride: the same layout as WAP
])
def test_frames_and_tokens_per_prompt_group(encoder, frames_per_group, tokens_per_group, tokens_at_112px):
    path = _path(encoder)
    assert path.frames_per_group == frames_per_group and path.tokens_per_group() == tokens_per_group
    assert path.tokens_per_group((112, 112)) == tokens_at_112px
    assert path.num_groups(5) == -(-5 // frames_per_group)  # a short last group counts
    assert path.num_visual_tokens(5) == path.num_groups(5) * tokens_per_group
    assert path.image_size == (56, 56) and path.num_channels == 3


def test_what_each_path_reads_and_whether_the_projector_is_on_it():
    assert _path("teacher").param_keys == _path("teacher_wap").param_keys == ("vision", "projector")
    assert _path("student").param_keys == ("student", "projector")
    for encoder in ENCODERS:
        path = _path(encoder)
        assert set(path.abstract_params()) == {*path.param_keys, "llm"}
        assert set(path.abstract_encoder_params()) == set(path.param_keys)
        assert path.projector_on_path
    after = LiteFrameConfig(STUDENT.replace(out_dim=96), TEACHER, "post_projector").validate()
    assert not make_visual_path("student", TEACHER, liteframe=after).projector_on_path
    assert not make_visual_path("teacher_wap", TEACHER, wap=WAP.replace(location="post_projector")).projector_on_path


# ------------------------------------------------------------------------------------------------ inputs

@pytest.mark.parametrize("encoder, shape, batched, message", [
    ("teacher", (56, 56, 3), False, "pixels must be (F, H, W, 3) normalized floats or uint8 RGB, got (56, 56, 3)"),
    ("teacher", (1, 56, 56, 3), True, "pixels must be (B, T, H, W, 3)"),
    ("student", (2, 56, 56, 1), False, "pixels must be (F, H, W, 3)"),
    ("teacher_wap", (0, 56, 56, 3), False, "pixels hold no frames"),
    ("teacher", (1, 42, 56, 3), False, "frame size 42x56 must be a multiple of 28 (patch 14 x pixel-shuffle 2)"),
    ("teacher_wap", (1, 84, 84, 3), False, "must be a multiple of 56 (patch 14 x pixel-shuffle 2 x WAP window 2)"),
    ("student", (2, 1, 84, 56, 3), True, "must be a multiple of 56 (patch 14 x total spatial reduction 4)"),
])
def test_bad_pixels_are_refused_with_the_rule_they_break(encoder, shape, batched, message):
    with pytest.raises(ValueError) as err:
        _path(encoder).check_pixels(shape, batched)
    assert message in str(err.value)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_any_frame_count_and_allowed_sizes_pass(encoder):
    path = _path(encoder)
    for frames in (1, 2, 3, 5):
        path.check_pixels((frames, 56, 56, 3))
    path.check_pixels((2, 3, 112, 56, 3), batched=True)


# ------------------------------------------------------------------------------------------------ tokens

@pytest.mark.parametrize("encoder", ENCODERS)
def test_tokens_have_the_layout_shape_and_clips_are_encoded_independently(params, encoder):
    path = _path(encoder)
    pixels = _pixels(2, 3)  # 3 frames: a short last group where a group holds 2
    tokens = path.encode(params, pixels)
    assert tokens.shape == (2, path.num_visual_tokens(3), TEACHER.text.hidden_size)
    alone = encode_frames(path, path.encoder_params(params), pixels[1])
    assert alone.shape == (path.num_visual_tokens(3), TEACHER.text.hidden_size)
    # batched vs single-clip fp32 matmuls may block differently: equal up to the last bits
    np.testing.assert_allclose(alone, tokens[1], rtol=1e-5, atol=1e-5 * float(np.abs(tokens).max()))


def test_the_teacher_path_is_the_teachers_per_frame_encoding(params):
    pixels = _pixels(2, 3, seed=1)
    want = InternVL(TEACHER).apply({"params": params}, pixels.reshape(6, 56, 56, 3), method=InternVL.encode_images)
    np.testing.assert_array_equal(_path("teacher").encode(params, pixels), want.reshape(2, 12, -1))


def test_the_wap_path_is_the_ctd_targets_through_the_connector(params):
    pixels = _pixels(2, 3, seed=2)
    want = targets_to_llm_tokens(TEACHER, params, teacher_targets(TEACHER, params, pixels, WAP), WAP)
    np.testing.assert_array_equal(_path("teacher_wap").encode(params, pixels), want)


def test_the_student_path_is_liteframes_encode_video(params):
    pixels = _pixels(2, 3, seed=3)
    encoder = {k: params[k] for k in ("student", "projector")}
    want = LiteFrameVLM(LITEFRAME, with_llm=False).apply({"params": encoder}, pixels, method=LiteFrameVLM.encode_video)
    np.testing.assert_array_equal(_path("student").encode(params, pixels), want)


def test_a_path_reads_only_its_own_subtrees(params):
    for encoder in ENCODERS:
        path = _path(encoder)
        only = {k: params[k] for k in path.param_keys}
        np.testing.assert_array_equal(path.encode(only, _pixels(1, 2)), path.encode(params, _pixels(1, 2)))
        without_encoder = {k: v for k, v in params.items() if k != path.param_keys[0]}
        with pytest.raises(ScopeParamNotFoundError):
            path.encode(without_encoder, _pixels(1, 2))


# --------------------------------------------------------------------------------------------- uint8 pixels

def test_uint8_frames_are_normalized_in_the_towers_like_the_host_does():
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.models.layers import model_pixels
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 56, 56, 3), dtype=np.uint8)
    np.testing.assert_allclose(np.asarray(model_pixels(frames, np.float32)), normalize_frames(frames.reshape(
        -1, 56, 56, 3)).reshape(frames.shape), atol=1e-6)
    floats = np.asarray(_pixels(1, 2))
    np.testing.assert_array_equal(np.asarray(model_pixels(floats, np.float32)), floats)  # floats pass as they are


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_path_gives_the_same_tokens_for_uint8_frames_and_host_normalized_ones(params, encoder):
    from liteframe_jax.data.frames import normalize_frames
    frames = np.random.default_rng(1).integers(0, 256, (2, 4, 56, 56, 3), dtype=np.uint8)
    host = normalize_frames(frames.reshape(-1, 56, 56, 3)).reshape(frames.shape)
    path = _path(encoder)
    path.check_pixels(frames.shape, batched=True)
    np.testing.assert_allclose(np.asarray(path.encode(params, frames)), np.asarray(path.encode(params, host)),
                               rtol=1e-5, atol=1e-5)
