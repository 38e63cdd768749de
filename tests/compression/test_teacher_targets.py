"""CTD targets: WAP of the frozen teacher's tokens at the configured location, and their LLM-side tokens."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import internvl3_8b, internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.compression.teacher_targets import targets_to_llm_tokens, teacher_targets
from liteframe_jax.compression.wap import WAPConfig, compressed_grid_shape, wap
from liteframe_jax.models.internvl import InternVL

LOCATIONS = ["pre_shuffle", "post_shuffle", "post_projector"]
SMALL_WINDOWS = {"pre_shuffle": (2, 2, 2), "post_shuffle": (2, 1, 1), "post_projector": (2, 1, 1)}


@functools.lru_cache(maxsize=None)
def _tiny_params():
    """Teacher vision + projector parameters only (the LLM is never needed). 56 px native: 4x4 patch grid;
    other frame sizes resize the position table."""
    cfg = model_from_config(internvl3_tiny.get_config())
    init = lambda: InternVL(cfg).init(jax.random.key(3), jnp.zeros((1, 56, 56, 3)), method=InternVL.encode_images)
    return jax.jit(init)()["params"]


def teacher(ps_version="v2"):
    return model_from_config(internvl3_tiny.get_config()).replace(ps_version=ps_version), nn.unbox(_tiny_params())


def clip(b, t, h, w=None, seed=0):
    return np.random.default_rng(seed).normal(size=(b, t, h, w or h, 3)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def teacher_method(cfg, name):
    """InternVL's own `name` method, jitted: (params, frames (F, H, W, 3)) -> output."""
    apply = functools.partial(InternVL(cfg).apply, method=getattr(InternVL, name))
    return jax.jit(lambda params, frames: apply({"params": params}, frames))


def teacher_tensor(cfg, params, pixels, location):
    """The teacher's per-frame tensor at `location`, from InternVL's own methods: (B, T, h, w, C)."""
    b, t, hgt, wid, _ = pixels.shape
    frames = pixels.reshape(b * t, hgt, wid, 3)
    p, f = cfg.vision.patch_size, cfg.shuffle_factor
    if location == "pre_shuffle":
        out = teacher_method(cfg, "vision_features")(params, frames)[:, 1:]
        return out.reshape(b, t, hgt // p, wid // p, -1)
    name = "shuffled_features" if location == "post_shuffle" else "encode_images"
    out = teacher_method(cfg, name)(params, frames)
    return out.reshape(b, t, hgt // p // f, wid // p // f, -1)  # v2: tokens are row-major over the grid


@pytest.mark.parametrize("location", LOCATIONS)
def test_targets_are_wap_of_the_teacher_tensor_at_the_location(location):
    cfg, params = teacher()
    pixels = clip(2, 4, 56)
    wcfg = WAPConfig(window=SMALL_WINDOWS[location], location=location)
    got = teacher_targets(cfg, params, pixels, wcfg)
    assert got.shape == (2, *compressed_grid_shape(wcfg, cfg, 4))
    want = wap(teacher_tensor(cfg, params, pixels, location), wcfg)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("location", LOCATIONS)
def test_default_window_on_an_8x8_grid(location):
    cfg, params = teacher()
    pixels = clip(1, 8, 112)  # 8x8 patch grid
    wcfg = WAPConfig(location=location)  # default (4, 2, 2): 16x fewer tokens wherever it is applied
    targets = teacher_targets(cfg, params, pixels, wcfg)
    assert targets.shape == (1, *compressed_grid_shape(wcfg, cfg, 8, (112, 112)))
    assert targets.shape == {"pre_shuffle": (1, 2, 4, 4, 64), "post_shuffle": (1, 2, 2, 2, 256),
                             "post_projector": (1, 2, 2, 2, 96)}[location]
    tokens = targets_to_llm_tokens(cfg, params, targets, wcfg)
    assert tokens.shape == (1, 8 * cfg.tokens_per_frame((112, 112)) // 16, cfg.text.hidden_size)


def test_a_ragged_clip_is_padded_with_its_last_frame():
    cfg, params = teacher()
    pixels = clip(1, 6, 112)
    padded = np.concatenate([pixels, pixels[:, -1:], pixels[:, -1:]], axis=1)
    got = teacher_targets(cfg, params, pixels, WAPConfig())
    assert got.shape == (1, 2, 4, 4, 64)
    np.testing.assert_allclose(np.asarray(got), np.asarray(teacher_targets(cfg, params, padded, WAPConfig())),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ps_version", ["v2", "v1"])
@pytest.mark.parametrize("location", LOCATIONS)
def test_no_compression_reproduces_the_teachers_llm_tokens(location, ps_version):
    cfg, params = teacher(ps_version=ps_version)
    pixels = clip(2, 3, 56, 112)  # non-square: a transposed token grid would not line up
    wcfg = WAPConfig(window=(1, 1, 1), weights="uniform", location=location)
    tokens = targets_to_llm_tokens(cfg, params, teacher_targets(cfg, params, pixels, wcfg), wcfg)
    want = teacher_method(cfg, "encode_images")(params, pixels.reshape(6, 56, 112, 3))
    assert tokens.shape == (2, 3 * want.shape[1], cfg.text.hidden_size)
    got, want = np.asarray(tokens).reshape(want.shape), np.asarray(want)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


@pytest.mark.parametrize("ps_version", ["v2", "v1"])
def test_post_shuffle_targets_form_a_spatial_grid(ps_version):
    # post_shuffle token (r, c) stacks the pre-shuffle 2x2 block at rows 2r.., cols 2c.. in (dy, dx, C) order
    cfg, params = teacher(ps_version=ps_version)
    pixels = clip(1, 1, 56, 112)
    none = lambda loc: WAPConfig(window=(1, 1, 1), weights="uniform", location=loc)
    pre = np.asarray(teacher_targets(cfg, params, pixels, none("pre_shuffle")))[0, 0]  # (4, 8, 64)
    post = np.asarray(teacher_targets(cfg, params, pixels, none("post_shuffle")))[0, 0]  # (2, 4, 256)
    blocks = pre.reshape(2, 2, 4, 2, 64).transpose(0, 2, 1, 3, 4).reshape(2, 4, 256)
    np.testing.assert_array_equal(post, blocks)


def test_targets_carry_no_gradient():
    cfg, params = teacher()
    pixels = jnp.asarray(clip(1, 2, 56))
    loss = lambda p, x: jnp.sum(teacher_targets(cfg, p, x, WAPConfig((2, 2, 2))) ** 2)
    gx = jax.grad(loss, argnums=1)(params, pixels)
    assert float(jnp.max(jnp.abs(gx))) == 0.0


def test_runs_inside_jit_and_with_boxed_params():
    cfg, params = teacher()
    pixels = clip(1, 2, 56)
    wcfg = WAPConfig((2, 2, 2))
    want = np.asarray(teacher_targets(cfg, params, pixels, wcfg))
    outer = jax.jit(lambda p, x: targets_to_llm_tokens(cfg, p, teacher_targets(cfg, p, x, wcfg), wcfg))
    assert outer(params, pixels).shape == (1, 1, cfg.text.hidden_size)
    boxed = _tiny_params()
    assert isinstance(boxed["vision"]["patch_embed"]["kernel"], nn.LogicallyPartitioned)
    np.testing.assert_allclose(np.asarray(teacher_targets(cfg, boxed, pixels, wcfg)), want, rtol=1e-6, atol=1e-6)


def test_bfloat16_teacher_gives_bfloat16_targets():
    cfg, params = teacher()
    cfg = cfg.replace(dtype="bfloat16")
    targets = teacher_targets(cfg, params, clip(1, 2, 56), WAPConfig((2, 2, 2)))
    assert targets.dtype == jnp.bfloat16
    assert targets_to_llm_tokens(cfg, params, targets, WAPConfig((2, 2, 2))).dtype == jnp.bfloat16


def test_default_window_gives_16_tokens_per_frame_on_internvl3_8b():
    cfg = model_from_config(internvl3_8b.get_config())
    wcfg = WAPConfig()
    assert wcfg == WAPConfig(window=(4, 2, 2), weights="norm", location="pre_shuffle")
    assert compressed_grid_shape(wcfg, cfg, 64) == (16, 16, 16, 1024)
    f = cfg.shuffle_factor
    assert (16 // f) * (16 // f) == 64  # tokens per 4-frame group after the teacher's pixel shuffle
    params = jax.eval_shape(lambda: nn.unbox(InternVL(cfg).init(jax.random.key(0), jnp.zeros((1, 448, 448, 3)),
                                                                method=InternVL.encode_images))["params"])
    pixels = jax.ShapeDtypeStruct((1, 8, 448, 448, 3), jnp.float32)
    targets = jax.eval_shape(lambda p, x: teacher_targets(cfg, p, x, wcfg), params, pixels)
    assert targets.shape == (1, 2, 16, 16, 1024)
    tokens = jax.eval_shape(lambda p, t: targets_to_llm_tokens(cfg, p, t, wcfg), params, targets)
    assert tokens.shape == (1, 8 * 16, 3584)
    assert cfg.tokens_per_frame() == 256 == 16 * (tokens.shape[1] // 8)
