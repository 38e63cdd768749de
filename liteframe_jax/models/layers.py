"""Building blocks shared by the encoders and the LLM.

Every parameter is created through `nn.with_logical_partitioning`, so `init` returns boxes carrying logical
axis names (embed, mlp, heads, kv_heads, vocab, ...) that the sharding rules map onto a device mesh.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from liteframe_jax.data.frames import IMAGENET_MEAN, IMAGENET_STD
from liteframe_jax.models.config import ATTENTION_IMPLS

Axes = tuple[str | None, ...]

_COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def model_pixels(pixels: jax.Array, dtype) -> jax.Array:
    """Frames as the vision towers compute with them, in `dtype`: uint8 RGB (..., 3) is normalized here with
    ImageNet mean/std (the same arithmetic as data.frames.normalize_frames on the host), so loaders may send 4x
    fewer bytes (`data.normalize_on_host=False`); floats are taken as already normalized."""
    if pixels.dtype == jnp.uint8:
        pixels = (pixels.astype(jnp.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return pixels.astype(dtype)

def compute_dtype(name: str):
    """Config dtype name ("float32" | "bfloat16") -> jnp dtype."""
    return _COMPUTE_DTYPES[name]


def logical(init, axes: Axes):
    return nn.with_logical_partitioning(init, axes)


def dense(features: int, axes: Axes, *, use_bias: bool = True, dtype=jnp.float32, name: str | None = None,
          kernel_init=nn.initializers.lecun_normal()) -> nn.Dense:
    """Linear layer with kernel (in, out) named `axes` and bias named `axes[-1:]`."""
    return nn.Dense(features, use_bias=use_bias, dtype=dtype, name=name,
                    kernel_init=logical(kernel_init, axes),
                    bias_init=logical(nn.initializers.zeros, axes[-1:]))


def layer_norm(eps: float, axis_name: str = "embed", *, dtype=jnp.float32, name: str | None = None) -> nn.LayerNorm:
    """torch-equivalent LayerNorm: exact two-pass variance, statistics in fp32."""
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, dtype=dtype, name=name,
                        scale_init=logical(nn.initializers.ones, (axis_name,)),
                        bias_init=logical(nn.initializers.zeros, (axis_name,)))


class RMSNorm(nn.Module):
    """Qwen2/InternViT RMSNorm: normalize in fp32, cast back to the input dtype, then scale. x (..., D)."""

    eps: float
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", logical(nn.initializers.ones, (self.axis_name,)), (x.shape[-1],))
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return scale.astype(x.dtype) * y.astype(x.dtype)


def make_norm(norm_type: str, eps: float, *, dtype, name: str):
    if norm_type == "rms_norm":
        return RMSNorm(eps, name=name)
    return layer_norm(eps, dtype=dtype, name=name)


def gelu_exact(x: jax.Array) -> jax.Array:
    """erf GELU as in torch's nn.GELU() (jax.nn.gelu defaults to the tanh approximation). Written with lax.erf:
    jax.nn.gelu(approximate=False) is measurably slower on XLA:CPU."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * np.asarray(np.sqrt(0.5), x.dtype)))


QUERY_CHUNK = 512  # "chunked": queries per block; the logits held at once are (B, N, QUERY_CHUNK, S)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, key_valid: jax.Array | None = None,
              query_slots: jax.Array | None = None, implementation: str = "xla",
              query_chunk: int | None = None) -> jax.Array:
    """Scaled dot-product attention. q (B, T, N, H), k/v (B, S, K, H) with K dividing N (GQA). Optional masking:
    key_valid (B, S) bool = keys that may be attended; query_slots (T,) int = causal, query t attends the keys
    at slots <= query_slots[t]. Returns (B, T, N, H).

    implementation: "xla" (the whole (B, N, T, S) logits at once), "chunked" (XLA over query blocks of
    `query_chunk` (default QUERY_CHUNK), recomputed in the backward pass: memory (B, N, query_chunk, S)),
    "cudnn" (fused flash attention on NVIDIA GPUs, bf16/fp16) or "pallas" (the TPU flash-attention kernel)."""
    if implementation not in ATTENTION_IMPLS:
        raise ValueError(f"attention implementation {implementation!r} must be one of {ATTENTION_IMPLS}")
    query_chunk = query_chunk or QUERY_CHUNK
    if implementation == "chunked" and q.shape[1] > query_chunk:
        return _chunked_attention(q, k, v, key_valid, query_slots, query_chunk)
    if implementation == "pallas":
        return _pallas_tpu_attention(q, k, v, key_valid, query_slots)
    mask = _dense_mask(key_valid, query_slots, k.shape[1])
    if implementation == "cudnn":
        return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
    return _xla_attention(q, k, v, mask)


def _xla_attention(q, k, v, mask) -> jax.Array:
    """softmax(q k^T / sqrt(H)) v as two batched matmuls per kv head, the G query heads sharing a kv head stacked
    along the query rows. Same function as jax.nn.dot_product_attention(implementation="xla"), without its
    per-group vmap that makes XLA:CPU transpose the (T, S) probabilities (~10% of an InternViT forward)."""
    b, t, n, h = q.shape
    s, kh = k.shape[1], k.shape[2]
    g = n // kh
    qr = q.reshape(b, t, kh, g, h).transpose(0, 2, 3, 1, 4).reshape(b, kh, g * t, h)
    logits = jnp.einsum("bkqh,bskh->bkqs", qr, k, preferred_element_type=jnp.float32) * np.float32(h ** -0.5)
    if mask is not None:
        m = jnp.broadcast_to(mask, (b, n, t, s)).reshape(b, kh, g * t, s)
        logits = jnp.where(m, logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkqs,bskh->bkqh", probs, v)
    return out.reshape(b, kh, g, t, h).transpose(0, 3, 1, 2, 4).reshape(b, t, n, h)


def _dense_mask(key_valid, query_slots, num_keys: int) -> jax.Array | None:
    """(B or 1, 1, T or 1, S) bool from the key/causal description; None when nothing is masked."""
    mask = None
    if query_slots is not None:
        mask = (jnp.arange(num_keys)[None, :] <= query_slots[:, None])[None, None]  # (1, 1, T, S)
    if key_valid is not None:
        kv = key_valid.astype(bool)[:, None, None, :]  # (B, 1, 1, S)
        mask = kv if mask is None else mask & kv
    return mask


def _chunked_attention(q, k, v, key_valid, query_slots, chunk: int) -> jax.Array:
    b, t, n, h = q.shape
    blocks = -(-t // chunk)
    pad = blocks * chunk - t
    qb = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))).reshape(b, blocks, chunk, n, h).swapaxes(0, 1)
    slots = None
    if query_slots is not None:  # padded queries see every key; their rows are dropped below
        slots = jnp.pad(query_slots, (0, pad), constant_values=k.shape[1]).reshape(blocks, chunk)

    @jax.checkpoint  # the backward pass recomputes one block's logits instead of keeping all of them
    def block(args):
        q_blk, slots_blk = args
        mask = _dense_mask(key_valid, slots_blk if query_slots is not None else None, k.shape[1])
        return _xla_attention(q_blk, k, v, mask)

    dummy = jnp.zeros((blocks, 0), jnp.int32)  # lax.map needs an array per block even without causal slots
    out = jax.lax.map(block, (qb, slots if slots is not None else dummy))
    return out.swapaxes(0, 1).reshape(b, blocks * chunk, n, h)[:, :t]


def _pallas_tpu_attention(q, k, v, key_valid, query_slots) -> jax.Array:
    """The TPU flash-attention kernel ((B, N, T, H) layout, equal q/kv heads). Causal masking needs queries and
    keys at the same slots (prefill without a cache); padding becomes kernel segment ids."""
    if jax.default_backend() != "tpu":
        raise ValueError(f"attention implementation 'pallas' needs a TPU (backend is {jax.default_backend()}); "
                         "use 'chunked' or 'xla' here")
    from jax.experimental.pallas.ops.tpu import flash_attention as fa

    n, kh = q.shape[2], k.shape[2]
    if kh != n:  # GQA: the kernel wants one kv head per query head
        k, v = jnp.repeat(k, n // kh, axis=2), jnp.repeat(v, n // kh, axis=2)
    if query_slots is not None and q.shape[1] != k.shape[1]:
        raise ValueError("pallas attention supports causal masking only without a KV cache (prefill/training)")
    segments = None
    if key_valid is not None:
        kv_seg = key_valid.astype(jnp.int32)
        q_seg = kv_seg if q.shape[1] == k.shape[1] else jnp.ones(q.shape[:2], jnp.int32)
        segments = fa.SegmentIds(q=q_seg, kv=kv_seg)
    to_bnth = lambda x: x.swapaxes(1, 2)
    out = fa.flash_attention(to_bnth(q), to_bnth(k), to_bnth(v), segment_ids=segments,
                             causal=query_slots is not None, sm_scale=q.shape[-1] ** -0.5)
    return out.swapaxes(1, 2)


def pad_frames_to_multiple(x: jax.Array, multiple: int, axis: int = 0) -> jax.Array:
    """Pads `axis` at its end up to a multiple of `multiple` by repeating the last frame: the project-wide rule
    for clip lengths that a temporal window or stride does not divide. Returns `x` itself when nothing to pad."""
    t = x.shape[axis]
    if t == 0:
        raise ValueError("cannot pad an empty frame axis")
    extra = -t % multiple
    if extra == 0:
        return x
    last = jax.lax.slice_in_dim(x, t - 1, t, axis=axis)
    return jnp.concatenate([x, jnp.repeat(last, extra, axis=axis)], axis=axis)
