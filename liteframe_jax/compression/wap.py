"""WAP (Weighted Average Pooling): spatio-temporal token compression over non-overlapping windows.

For a window W of (kt, kh, kw) tokens of a grid X (T, H, W, C):  y_W = sum_{i in W} a_i x_i, with the weights a
(summing to 1 over the window) treated as constants (stop-gradient) and computed in float32:

- "norm" (default):  a_i = ||x_i|| / sum_j ||x_j||   (an all-zero window falls back to uniform weights)
- "softmax":         a = softmax(||x|| / tau) over the window; tau = `temperature` if > 0, otherwise the window's
                     population std of the norms (a window of equal norms, std 0, gets uniform weights)
- "uniform":         a_i = 1 / |W|, i.e. mean pooling

Frame padding rule: when T is not a multiple of kt, the clip is padded at its end by repeating the last frame
(`pad_frames_to_multiple`), so T' = ceil(T / kt), every output window holds at least one real frame, and in the
last window the last frame counts once per copy (a clip of identical frames is unchanged by padding). H and W must
be multiples of kh and kw (a ValueError otherwise). The paper does not give the formula; this one is our proposal.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from liteframe_jax.models.layers import pad_frames_to_multiple  # noqa: F401 (re-exported)
from liteframe_jax.config_base import ConfigBase
from liteframe_jax.models.config import InternVLConfig

WEIGHTS = ("norm", "softmax", "uniform")
LOCATIONS = ("pre_shuffle", "post_shuffle", "post_projector")


@dataclasses.dataclass(frozen=True)
class WAPConfig(ConfigBase):
    """Where and how the teacher's tokens are pooled. Hashable, so it can be a static jit argument.

    window: (kt, kh, kw) frames x rows x cols pooled into one token.
    location: "pre_shuffle" (InternViT patch features (T, gh, gw, Dv)), "post_shuffle" (after pixel shuffle,
      (T, gh/f, gw/f, f^2 Dv)) or "post_projector" (after mlp1, (T, gh/f, gw/f, d_llm)).
    """

    config_name: ClassVar[str] = "WAP config"
    window: tuple[int, int, int] = (4, 2, 2)
    weights: str = "norm"
    temperature: float = 1.0  # softmax only; <= 0: use the window's norm std
    location: str = "pre_shuffle"

    @property
    def ratio(self) -> int:
        """Compression ratio: tokens per pooling window."""
        return math.prod(self.window)

    def problems(self) -> list[str]:
        e = []
        w = self.window
        if not isinstance(w, tuple) or len(w) != 3:
            e.append(f"window={w!r} must be a tuple (kt, kh, kw) of three positive integers")
        elif not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in w):
            e.append(f"window={w!r} entries must be positive integers")
        if self.weights not in WEIGHTS:
            e.append(f"weights={self.weights!r} must be one of {WEIGHTS}")
        if not isinstance(self.temperature, (int, float)) or not math.isfinite(self.temperature):
            e.append(f"temperature={self.temperature!r} must be a finite number (<= 0: use the window's norm std)")
        if self.location not in LOCATIONS:
            e.append(f"location={self.location!r} must be one of {LOCATIONS}")
        return e


def window_weights(norms: jax.Array, cfg: WAPConfig) -> jax.Array:
    """Pooling weights from fp32 token norms (..., K) of K-token windows -> (..., K), summing to 1 over K."""
    k = norms.shape[-1]
    if cfg.weights == "uniform":
        return jnp.full_like(norms, 1.0 / k)
    if cfg.weights == "norm":
        total = jnp.sum(norms, axis=-1, keepdims=True)
        safe = jnp.where(total > 0, total, 1.0)
        return jnp.where(total > 0, norms / safe, 1.0 / k)
    if cfg.temperature > 0:
        tau = jnp.float32(cfg.temperature)
    else:
        std = jnp.std(norms, axis=-1, keepdims=True)
        tau = jnp.where(std > 0, std, 1.0)  # std 0 means equal norms: any tau gives the uniform answer
    return jax.nn.softmax(norms / tau, axis=-1)


def wap(x: jax.Array, cfg: WAPConfig = WAPConfig()) -> jax.Array:
    """x (T, H, W, C) or (B, T, H, W, C) -> (ceil(T/kt), H/kh, W/kw, C) (batched likewise), in x's dtype."""
    cfg.validate()
    if x.ndim not in (4, 5):
        raise ValueError(f"wap expects (T, H, W, C) or (B, T, H, W, C), got shape {x.shape}")
    kt, kh, kw = cfg.window
    h, w = x.shape[-3:-1]
    if h % kh or w % kw:
        raise ValueError(f"token grid {h}x{w} is not divisible by the WAP spatial window {kh}x{kw}")
    x = pad_frames_to_multiple(x, kt, axis=-4)
    *lead, t, _, _, c = x.shape
    n = len(lead)
    win = x.reshape(*lead, t // kt, kt, h // kh, kh, w // kw, kw, c)
    # -> (..., T', H', W', kt, kh, kw, C) -> (..., T', H', W', K, C)
    perm = (*range(n), n, n + 2, n + 4, n + 1, n + 3, n + 5, n + 6)
    win = win.transpose(perm).reshape(*lead, t // kt, h // kh, w // kw, kt * kh * kw, c)
    win32 = win.astype(jnp.float32)
    norms = jnp.linalg.norm(jax.lax.stop_gradient(win32), axis=-1)
    a = jax.lax.stop_gradient(window_weights(norms, cfg))
    return jnp.einsum("...k,...kc->...c", a, win32).astype(x.dtype)


def compressed_grid_shape(cfg: WAPConfig, model_cfg: InternVLConfig, num_frames: int,
                          image_hw: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """(T', H', W', C) of the WAP output for `num_frames` frames of size `image_hw` (default: the native size)."""
    cfg.validate()
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames} must be >= 1")
    hgt, wid = image_hw or model_cfg.vision.image_size
    p, f = model_cfg.vision.patch_size, model_cfg.shuffle_factor
    if hgt % p or wid % p:
        raise ValueError(f"image size {hgt}x{wid} is not a multiple of the patch size {p}")
    gh, gw = hgt // p, wid // p
    if cfg.location == "pre_shuffle":
        c = model_cfg.vision.hidden_size
    else:
        if gh % f or gw % f:
            raise ValueError(f"patch grid {gh}x{gw} is not divisible by the pixel-shuffle factor {f}")
        gh, gw = gh // f, gw // f
        c = f * f * model_cfg.vision.hidden_size if cfg.location == "post_shuffle" else model_cfg.text.hidden_size
    kt, kh, kw = cfg.window
    if gh % kh or gw % kw:
        raise ValueError(f"{cfg.location} token grid {gh}x{gw} is not divisible by the WAP spatial window {kh}x{kw}")
    return -(-num_frames // kt), gh // kh, gw // kw, c


def llm_tokens_per_group(cfg: WAPConfig, model_cfg: InternVLConfig, image_hw: tuple[int, int] | None = None) -> int:
    """LLM tokens one group of kt frames becomes after WAP (and the pixel shuffle, when pooled before it)."""
    _, h, w, _ = compressed_grid_shape(cfg, model_cfg, cfg.window[0], image_hw)
    f = model_cfg.shuffle_factor
    return (h // f) * (w // f) if cfg.location == "pre_shuffle" else h * w
