"""The LiteFrame student encoder: size, shapes, padding rule, factorization of space and time, initialization."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import linen as nn

from liteframe_jax.models.config import ConfigError, DownsampleStage, StudentConfig
from liteframe_jax.models.student import Downsample, LiteFrameStudent, abstract_student, init_student

TINY = StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=4, num_heads=4, mlp_dim=64, out_dim=16,
                     num_frames=8, downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),
                                               DownsampleStage(2, (2, 1, 1), (3, 1, 1))))


def run(cfg, params, x):
    return np.asarray(LiteFrameStudent(cfg).apply({"params": params}, x))


@pytest.fixture(scope="module")
def tiny_params():
    return nn.unbox(init_student(TINY, seed=0))


def clip(t, size=56, seed=0):
    return np.random.default_rng(seed).normal(size=(2, t, size, size, 3)).astype(np.float32)


def test_default_student_has_87m_parameters_within_2_percent():
    n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(abstract_student(StudentConfig()))))
    assert abs(n - 87e6) / 87e6 < 0.02, n


def test_default_output_has_the_shape_of_the_default_wap_target():
    # WAP (4, 2, 2) before pixel shuffle on InternViT-300M: (T/4, 16, 16, 1024)
    assert StudentConfig().output_shape(16) == (4, 16, 16, 1024)
    assert StudentConfig().output_shape(64) == (16, 16, 16, 1024)


def test_output_shape_matches_output_shape_method(tiny_params):
    for t in (4, 8, 7):
        assert run(TINY, tiny_params, clip(t)).shape == (2, *TINY.output_shape(t))


def test_odd_frame_counts_are_padded_by_repeating_the_last_frame(tiny_params):
    x = clip(6)
    padded = np.concatenate([x, x[:, -1:], x[:, -1:]], axis=1)
    np.testing.assert_allclose(run(TINY, tiny_params, x), run(TINY, tiny_params, padded), rtol=1e-6, atol=1e-6)


def test_identity_initialized_temporal_convs_are_exact_no_ops():
    no_stages = dataclasses.replace(TINY, downsample=())
    params = nn.unbox(init_student(no_stages, seed=1))
    without = dataclasses.replace(no_stages, temporal_conv=False)
    stripped = {k: ({kk: vv for kk, vv in v.items() if kk != "temporal"} if k.startswith("layers_") else v)
                for k, v in params.items()}
    x = clip(4)
    np.testing.assert_allclose(run(no_stages, params, x), run(without, stripped, x), rtol=1e-6, atol=1e-6)


def test_identity_initialized_downsampling_picks_one_token_per_window():
    layer = Downsample((2, 2, 2), (3, 3, 3), 1e-6, identity_init=True)
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 4, 8))
    params = nn.unbox(layer.init(jax.random.key(1), x))
    y = np.asarray(layer.apply(params, x))
    # SAME padding, stride 2, kernel 3 on an even length pads (0, 1): window i covers inputs 2i..2i+2, centre 2i+1
    picked = np.asarray(x)[:, 1::2, 1::2, 1::2]
    want = (picked - picked.mean(-1, keepdims=True)) / np.sqrt(picked.var(-1, keepdims=True) + 1e-6)
    assert y.shape == (1, 2, 2, 2, 8)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def test_attention_is_per_frame_and_time_mixes_only_through_the_temporal_convs():
    cfg = dataclasses.replace(TINY, downsample=(), temporal_pos="none", identity_init=False)
    params = nn.unbox(init_student(cfg, seed=2))
    x = clip(4)
    x2 = x.copy()
    x2[:, 3] += 1.0  # change the last frame only
    a, b = run(cfg, params, x), run(cfg, params, x2)
    assert np.abs(a[:, 0] - b[:, 0]).max() > 1e-6  # 4 blocks x kernel 3 reach frame 0 from frame 3
    spatial_only = dataclasses.replace(cfg, temporal_conv=False)
    stripped = {k: ({kk: vv for kk, vv in v.items() if kk != "temporal"} if k.startswith("layers_") else v)
                for k, v in params.items()}
    a, b = run(spatial_only, stripped, x), run(spatial_only, stripped, x2)
    np.testing.assert_array_equal(a[:, :3], b[:, :3])


def test_position_embeddings_resize_to_other_resolutions_and_clip_lengths(tiny_params):
    y = run(TINY, tiny_params, clip(12, size=84))
    assert y.shape == (2, *TINY.output_shape(12, (84, 84))) == (2, 3, 3, 3, 16)


def test_rematerialization_does_not_change_the_function(tiny_params):
    x = clip(4)
    np.testing.assert_allclose(run(dataclasses.replace(TINY, remat=True), tiny_params, x), run(TINY, tiny_params, x),
                               rtol=1e-6, atol=1e-6)


def test_every_student_parameter_has_logical_axis_names():
    boxed = abstract_student(TINY)
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert all(isinstance(x, nn.LogicallyPartitioned) and len(x.names) == x.value.ndim for x in leaves)


def test_bfloat16_compute_runs_and_stays_close(tiny_params):
    x = clip(4)
    y16 = run(dataclasses.replace(TINY, dtype="bfloat16"), tiny_params, x)
    y32 = run(TINY, tiny_params, x)
    assert np.abs(y16 - y32).max() / np.abs(y32).max() < 5e-2


@pytest.mark.parametrize("change, message", [
    (dict(num_heads=5), "student.num_heads=5 does not divide"),
    (dict(image_size=(50, 56)), "not a multiple of patch_size"),
    (dict(temporal_kernel=2), "temporal_kernel=2 must be odd"),
    (dict(downsample=(DownsampleStage(4, (2, 2, 2), (3, 3, 3)),)), "after_block=4 must increase"),
    (dict(downsample=(DownsampleStage(1, (2, 8, 8), (3, 3, 3)),)), "not divisible by the total spatial stride"),
    (dict(temporal_pos="rope"), "temporal_pos='rope'"),
])
def test_impossible_student_configs_are_rejected(change, message):
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(TINY, **change).validate()
    assert message in str(err.value)


def test_student_config_round_trips_through_a_dict():
    assert StudentConfig.from_dict(StudentConfig().to_dict()) == StudentConfig()


@pytest.mark.parametrize("shape,kernel,stride", [((2, 4, 8, 8, 6), (3, 3, 3), (2, 2, 2)),
                                                 ((1, 5, 7, 9, 4), (3, 3, 3), (2, 2, 2)),
                                                 ((1, 4, 6, 6, 3), (1, 3, 3), (1, 2, 2)),
                                                 ((1, 6, 4, 4, 5), (2, 2, 2), (2, 1, 1))])
def test_depthwise_conv_equals_flax_grouped_conv_with_the_same_parameters(shape, kernel, stride):
    """Same params, same SAME padding (odd sizes included): the slice-sum conv is nn.Conv(groups=D)."""
    from liteframe_jax.models.student import DepthwiseConv3D

    x = jax.random.normal(jax.random.key(0), shape)
    d = shape[-1]
    ours = DepthwiseConv3D(kernel, stride, nn.initializers.lecun_normal())
    params = nn.unbox(ours.init(jax.random.key(1), x))["params"]
    params = {**params, "bias": jax.random.normal(jax.random.key(2), (d,))}
    ref = nn.Conv(d, kernel, strides=stride, padding="SAME", feature_group_count=d)
    np.testing.assert_allclose(ours.apply({"params": params}, x), ref.apply({"params": params}, x),
                               rtol=1e-5, atol=1e-5)
