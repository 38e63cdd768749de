"""Building blocks shared by the encoders and the LLM.

Every parameter is created through `nn.with_logical_partitioning`, so `init` returns boxes carrying logical
axis names (embed, mlp, heads, kv_heads, vocab, ...) that the sharding rules map onto a device mesh.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

Axes = tuple[str | None, ...]

_COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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
    """erf GELU as in torch's nn.GELU() (jax.nn.gelu defaults to the tanh approximation)."""
    return jax.nn.gelu(x, approximate=False)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, *, mask: jax.Array | None = None,
              implementation: str = "xla") -> jax.Array:
    """Scaled dot-product attention. q (B, T, N, H), k/v (B, S, K, H) with K dividing N (GQA); mask
    broadcastable to (B, N, T, S), True = attend. Returns (B, T, N, H)."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


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
