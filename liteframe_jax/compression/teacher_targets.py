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
from liteframe_jax.models.connector import grid_to_llm_tokens, pixel_shuffle, tokens_to_grid
from liteframe_jax.models.internvl import InternVL


def _teacher_params(params) -> dict:
    params = nn.unbox(params)
    return {k: params[k] for k in ("vision", "projector") if k in params}


def _project(model_cfg: InternVLConfig, params, x: jax.Array) -> jax.Array:
    """The teacher's mlp1: (..., f^2 Dv) -> (..., d_llm)."""
    return InternVL(model_cfg).apply({"params": params}, x, method=lambda m, v: m.projector(v))


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
        grid = tokens_to_grid(pixel_shuffle(grid, f, model_cfg.ps_version), gh // f, gw // f,
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
    tokens = grid_to_llm_tokens(frames, wap_cfg.location, model_cfg.shuffle_factor, model_cfg.ps_version,
                                lambda x: _project(model_cfg, params, x))
    return tokens.reshape(b, t * tokens.shape[1], tokens.shape[-1])
