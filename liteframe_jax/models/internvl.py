"""The teacher Video LLM: InternViT -> pixel shuffle -> projector -> Qwen2, with <IMG_CONTEXT> merging."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.connector import Projector, pixel_shuffle
from liteframe_jax.models.internvit import InternViT
from liteframe_jax.models.layers import compute_dtype
from liteframe_jax.models.llm_front import llm_front


class InternVL(nn.Module):
    """Methods (use with `apply(..., method=...)`):
    - `vision_features(pixels (F, H, W, 3))` -> (F, 1 + gh*gw, Dv) InternViT output at select_layer
    - `encode_images(pixels)` -> (F, gh*gw/f^2, d_llm) projected visual tokens
    - `__call__(input_ids (B, L), visual (Nv, d_llm) | None, positions, key_valid, ...)` -> logits, cache: the
      shared LLM front end (`llm_front.LLMFront.forward`)
    """

    cfg: InternVLConfig

    def setup(self):
        c = self.cfg
        dtype = compute_dtype(c.dtype)
        self.vision = InternViT(c.vision, dtype, c.attention_impl)
        self.projector = Projector(c.text.hidden_size, c.projector_ln_eps, dtype)
        self.llm = llm_front(c)

    def vision_features(self, pixels: jax.Array) -> jax.Array:
        return self.vision(pixels)

    def shuffled_features(self, pixels: jax.Array) -> jax.Array:
        """(F, H, W, 3) -> pixel-shuffled patch features (F, gh*gw/f^2, f^2 * Dv), CLS dropped."""
        f, h, w, _ = pixels.shape
        p = self.cfg.vision.patch_size
        feats = self.vision(pixels)[:, 1:]
        grid = feats.reshape(f, h // p, w // p, feats.shape[-1])
        return pixel_shuffle(grid, self.cfg.shuffle_factor, self.cfg.ps_version)

    def encode_images(self, pixels: jax.Array) -> jax.Array:
        return self.projector(self.shuffled_features(pixels))

    def __call__(self, input_ids, visual, positions, key_valid, cache=None, cache_index=0, last_only=False):
        if self.is_initializing():
            self.projector(jnp.zeros((1, self.cfg.shuffle_factor ** 2 * self.cfg.vision.hidden_size)))
            self.vision(jnp.zeros((1, *self.cfg.vision.image_size, self.cfg.vision.num_channels)))
        return self.llm.forward(input_ids, visual, positions, key_valid, cache, cache_index, last_only)


def abstract_params(cfg: InternVLConfig):
    """Boxed parameter tree of ShapeDtypeStructs (with logical axis names) without allocating anything."""
    model = InternVL(cfg)
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), ids, None, ids, jnp.ones((1, 1), bool))["params"])


def init_params(cfg: InternVLConfig, seed: int = 0):
    """Randomly initialized boxed parameters (tests and demos)."""
    model = InternVL(cfg)
    ids = jnp.zeros((1, 1), jnp.int32)
    return model.init(jax.random.key(seed), ids, None, ids, jnp.ones((1, 1), bool))["params"]
