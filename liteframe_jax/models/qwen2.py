"""Qwen2 / Qwen2.5 / Qwen3 (dense) / InternLM3 decoder with an explicit, pure-functional KV cache.

The cache is a pytree passed in and returned: one {"k", "v"} pair of (B, S, K, H) arrays per layer, where S is
the cache capacity. `cache_index` is the slot where the current chunk's first token is written.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from liteframe_jax.models.config import TextConfig
from liteframe_jax.models.layers import RMSNorm, attention, dense, logical

KVCache = list[dict[str, jax.Array]]


def rope_cos_sin(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """NeoX-style (half-rotation) RoPE tables. positions (B, L) int -> cos, sin (B, L, head_dim) fp32."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x (B, L, N, H); cos/sin (B, L, H)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos[:, :, None].astype(x.dtype), sin[:, :, None].astype(x.dtype)
    return x * cos + rotated * sin


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """RoPE positions (B, L) from an attention mask: consecutive over real tokens (left or right padding),
    1 on padding (masked anyway)."""
    pos = jnp.cumsum(mask, axis=1) - 1
    return jnp.where(mask > 0, pos, 1)


def init_kv_cache(cfg: TextConfig, batch: int, capacity: int, dtype=jnp.float32) -> KVCache:
    shape = (batch, capacity, cfg.num_kv_heads, cfg.head_dim)
    return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(cfg.num_layers)]


class DecoderAttention(nn.Module):
    """Causal GQA with RoPE, q/k/v biases (Qwen2) or per-head q/k RMSNorm before RoPE (Qwen3); InternLM3 may bias
    q/k/v and o.
    x (B, L, D) -> (B, L, D), updated layer cache."""

    cfg: TextConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x, cos, sin, key_valid, query_slots, cache=None, cache_index=None):
        c = self.cfg
        b, L, _ = x.shape
        kv_dim = c.num_kv_heads * c.head_dim
        q = dense(c.num_heads * c.head_dim, ("embed", "heads"), use_bias=c.qkv_bias, dtype=self.dtype, name="q")(x)
        k = dense(kv_dim, ("embed", "kv_heads"), use_bias=c.qkv_bias, dtype=self.dtype, name="k")(x)
        v = dense(kv_dim, ("embed", "kv_heads"), use_bias=c.qkv_bias, dtype=self.dtype, name="v")(x)
        q = q.reshape(b, L, c.num_heads, c.head_dim)
        k = k.reshape(b, L, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            q = RMSNorm(c.rms_norm_eps, axis_name="head_dim", name="q_norm")(q)
            k = RMSNorm(c.rms_norm_eps, axis_name="head_dim", name="k_norm")(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        v = v.reshape(b, L, c.num_kv_heads, c.head_dim)
        if cache is not None:
            at = (0, cache_index, 0, 0)
            cache = {"k": jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), at),
                     "v": jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), at)}
            k, v = cache["k"].astype(self.dtype), cache["v"].astype(self.dtype)
        o = attention(q, k, v, key_valid=key_valid, query_slots=query_slots, implementation=self.attention_impl)
        out = dense(c.hidden_size, ("heads", "embed"), use_bias=c.o_mlp_bias, dtype=self.dtype, name="o")
        return out(o.reshape(b, L, c.num_heads * c.head_dim)), cache


class DecoderLayer(nn.Module):
    cfg: TextConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, h, cos, sin, key_valid, query_slots, cache=None, cache_index=None):
        c = self.cfg
        a, cache = DecoderAttention(c, self.dtype, self.attention_impl, name="attn")(
            RMSNorm(c.rms_norm_eps, name="input_norm")(h), cos, sin, key_valid, query_slots, cache, cache_index)
        h = h + a
        m = RMSNorm(c.rms_norm_eps, name="post_attn_norm")(h)
        gate = dense(c.mlp_dim, ("embed", "mlp"), use_bias=c.o_mlp_bias, dtype=self.dtype, name="gate")(m)
        up = dense(c.mlp_dim, ("embed", "mlp"), use_bias=c.o_mlp_bias, dtype=self.dtype, name="up")(m)
        down = dense(c.hidden_size, ("mlp", "embed"), use_bias=c.o_mlp_bias, dtype=self.dtype, name="down")
        return h + down(jax.nn.silu(gate) * up), cache


class Qwen2(nn.Module):
    """Decoder-only LM. Methods: `embed(ids)`, `__call__(embeds, positions, key_valid, ...)`, `head(hidden)`."""

    cfg: TextConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"
    remat: bool = False  # recompute each layer in the backward pass

    def setup(self):
        c = self.cfg
        self.embedding = self.param("embedding", logical(nn.initializers.normal(0.02), ("vocab", "embed")),
                                    (c.vocab_size, c.hidden_size))
        layer_cls = nn.remat(DecoderLayer) if self.remat else DecoderLayer
        self.layers = [layer_cls(c, self.dtype, self.attention_impl, name=f"layers_{i}")
                       for i in range(c.num_layers)]
        self.final_norm = RMSNorm(c.rms_norm_eps)
        if not c.tie_word_embeddings:
            self.lm_head = dense(c.vocab_size, ("embed", "vocab"), use_bias=False, dtype=self.dtype)

    def embed(self, ids: jax.Array) -> jax.Array:
        """ids (B, L) int -> (B, L, D) in the compute dtype."""
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def __call__(self, embeds: jax.Array, positions: jax.Array, key_valid: jax.Array,
                 cache: KVCache | None = None, cache_index: jax.Array | int = 0, last_only: bool = False,
                 hidden_only: bool = False):
        """embeds (B, L, D); positions (B, L) RoPE positions; key_valid (B, S) bool over the attended slots
        (S = L without a cache, the cache capacity with one). Returns logits (B, L or 1, V) fp32 and the cache;
        with `hidden_only` the final-normed hidden states (B, L or 1, D) instead of logits (see `head`)."""
        c = self.cfg
        b, L, _ = embeds.shape
        if c.rope_scaling == "dynamic" and key_valid.shape[1] > c.max_position_embeddings:
            raise ValueError(f"{key_valid.shape[1]} positions exceed max_position_embeddings="
                             f"{c.max_position_embeddings}, beyond which this LLM's dynamic RoPE scaling applies: "
                             "not implemented")
        q_slot = cache_index + jnp.arange(L)  # causal: query l attends the slots <= its own
        cos, sin = rope_cos_sin(positions, c.head_dim, c.rope_theta)
        h = embeds.astype(self.dtype)
        new_cache = [] if cache is not None else None
        for i, layer in enumerate(self.layers):
            h, layer_cache = layer(h, cos, sin, key_valid, q_slot, None if cache is None else cache[i], cache_index)
            if cache is not None:
                new_cache.append(layer_cache)
        h = self.final_norm(h)
        if last_only:
            h = h[:, -1:]
        if hidden_only:
            return h, new_cache
        return self.head(h), new_cache

    def head(self, h: jax.Array) -> jax.Array:
        """Final-normed hidden states (..., D) -> fp32 logits (..., V)."""
        c = self.cfg
        if c.tie_word_embeddings:
            logits = jnp.einsum("...d,vd->...v", h, self.embedding.astype(self.dtype))
        else:
            logits = self.lm_head(h)
        return logits.astype(jnp.float32)
