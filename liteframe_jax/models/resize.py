"""Bicubic resizing that matches PyTorch's ``F.interpolate(mode="bicubic")``.

Used to resize a ViT's learned position-embedding table to another patch grid.

``jax.image.resize(..., "bicubic")`` is not a drop-in replacement: it uses the
Keys kernel with ``a = -0.5`` and antialiases when downsampling. This module
reproduces ``torch.nn.functional.interpolate(x, size=(out_h, out_w),
mode="bicubic", align_corners=False)`` (no antialias):

* cubic convolution kernel with ``A = -0.75``;
* source coordinate ``src = (dst + 0.5) * (in / out) - 0.5``, not clamped at 0;
* four taps at ``floor(src) - 1 .. floor(src) + 2``, each clamped to
  ``[0, in - 1]`` (border replicate).

The 1-D weights are computed in float32 with the operation order of PyTorch's
CPU kernel (``HelperInterpCubic`` in ``UpSampleKernel.cpp``), so they are
bit-identical to the weights PyTorch itself uses. The kernel polynomials suffer
from cancellation (float32 weights carry errors of up to ~1e-6), so the exact
rounding sequence matters. PyTorch compiles that kernel once per CPU capability
and the compiler contracts some multiply-adds into fused multiply-adds (FMA) in
the AVX2/AVX512 builds but not in the portable DEFAULT build; the two builds
therefore produce slightly different weights. ``fused_multiply_add=True`` (the
default) mirrors the AVX2/AVX512 builds that torch dispatches to on current x86
CPUs; ``fused_multiply_add=False`` mirrors the DEFAULT build
(``ATEN_CPU_CAPABILITY=default``) and the ``torch._decomp`` decomposition.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["bicubic_weights", "resize_bicubic"]

_F32 = np.float32
_A = _F32(-0.75)


def _fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Correctly rounded float32 ``a * b + c`` (an emulated single-precision FMA).

    ``a * b`` is exact in float64; the float64 sum is then rounded to float32. The
    one way that double rounding can go wrong (the float64 sum lands exactly on a
    float32 halfway point although the exact sum does not) is detected with an
    error-free TwoSum and corrected.
    """
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)  # exact: p + c == s + err
    r = s.astype(np.float32)
    r64 = r.astype(np.float64)
    toward = np.where(s > r64, np.inf, -np.inf).astype(np.float32)
    other = np.nextafter(r, toward)
    halfway = (s != r64) & (s == (r64 + other.astype(np.float64)) * 0.5)
    # At a tie, the exact sum lies on the side of err; pick the float32 there.
    fix = halfway & (err != 0)
    pick_other = fix & ((err > 0) == (other > r))
    return np.where(pick_other, other, r).astype(np.float32)


def _mul_add(a, b, c, fused: bool) -> np.ndarray:
    if fused:
        return _fma_f32(a, b, c)
    return (a * b + c).astype(np.float32)  # product rounded, then sum rounded


# Which multiply-adds torch's AVX2/AVX512 build fuses was established by comparing
# bitwise against torch 2.15 (all size pairs up to 64 -> 64): the source index
# and the inner multiply-adds of each polynomial are fused, the last step is not.


def _cubic_near(x: np.ndarray, fused: bool) -> np.ndarray:
    """Kernel for taps at distance |x| <= 1: ((A + 2) x - (A + 3)) x x + 1."""
    p = _mul_add(_A + _F32(2.0), x, -(_A + _F32(3.0)), fused)
    return (p * x) * x + _F32(1.0)


def _cubic_far(x: np.ndarray, fused: bool) -> np.ndarray:
    """Kernel for taps at distance 1 <= |x| <= 2: ((A x - 5A) x + 8A) x - 4A."""
    p = _mul_add(_A, x, -(_F32(5.0) * _A), fused)
    q = _mul_add(p, x, _F32(8.0) * _A, fused)
    return q * x - _F32(4.0) * _A


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def bicubic_weights(
    in_size: int, out_size: int, *, fused_multiply_add: bool = True
) -> np.ndarray:
    """1-D bicubic interpolation matrix, PyTorch semantics (align_corners=False).

    Args:
      in_size: number of input positions (> 0).
      out_size: number of output positions (> 0).
      fused_multiply_add: mirror torch's AVX2/AVX512 CPU kernel (True) or its
        portable DEFAULT kernel (False); see the module docstring.

    Returns:
      float32 array of shape (out_size, in_size); row ``i`` holds the weights of
      output position ``i`` over the input positions (weights of taps clamped to
      the same border index are summed, in tap order). Exactly the identity
      matrix when ``in_size == out_size``.
    """
    in_size = _check_size("in_size", in_size)
    out_size = _check_size("out_size", out_size)
    if in_size == out_size:
        return np.eye(in_size, dtype=np.float32)
    fused = bool(fused_multiply_add)

    # All arithmetic in float32, in the order of PyTorch's CPU kernel.
    scale = _F32(in_size) / _F32(out_size)
    dst = np.arange(out_size, dtype=np.float32) + _F32(0.5)
    src = _mul_add(np.full_like(dst, scale), dst, np.full_like(dst, -0.5), fused)
    # src may be negative here: bicubic does not clamp the source coordinate.
    index = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    t = np.clip(src - index.astype(np.float32), _F32(0.0), _F32(1.0))
    t_rev = _F32(1.0) - t
    taps = np.stack(
        [
            _cubic_far(t + _F32(1.0), fused),
            _cubic_near(t, fused),
            _cubic_near(t_rev, fused),
            _cubic_far(t_rev + _F32(1.0), fused),
        ],
        axis=1,
    ).astype(np.float32)  # (out_size, 4)

    cols = np.clip(index[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
    rows = np.broadcast_to(np.arange(out_size)[:, None], cols.shape)
    weights = np.zeros((out_size, in_size), dtype=np.float32)
    np.add.at(weights, (rows, cols), taps)  # unbuffered: sums duplicates in order
    return weights


def resize_bicubic(
    grid: jax.Array,
    out_hw: Sequence[int],
    *,
    fused_multiply_add: bool = True,
) -> jax.Array:
    """Resize a (H, W, C) grid of vectors to (out_h, out_w, C), torch-bicubic style.

    Equivalent to ``F.interpolate(x, size=out_hw, mode="bicubic",
    align_corners=False)`` on the (1, C, H, W) view of ``grid``. Computed
    separably as ``Wy @ grid @ Wx^T`` in float32 with HIGHEST precision; the
    output keeps the input dtype. Sizes are static, so it is jit-compatible.
    If ``out_hw == (H, W)`` the grid is returned unchanged.

    Args:
      grid: array of shape (H, W, C).
      out_hw: target (out_h, out_w), positive Python ints.
      fused_multiply_add: weight rounding variant, see ``bicubic_weights``.

    Returns:
      array of shape (out_h, out_w, C) with ``grid``'s dtype.
    """
    if np.ndim(grid) != 3:
        raise ValueError(
            f"grid must be 3-D (H, W, C), got shape {tuple(np.shape(grid))}"
        )
    if len(out_hw) != 2:
        raise ValueError(f"out_hw must be (out_h, out_w), got {out_hw!r}")
    out_h = _check_size("out_h", out_hw[0])
    out_w = _check_size("out_w", out_hw[1])
    in_h, in_w, _ = np.shape(grid)
    if (out_h, out_w) == (in_h, in_w):
        return grid

    hp = jax.lax.Precision.HIGHEST
    dtype = jnp.asarray(grid).dtype
    x = jnp.asarray(grid, dtype=jnp.float32)
    # Width first, then height: PyTorch sums over x-taps inside the y-taps.
    if out_w != in_w:
        wx = bicubic_weights(in_w, out_w, fused_multiply_add=fused_multiply_add)
        x = jnp.einsum("hwc,ow->hoc", x, wx, precision=hp)
    if out_h != in_h:
        wy = bicubic_weights(in_h, out_h, fused_multiply_add=fused_multiply_add)
        x = jnp.einsum("ph,hwc->pwc", wy, x, precision=hp)
    return x.astype(dtype)
