"""CTD targets: the frozen teacher's tokens compressed by WAP, and what the LLM would receive from them.

    targets = teacher_targets(model_cfg, params, pixels, wap_cfg)        # (B, T', H', W', C')
    visual = targets_to_llm_tokens(model_cfg, params, targets, wap_cfg)  # (B, T' * H'' * W'', d_llm)

Only the `vision` and `projector` subtrees of the teacher parameters are read.
"""

from __future__ import annotations

import functools

import jax
from flax import linen as nn

from liteframe_jax.compression.wap import WAPConfig, wap
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.connector import pixel_shuffle
from liteframe_jax.models.internvl import InternVL


def _teacher_params(params) -> dict:
    params = nn.unbox(params)
    return {k: params[k] for k in ("vision", "projector") if k in params}


def _project(model_cfg: InternVLConfig, params, x: jax.Array) -> jax.Array:
    """The teacher's mlp1: (..., f^2 Dv) -> (..., d_llm)."""
    return InternVL(model_cfg).apply({"params": params}, x, method=lambda m, v: m.projector(v))


def _tokens_to_grid(tokens: jax.Array, gh: int, gw: int, version: str) -> jax.Array:
    """Pixel-shuffled tokens (N, gh*gw, C) in the model's order -> spatial grid (N, gh, gw, C)."""
    n, _, c = tokens.shape
    if version == "v2":
        return tokens.reshape(n, gh, gw, c)
    return tokens.reshape(n, gw, gh, c).transpose(0, 2, 1, 3)  # v1 orders shuffled tokens column-major


def _grid_to_tokens(grid: jax.Array, version: str) -> jax.Array:
    """Inverse of `_tokens_to_grid`: (N, gh, gw, C) -> (N, gh*gw, C) in the order the LLM consumes."""
    n, gh, gw, c = grid.shape
    if version != "v2":
        grid = grid.transpose(0, 2, 1, 3)
    return grid.reshape(n, gh * gw, c)


@functools.partial(jax.jit, static_argnames=("model_cfg", "wap_cfg"))
def teacher_targets(model_cfg: InternVLConfig, params, pixels: jax.Array,
                    wap_cfg: WAPConfig = WAPConfig()) -> jax.Array:
    """pixels (B, T, H, W, 3) normalized -> WAP-compressed teacher tokens (B, T', H', W', C'), stop-gradient.

    The teacher runs per frame; WAP then pools the tokens at `wap_cfg.location` (shapes: `compressed_grid_shape`).
    """
    wap_cfg.validate()
    if pixels.ndim != 5:
        raise ValueError(f"pixels must be (B, T, H, W, 3), got shape {pixels.shape}")
    b, t, hgt, wid, ch = pixels.shape
    p, f = model_cfg.vision.patch_size, model_cfg.shuffle_factor
    if hgt % p or wid % p:
        raise ValueError(f"frame size {hgt}x{wid} is not a multiple of the patch size {p}")
    params = _teacher_params(params)
    gh, gw = hgt // p, wid // p
    feats = InternVL(model_cfg).apply({"params": params}, pixels.reshape(b * t, hgt, wid, ch),
                                      method=InternVL.vision_features)
    grid = feats[:, 1:].reshape(b * t, gh, gw, feats.shape[-1])
    if wap_cfg.location != "pre_shuffle":
        grid = _tokens_to_grid(pixel_shuffle(grid, f, model_cfg.ps_version), gh // f, gw // f,
                               model_cfg.ps_version)
        if wap_cfg.location == "post_projector":
            grid = _project(model_cfg, params, grid)
    grid = grid.reshape(b, t, *grid.shape[1:])
    return jax.lax.stop_gradient(wap(grid, wap_cfg))


@functools.partial(jax.jit, static_argnames=("model_cfg", "wap_cfg"))
def targets_to_llm_tokens(model_cfg: InternVLConfig, params, targets: jax.Array,
                          wap_cfg: WAPConfig = WAPConfig()) -> jax.Array:
    """Compressed targets (B, T', H', W', C') -> the LLM's visual tokens (B, T' * tokens, d_llm).

    pre_shuffle: pixel shuffle each compressed grid, then the projector; post_shuffle: the projector;
    post_projector: identity. Tokens are flattened in (t', row, col) order (column-major within a grid for
    ps_version v1, as the teacher does).
    """
    wap_cfg.validate()
    if targets.ndim != 5:
        raise ValueError(f"targets must be (B, T', H', W', C), got shape {targets.shape}")
    b, t = targets.shape[:2]
    params = _teacher_params(params)
    frames = targets.reshape(b * t, *targets.shape[2:])
    if wap_cfg.location == "pre_shuffle":
        tokens = _project(model_cfg, params, pixel_shuffle(frames, model_cfg.shuffle_factor, model_cfg.ps_version))
    else:
        tokens = _grid_to_tokens(frames, model_cfg.ps_version)
        if wap_cfg.location == "post_shuffle":
            tokens = _project(model_cfg, params, tokens)
    return tokens.reshape(b, t * tokens.shape[1], tokens.shape[-1])
