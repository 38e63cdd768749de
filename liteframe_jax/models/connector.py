"""Vision-to-LLM connector: InternVL pixel shuffle and the `mlp1` projector."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from einops import rearrange
from flax import linen as nn

from liteframe_jax.models.layers import dense, gelu_exact, layer_norm


def pixel_shuffle(x: jax.Array, factor: int = 2, version: str = "v2") -> jax.Array:
    """Space-to-depth of a token grid: x (B, gh, gw, C) -> (B, gh/f * gw/f, f*f*C).

    Output tokens are row-major over the (gh/f, gw/f) grid (v2; v1 leaves the grid transposed) and each token's
    channels are ordered [(dy=0,dx=0) | (dy=0,dx=1) | ... ] x C, exactly like InternVL's `pixel_shuffle`.
    """
    b, gh, gw, c = x.shape
    if gh % factor or gw % factor:
        raise ValueError(f"token grid {gh}x{gw} is not divisible by the pixel-shuffle factor {factor}")
    order = "(i j)" if version == "v2" else "(j i)"
    return rearrange(x, f"b (i dy) (j dx) c -> b {order} (dy dx c)", dy=factor, dx=factor)


class Projector(nn.Module):
    """InternVL `mlp1`: LayerNorm(eps 1e-5) -> Linear -> exact GELU -> Linear. x (..., C_in) -> (..., d_llm)."""

    out_dim: int
    ln_eps: float = 1e-5
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = layer_norm(self.ln_eps, dtype=self.dtype, name="norm")(x)
        x = dense(self.out_dim, ("embed", "mlp"), dtype=self.dtype, name="fc1")(x)
        return dense(self.out_dim, ("mlp", "embed"), dtype=self.dtype, name="fc2")(gelu_exact(x))


def tokens_to_grid(tokens: jax.Array, gh: int, gw: int, version: str) -> jax.Array:
    """Pixel-shuffled tokens (N, gh*gw, C) in the model's order -> spatial grid (N, gh, gw, C)."""
    n, _, c = tokens.shape
    if version == "v2":
        return tokens.reshape(n, gh, gw, c)
    return tokens.reshape(n, gw, gh, c).transpose(0, 2, 1, 3)  # v1 orders shuffled tokens column-major


def grid_to_tokens(grid: jax.Array, version: str) -> jax.Array:
    """Inverse of `tokens_to_grid`: (N, gh, gw, C) -> (N, gh*gw, C) in the order the LLM consumes."""
    n, gh, gw, c = grid.shape
    if version != "v2":
        grid = grid.transpose(0, 2, 1, 3)
    return grid.reshape(n, gh * gw, c)


def grid_to_llm_tokens(grid: jax.Array, location: str, factor: int, version: str,
                       project: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Compressed token grids (N, H', W', C) living at `location` -> LLM visual tokens (N, tokens, d_llm).

    pre_shuffle: pixel shuffle, then `project`; post_shuffle: `project`; post_projector: identity (reordered).
    """
    if location == "pre_shuffle":
        return project(pixel_shuffle(grid, factor, version))
    tokens = grid_to_tokens(grid, version)
    return project(tokens) if location == "post_shuffle" else tokens
