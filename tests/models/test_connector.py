"""Pixel shuffle matches InternVL's view/permute definition; the projector uses exact GELU and eps 1e-5."""

import jax
from flax import linen as nn
import numpy as np
import pytest

from liteframe_jax.models.connector import Projector, pixel_shuffle


def internvl_pixel_shuffle(x: np.ndarray, version: str) -> np.ndarray:
    """InternVL's own definition (modeling_internvl_chat.py), written with numpy views. x (n, rows, cols, c)."""
    n, w, h, c = x.shape
    x = x.reshape(n, w, h // 2, c * 2)
    x = x.transpose(0, 2, 1, 3)
    x = x.reshape(n, h // 2, w // 2, c * 4)
    if version == "v2":
        x = x.transpose(0, 2, 1, 3)
    return x.reshape(n, -1, c * 4)


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("grid", [(4, 4), (32, 32), (6, 6)])
def test_pixel_shuffle_matches_internvl(version, grid):
    x = np.random.default_rng(0).normal(size=(2, *grid, 8)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(pixel_shuffle(x, 2, version)), internvl_pixel_shuffle(x, version))


def test_pixel_shuffle_channel_layout_is_dy_dx_c():
    x = np.arange(2 * 2 * 3).reshape(1, 2, 2, 3).astype(np.float32)  # one 2x2 block
    out = np.asarray(pixel_shuffle(x, 2))
    np.testing.assert_array_equal(out[0, 0], np.concatenate([x[0, 0, 0], x[0, 0, 1], x[0, 1, 0], x[0, 1, 1]]))


def test_pixel_shuffle_rejects_odd_grids():
    with pytest.raises(ValueError, match="not divisible by the pixel-shuffle factor 2"):
        pixel_shuffle(np.zeros((1, 5, 4, 3)), 2)


def test_projector_is_layernorm_exact_gelu_mlp():
    proj = Projector(out_dim=6, ln_eps=1e-5)
    x = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32)
    params = nn.unbox(proj.init(jax.random.key(0), x)["params"])
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    h = (x - mu) / np.sqrt(var + 1e-5) * params["norm"]["scale"] + params["norm"]["bias"]
    h = h @ params["fc1"]["kernel"] + params["fc1"]["bias"]
    from scipy.special import erf
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    want = h @ params["fc2"]["kernel"] + params["fc2"]["bias"]
    np.testing.assert_allclose(np.asarray(proj.apply({"params": params}, x)), want, rtol=1e-5, atol=1e-6)
