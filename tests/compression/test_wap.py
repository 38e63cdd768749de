"""WAP: weighted average pooling of a (T, H, W, C) token grid over non-overlapping (kt, kh, kw) windows."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import internvl3_8b, internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.compression.wap import (WAPConfig, compressed_grid_shape, pad_frames_to_multiple, wap,
                                           window_weights)
from liteframe_jax.models.config import ConfigError

MODES = [WAPConfig(weights="norm"), WAPConfig(weights="uniform"), WAPConfig(weights="softmax", temperature=0.5),
         WAPConfig(weights="softmax", temperature=0.0)]


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def windows(x, window):
    """(T, H, W, C) -> (T', H', W', K, C) with K = kt*kh*kw in (dt, dy, dx) order (T a multiple of kt)."""
    kt, kh, kw = window
    t, h, w, c = x.shape
    x = x.reshape(t // kt, kt, h // kh, kh, w // kw, kw, c).transpose(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(t // kt, h // kh, w // kw, kt * kh * kw, c)


def unwindows(x, window):
    """Inverse of `windows`."""
    kt, kh, kw = window
    t, h, w, _, c = x.shape
    x = x.reshape(t, h, w, kt, kh, kw, c).transpose(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(t * kt, h * kh, w * kw, c)


def np_weights(win, mode, temperature=1.0):
    """Reference weights in float64 for windows (..., K, C)."""
    n = np.linalg.norm(win.astype(np.float64), axis=-1)
    if mode == "uniform":
        return np.full_like(n, 1.0 / n.shape[-1])
    if mode == "norm":
        return n / n.sum(-1, keepdims=True)
    tau = temperature if temperature > 0 else n.std(-1, keepdims=True)
    e = np.exp((n - n.max(-1, keepdims=True)) / tau)
    return e / e.sum(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------- pooling values
def test_uniform_weights_are_mean_pooling():
    x = rand(8, 4, 6, 5)
    y = wap(x, WAPConfig(window=(4, 2, 3), weights="uniform"))
    want = x.reshape(2, 4, 2, 2, 2, 3, 5).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cfg", MODES, ids=lambda c: f"{c.weights}-t{c.temperature}")
def test_window_of_identical_tokens_returns_that_token(cfg):
    token = rand(7)
    x = np.broadcast_to(token, (4, 2, 2, 7))
    y = np.asarray(wap(x, cfg))
    assert y.shape == (1, 1, 1, 7)
    np.testing.assert_allclose(y[0, 0, 0], token, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cfg", MODES, ids=lambda c: f"{c.weights}-t{c.temperature}")
def test_all_zero_window_gives_zeros_not_nan(cfg):
    y = np.asarray(wap(np.zeros((4, 2, 2, 3), np.float32), cfg))
    np.testing.assert_array_equal(y, 0.0)


@pytest.mark.parametrize("cfg", MODES, ids=lambda c: f"{c.weights}-t{c.temperature}")
def test_permuting_tokens_inside_windows_changes_nothing(cfg):
    window = (2, 2, 2)
    x = rand(4, 4, 6, 3)
    win = windows(x, window)
    perm = np.random.default_rng(1).permuted(np.broadcast_to(np.arange(8), win.shape[:-1]), axis=-1)
    shuffled = unwindows(np.take_along_axis(win, perm[..., None], axis=-2), window)
    assert not np.array_equal(shuffled, x)
    cfg = cfg.replace(window=window)
    np.testing.assert_allclose(np.asarray(wap(shuffled, cfg)), np.asarray(wap(x, cfg)), rtol=1e-5, atol=1e-6)


def test_softmax_with_small_temperature_picks_the_dominant_token():
    x = rand(2, 2, 2, 16) * 0.1
    x[1, 0, 1] = rand(16, seed=3) * 10.0
    y = np.asarray(wap(x, WAPConfig(window=(2, 2, 2), weights="softmax", temperature=0.05)))
    np.testing.assert_allclose(y[0, 0, 0], x[1, 0, 1], rtol=1e-4, atol=1e-4)
    mean = np.asarray(wap(x, WAPConfig(window=(2, 2, 2), weights="uniform")))
    assert not np.allclose(mean[0, 0, 0], x[1, 0, 1], atol=1e-1)


def test_norm_weights_match_a_hand_computed_example():
    # one (2, 1, 2) window; token norms 5, 1, 0 and 2 -> weights 5/8, 1/8, 0, 2/8
    x = np.array([[[[3.0, 4.0], [0.0, 1.0]]], [[[0.0, 0.0], [2.0, 0.0]]]], np.float32)  # (T=2, H=1, W=2, C=2)
    y = np.asarray(wap(x, WAPConfig(window=(2, 1, 2))))
    want = (5 * np.array([3.0, 4.0]) + 1 * np.array([0.0, 1.0]) + 2 * np.array([2.0, 0.0])) / 8
    np.testing.assert_allclose(y.reshape(2), want, rtol=1e-6)


def test_norm_weights_match_numpy_on_random_windows():
    x = rand(8, 4, 4, 6)
    y = np.asarray(wap(x, WAPConfig(window=(4, 2, 2))))
    win = windows(x, (4, 2, 2))
    want = np.einsum("thwk,thwkc->thwc", np_weights(win, "norm"), win)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_softmax_temperature_zero_uses_the_window_norm_std():
    x = rand(4, 2, 4, 5) * rand(4, 2, 4, 1, seed=1)  # spread the norms
    cfg = WAPConfig(window=(2, 2, 2), weights="softmax", temperature=0.0)
    win = windows(x, cfg.window)
    want = np.einsum("thwk,thwkc->thwc", np_weights(win, "softmax", 0.0), win)
    np.testing.assert_allclose(np.asarray(wap(x, cfg)), want, rtol=1e-5, atol=1e-6)
    fixed = np.asarray(wap(x, cfg.replace(temperature=1.0)))
    assert not np.allclose(fixed, want, atol=1e-3)


def test_weights_sum_to_one():
    norms = jnp.abs(jnp.asarray(rand(3, 16)))
    for cfg in MODES:
        np.testing.assert_allclose(np.asarray(window_weights(norms, cfg)).sum(-1), 1.0, rtol=1e-6)


def test_batched_input_pools_each_clip_independently():
    x = rand(3, 4, 4, 4, 5)
    cfg = WAPConfig(window=(2, 2, 2))
    y = np.asarray(wap(x, cfg))
    assert y.shape == (3, 2, 2, 2, 5)
    for i in range(3):
        np.testing.assert_allclose(y[i], np.asarray(wap(x[i], cfg)), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------ frames and shapes
def test_pad_frames_repeats_the_last_frame():
    x = rand(5, 2, 3)
    p = np.asarray(pad_frames_to_multiple(x, 4, axis=0))
    assert p.shape == (8, 2, 3)
    np.testing.assert_array_equal(p[:5], x)
    np.testing.assert_array_equal(p[5:], np.broadcast_to(x[4], (3, 2, 3)))
    assert pad_frames_to_multiple(x, 5, axis=0) is x
    q = np.asarray(pad_frames_to_multiple(rand(2, 3, 4), 2, axis=-2))
    assert q.shape == (2, 4, 4)
    np.testing.assert_array_equal(q[:, 3], q[:, 2])


@pytest.mark.parametrize("t", [5, 6, 7])
def test_ragged_frame_count_equals_wap_of_the_padded_clip(t):
    x = rand(t, 4, 4, 3)
    cfg = WAPConfig(window=(4, 2, 2))
    y = np.asarray(wap(x, cfg))
    assert y.shape == (2, 2, 2, 3)  # ceil(t / 4)
    padded = np.concatenate([x, np.repeat(x[-1:], 8 - t, axis=0)])
    np.testing.assert_allclose(y, np.asarray(wap(padded, cfg)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y[0], np.asarray(wap(x[:4], cfg))[0], rtol=1e-6, atol=1e-6)
    batched = np.asarray(wap(x[None], cfg))
    np.testing.assert_allclose(batched[0], y, rtol=1e-6, atol=1e-6)


def test_spatial_grid_not_divisible_by_the_window_is_an_error():
    with pytest.raises(ValueError, match="6x5 is not divisible by the WAP spatial window 2x2"):
        wap(rand(4, 6, 5, 3), WAPConfig())
    with pytest.raises(ValueError, match=r"\(T, H, W, C\)"):
        wap(rand(4, 6, 3), WAPConfig())


def test_compressed_grid_shapes_for_internvl3_8b():
    model = model_from_config(internvl3_8b.get_config())
    shape = lambda loc, t=64, hw=None: compressed_grid_shape(WAPConfig(location=loc), model, t, hw)
    assert shape("pre_shuffle") == (16, 16, 16, 1024)
    assert shape("post_shuffle") == (16, 8, 8, 4096)
    assert shape("post_projector") == (16, 8, 8, 3584)
    assert shape("pre_shuffle", t=5) == (2, 16, 16, 1024)
    assert shape("pre_shuffle", hw=(896, 448)) == (16, 32, 16, 1024)
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        shape("pre_shuffle", hw=(450, 448))


def test_compressed_grid_shapes_for_the_tiny_config():
    model = model_from_config(internvl3_tiny.get_config())  # 56 px -> 4x4 patches, Dv 64, d_llm 96
    shape = lambda loc, w: compressed_grid_shape(WAPConfig(window=w, location=loc), model, 4)
    assert shape("pre_shuffle", (2, 2, 2)) == (2, 2, 2, 64)
    assert shape("post_shuffle", (2, 1, 1)) == (2, 2, 2, 256)
    assert shape("post_projector", (2, 1, 1)) == (2, 2, 2, 96)
    with pytest.raises(ValueError, match="post_shuffle token grid 2x2 is not divisible"):
        shape("post_shuffle", (4, 4, 4))


@pytest.mark.parametrize("loc", ["pre_shuffle", "post_shuffle", "post_projector"])
def test_wap_output_matches_compressed_grid_shape(loc):
    model = model_from_config(internvl3_tiny.get_config("image_size=112"))  # 8x8 patches
    cfg = WAPConfig(location=loc, window=(4, 2, 2))
    gh = 8 if loc == "pre_shuffle" else 4
    c = {"pre_shuffle": 64, "post_shuffle": 256, "post_projector": 96}[loc]
    y = jax.eval_shape(lambda x: wap(x, cfg), jax.ShapeDtypeStruct((2, 6, gh, gh, c), jnp.float32))
    assert y.shape == (2, *compressed_grid_shape(cfg, model, 6))


# ------------------------------------------------------------------------------------ numerics and transforms
def test_bfloat16_input_gives_bfloat16_output_close_to_float32():
    x = rand(8, 4, 4, 32)
    xb = jnp.asarray(x, jnp.bfloat16)
    for cfg in MODES:
        y = wap(xb, cfg)
        assert y.dtype == jnp.bfloat16
        want = wap(xb.astype(jnp.float32), cfg)
        np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(want), rtol=2 ** -7, atol=1e-6)


def test_bfloat16_norms_are_computed_in_float32():
    # sum of squares 300 vs 303: bf16 rounds 303 to 304 and the norms to 17.375 / 17.5, which a sharp softmax
    # would turn into a visibly different weight than the exact norms 17.3205 / 17.4069.
    a = np.ones(300, np.float32)
    b = a.copy()
    b[0] = 2.0
    x = jnp.asarray(np.stack([a, b]).reshape(2, 1, 1, 300), jnp.bfloat16)
    y = np.asarray(wap(x, WAPConfig(window=(2, 1, 1), weights="softmax", temperature=0.1)), np.float32)
    w = np_weights(np.stack([a, b])[None], "softmax", 0.1)[0]
    np.testing.assert_allclose(y.reshape(-1)[0], w[0] + 2 * w[1], rtol=2 ** -8)
    np.testing.assert_allclose(y.reshape(-1)[1:], 1.0)


@pytest.mark.parametrize("cfg", MODES[:1] + MODES[2:], ids=lambda c: f"{c.weights}-t{c.temperature}")
def test_gradient_treats_the_weights_as_constants(cfg):
    cfg = cfg.replace(window=(2, 2, 2))
    x = rand(4, 2, 4, 3) + 0.5
    g = rand(2, 1, 2, 3, seed=2)
    grad = np.asarray(jax.grad(lambda v: jnp.sum(wap(v, cfg) * g))(jnp.asarray(x)))
    a = np_weights(windows(x, cfg.window), cfg.weights, cfg.temperature)  # (T', H', W', K)
    want = unwindows(a[..., None] * g[..., None, :], cfg.window)
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)


def test_gradient_of_an_all_zero_window_is_finite():
    grad = jax.grad(lambda v: jnp.sum(wap(v, WAPConfig(window=(2, 1, 1)))))(jnp.zeros((2, 1, 1, 3)))
    np.testing.assert_allclose(np.asarray(grad), 0.5)


def test_wap_runs_under_jit():
    x = rand(2, 5, 4, 4, 8)
    cfg = WAPConfig(weights="softmax", temperature=0.0)
    y = jax.jit(wap, static_argnums=1)(x, cfg)
    np.testing.assert_allclose(np.asarray(y), np.asarray(wap(x, cfg)), rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------ config
def test_config_validation_lists_every_problem():
    bad = WAPConfig(window=(0, 2, -1), weights="max", temperature=float("nan"), location="after_llm")
    with pytest.raises(ConfigError) as err:
        bad.validate()
    msg = str(err.value)
    for part in ("window=(0, 2, -1)", "weights='max'", "temperature=nan", "location='after_llm'"):
        assert part in msg
    with pytest.raises(ValueError, match="three positive integers"):
        WAPConfig(window=(2, 2)).validate()
    with pytest.raises(ConfigError, match="location"):
        wap(rand(4, 2, 2, 1), WAPConfig(location="nowhere"))
    assert WAPConfig().validate() == WAPConfig()


def test_config_round_trips_through_json():
    cfg = WAPConfig(window=(2, 1, 4), weights="softmax", temperature=0.0, location="post_projector")
    back = WAPConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and hash(back) == hash(cfg)
    assert WAPConfig().ratio == 16
    with pytest.raises(ConfigError, match="unknown WAP config field"):
        WAPConfig.from_dict({"stride": 2})
