"""Specification of liteframe_jax.models.resize: torch-compatible bicubic resizing.

The reference is ``torch.nn.functional.interpolate(x, size=..., mode="bicubic",
align_corners=False)`` on the (1, C, H, W) view of a (H, W, C) grid.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liteframe_jax.models.resize import bicubic_weights, resize_bicubic

torch = pytest.importorskip("torch")
F = torch.nn.functional

# Values are O(1) (uniform in [-1, 1)); agreement is float32 rounding level.
ATOL = 1e-6

# 1-D (in_size, out_size) pairs: up, down, tiny, and the ViT-grid sizes.
_SIZE_PAIRS = [
    (4, 6), (4, 3), (32, 24), (32, 40), (5, 7), (3, 8), (2, 9), (1, 3), (37, 5),
]


def _torch_bicubic(grid: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    x = torch.from_numpy(np.array(grid, np.float32))  # copy: writable for torch
    x = x.permute(2, 0, 1)[None]  # (1, C, H, W)
    y = F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False)
    return y[0].permute(1, 2, 0).numpy()  # (out_h, out_w, C)


def _torch_weights(in_size: int, out_size: int) -> np.ndarray:
    """The (out, in) weight matrix torch uses, read off by resizing one-hot rows."""
    basis = torch.eye(in_size, dtype=torch.float32).reshape(1, in_size, 1, in_size)
    y = F.interpolate(basis, size=(1, out_size), mode="bicubic", align_corners=False)
    return y[0, :, 0, :].T.numpy()


@functools.cache
def _torch_uses_fma() -> bool:
    """Rounding variant of the running torch CPU kernel (see the module docstring)."""
    reference = _torch_weights(32, 40)
    return not np.array_equal(
        bicubic_weights(32, 40, fused_multiply_add=False), reference
    )


def _random_grid(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape).astype(np.float32)


def _assert_matches_torch(in_hw, out_hw, channels=16):
    grid = _random_grid((*in_hw, channels))
    expected = _torch_bicubic(grid, out_hw)
    actual = np.asarray(
        resize_bicubic(
            jnp.asarray(grid), out_hw, fused_multiply_add=_torch_uses_fma()
        )
    )
    assert actual.shape == (*out_hw, channels)
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [
        ((4, 4), (6, 6)),
        ((32, 32), (40, 40)),
        ((2, 2), (9, 9)),
        ((1, 1), (3, 3)),
        ((14, 14), (37, 37)),
    ],
    ids=["4->6", "32->40", "2->9", "1->3", "14->37"],
)
def test_upsampling_matches_torch_bicubic(in_hw, out_hw):
    _assert_matches_torch(in_hw, out_hw)


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((4, 4), (3, 3)), ((32, 32), (24, 24)), ((37, 37), (5, 5))],
    ids=["4->3", "32->24", "37->5"],
)
def test_downsampling_matches_torch_bicubic(in_hw, out_hw):
    _assert_matches_torch(in_hw, out_hw)


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((5, 3), (7, 8)), ((1, 4), (3, 2)), ((6, 9), (4, 12)), ((8, 8), (8, 5))],
    ids=["5x3->7x8", "1x4->3x2", "6x9->4x12", "8x8->8x5"],
)
def test_non_square_and_mixed_resizing_matches_torch_bicubic(in_hw, out_hw):
    _assert_matches_torch(in_hw, out_hw)


def test_weights_are_bitwise_equal_to_torch_kernel_weights():
    fused = _torch_uses_fma()
    for in_size in range(1, 25):
        for out_size in range(1, 25):
            np.testing.assert_array_equal(
                bicubic_weights(in_size, out_size, fused_multiply_add=fused),
                _torch_weights(in_size, out_size),
                err_msg=f"{in_size}->{out_size}",
            )


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("in_size, out_size", _SIZE_PAIRS)
def test_weights_follow_cubic_convolution_with_a_minus_0_75(in_size, out_size, fused):
    # float64 reference from the definition: src = (dst + 0.5) * in/out - 0.5
    # (negative src is not clamped), taps floor(src)-1 .. floor(src)+2 clamped to
    # [0, in-1], kernel = Keys cubic with A = -0.75.
    a = -0.75

    def kernel(x):
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return 0.0

    expected = np.zeros((out_size, in_size))
    for i in range(out_size):
        src = (i + 0.5) * in_size / out_size - 0.5
        base = int(np.floor(src))
        for tap in range(base - 1, base + 3):
            expected[i, min(max(tap, 0), in_size - 1)] += kernel(src - tap)
    weights = bicubic_weights(in_size, out_size, fused_multiply_add=fused)
    assert weights.shape == (out_size, in_size)
    assert weights.dtype == np.float32
    np.testing.assert_allclose(weights, expected, rtol=0, atol=2e-6)


def test_negative_source_coordinate_is_not_clamped():
    # 4 -> 8: output 0 maps to src = -0.25, i.e. t = 0.75 past tap -1; the taps
    # -2, -1, 0, 1 (distances 1.75, 0.75, 0.25, 1.25) have weights
    # -0.03515625, 0.26171875, 0.87890625, -0.10546875 and the first three clamp
    # onto input 0. Clamping src to 0 would instead give the row [1, 0, 0, 0].
    expected = np.array([1.10546875, -0.10546875, 0.0, 0.0], dtype=np.float32)
    for fused in (True, False):
        row = bicubic_weights(4, 8, fused_multiply_add=fused)[0]
        np.testing.assert_array_equal(row, expected)
    np.testing.assert_array_equal(_torch_weights(4, 8)[0], expected)


@pytest.mark.parametrize("in_size, out_size", _SIZE_PAIRS)
def test_weight_rows_sum_to_one(in_size, out_size):
    for fused in (True, False):
        weights = bicubic_weights(in_size, out_size, fused_multiply_add=fused)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 7, 32])
def test_weights_are_exact_identity_at_equal_size(size):
    for fused in (True, False):
        weights = bicubic_weights(size, size, fused_multiply_add=fused)
        assert weights.dtype == np.float32
        np.testing.assert_array_equal(weights, np.eye(size, dtype=np.float32))


def test_equal_size_returns_grid_unchanged():
    grid = jnp.asarray(_random_grid((7, 5, 3)))
    out = resize_bicubic(grid, (7, 5))
    assert out is grid
    np.testing.assert_array_equal(np.asarray(out), np.asarray(grid))
    np.testing.assert_array_equal(
        np.asarray(out), _torch_bicubic(np.asarray(grid), (7, 5))
    )


def test_equal_size_is_bitwise_identity_under_jit():
    grid = jnp.asarray(_random_grid((6, 6, 4)))
    out = jax.jit(resize_bicubic, static_argnums=1)(grid, (6, 6))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(grid))


def test_resize_works_under_jit_and_matches_eager():
    grid = _random_grid((5, 3, 8), seed=1)
    fused = _torch_uses_fma()
    resize = jax.jit(
        functools.partial(resize_bicubic, out_hw=(7, 8), fused_multiply_add=fused)
    )
    jitted = np.asarray(resize(jnp.asarray(grid)))
    eager = np.asarray(
        resize_bicubic(jnp.asarray(grid), (7, 8), fused_multiply_add=fused)
    )
    assert jitted.shape == (7, 8, 8)
    np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-7)
    np.testing.assert_allclose(
        jitted, _torch_bicubic(grid, (7, 8)), rtol=0, atol=ATOL
    )


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_output_keeps_input_dtype(dtype):
    grid = jnp.asarray(_random_grid((4, 4, 8), seed=2)).astype(dtype)
    out = resize_bicubic(grid, (6, 3))
    assert out.dtype == dtype
    assert out.shape == (6, 3, 8)
    expected = _torch_bicubic(np.asarray(grid.astype(jnp.float32)), (6, 3))
    tol = 1e-2 if dtype == jnp.bfloat16 else 2e-3
    np.testing.assert_allclose(
        np.asarray(out.astype(jnp.float32)), expected, rtol=0, atol=tol
    )


def test_differs_from_jax_image_resize_bicubic():
    # jax.image.resize uses Keys a = -0.5 and antialiases when downsampling.
    grid = _random_grid((8, 8, 4), seed=3)
    ours = np.asarray(resize_bicubic(jnp.asarray(grid), (5, 5)))
    theirs = np.asarray(jax.image.resize(jnp.asarray(grid), (5, 5, 4), "bicubic"))
    assert np.abs(ours - theirs).max() > 1e-2


@pytest.mark.parametrize("out_hw", [(0, 4), (4, 0), (-1, 3), (3, -2)])
def test_non_positive_output_size_raises_value_error(out_hw):
    with pytest.raises(ValueError, match="positive"):
        resize_bicubic(jnp.zeros((4, 4, 2)), out_hw)


@pytest.mark.parametrize("in_size, out_size", [(0, 3), (3, 0), (-2, 3)])
def test_non_positive_weight_sizes_raise_value_error(in_size, out_size):
    with pytest.raises(ValueError, match="positive"):
        bicubic_weights(in_size, out_size)


@pytest.mark.parametrize("shape", [(4, 4), (1, 4, 4, 2), (8,)])
def test_grid_that_is_not_3d_raises_value_error(shape):
    with pytest.raises(ValueError, match="3-D"):
        resize_bicubic(jnp.zeros(shape), (2, 2))
