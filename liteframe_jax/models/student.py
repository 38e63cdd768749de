"""The LiteFrame student: a compact video ViT that predicts the teacher's compressed tokens.

Per-frame patch embedding, ViT blocks with per-frame spatial attention, a residual depth-wise temporal
convolution in every block, and staged depth-wise strided 3-D convolutions for spatio-temporal downsampling,
then LayerNorm + Linear into the teacher's feature space:

    pixels (B, T, H, W, 3) -> (B, ceil(T/st), H/p/sh, W/p/sw, out_dim)
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from liteframe_jax.models.config import StudentConfig
from liteframe_jax.models.layers import (attention, compute_dtype, dense, gelu_exact, layer_norm, logical,
                                         model_pixels, pad_frames_to_multiple)



class TemporalConv(nn.Module):
    """Residual branch LN -> depth-wise 1-D conv over time ('same', zero padded). x (B, T, N, D) -> same."""

    kernel: int
    eps: float
    identity_init: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        init = nn.initializers.zeros if self.identity_init else nn.initializers.normal(0.02)
        w = self.param("kernel", logical(init, ("conv_t", "embed")), (self.kernel, d))
        b = self.param("bias", logical(nn.initializers.zeros, ("embed",)), (d,))
        y = layer_norm(self.eps, dtype=self.dtype, name="norm")(x)
        t, half = x.shape[1], self.kernel // 2
        y = jnp.pad(y, ((0, 0), (half, half), (0, 0), (0, 0)))
        out = sum(w[j].astype(self.dtype) * y[:, j:j + t] for j in range(self.kernel))
        return out + b.astype(self.dtype)


class StudentBlock(nn.Module):
    """Pre-norm ViT block with per-frame attention and a residual temporal conv. x (B, T, N, D) -> same."""

    cfg: StudentConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.cfg
        dtype = compute_dtype(c.dtype)
        b, t, n, d = x.shape
        temporal = (lambda h: h + TemporalConv(c.temporal_kernel, c.layer_norm_eps, c.identity_init, dtype,
                                               name="temporal")(h)) if c.temporal_conv else (lambda h: h)
        a = layer_norm(c.layer_norm_eps, dtype=dtype, name="norm1")(x).reshape(b * t, n, d)
        q, k, v = (dense(d, ("embed", "heads"), dtype=dtype, name=nm)(a).reshape(b * t, n, c.num_heads, c.head_dim)
                   for nm in ("q", "k", "v"))
        o = attention(q, k, v, implementation=c.attention_impl).reshape(b * t, n, d)
        x = x + dense(d, ("heads", "embed"), dtype=dtype, name="out")(o).reshape(b, t, n, d)
        if c.temporal_conv_position == "after_attn":
            x = temporal(x)
        m = layer_norm(c.layer_norm_eps, dtype=dtype, name="norm2")(x)
        m = dense(c.mlp_dim, ("embed", "mlp"), dtype=dtype, name="fc1")(m)
        x = x + dense(d, ("mlp", "embed"), dtype=dtype, name="fc2")(gelu_exact(m))
        if c.temporal_conv_position == "after_mlp":
            x = temporal(x)
        return x


class Downsample(nn.Module):
    """Depth-wise strided 3-D conv + LayerNorm. x (B, T, h, w, D) -> (B, T/st, h/sh, w/sw, D)."""

    stride: tuple[int, int, int]
    kernel: tuple[int, int, int]
    eps: float
    identity_init: bool
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def centre_tap(key, shape, dtype=jnp.float32):
            w = np.zeros(shape, np.float32)
            w[tuple(k // 2 for k in shape[:3])] = 1.0
            return jnp.asarray(w, dtype)

        init = centre_tap if self.identity_init else nn.initializers.lecun_normal()
        y = DepthwiseConv3D(self.kernel, self.stride, logical(init, ("conv_t", "conv_h", "conv_w", "conv_in", "embed")),
                            self.dtype, name="conv")(x)
        return layer_norm(self.eps, dtype=self.dtype, name="norm")(y)


class DepthwiseConv3D(nn.Module):
    """nn.Conv(D, kernel, strides, padding="SAME", feature_group_count=D) with the same parameters ("kernel"
    (kt, kh, kw, 1, D), "bias" (D,)), computed as a sum of kt*kh*kw strided slices: XLA:CPU runs grouped
    convolutions ~80x slower than this. x (B, T, H, W, D) -> (B, ceil(T/st), ceil(H/sh), ceil(W/sw), D)."""

    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    kernel_init: Any
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        d = x.shape[-1]
        w = self.param("kernel", self.kernel_init, (*self.kernel, 1, d)).astype(self.dtype)
        b = self.param("bias", logical(nn.initializers.zeros, ("embed",)), (d,)).astype(self.dtype)
        pads = jax.lax.padtype_to_pads(x.shape[1:4], self.kernel, self.stride, "SAME")
        xp = jnp.pad(x.astype(self.dtype), ((0, 0), *pads, (0, 0)))
        out = [-(-n // s) for n, s in zip(x.shape[1:4], self.stride)]
        acc = None
        for taps in itertools.product(*(range(k) for k in self.kernel)):
            idx = tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(taps, out, self.stride))
            term = xp[(slice(None), *idx)] * w[taps][0]
            acc = term if acc is None else acc + term
        return acc + b


def sinusoidal_table(length: int, dim: int) -> jax.Array:
    pos = jnp.arange(length, dtype=jnp.float32)[:, None]
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    table = jnp.zeros((length, dim), jnp.float32)
    return table.at[:, 0::2].set(jnp.sin(pos * freq)).at[:, 1::2].set(jnp.cos(pos * freq)[:, : dim // 2])


class LiteFrameStudent(nn.Module):
    """pixels (B, T, H, W, C) normalized -> student tokens (B, T', H', W', out_dim) in the teacher's space.
    T is padded up to a multiple of the temporal stride by repeating the last frame (same rule as WAP)."""

    cfg: StudentConfig

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        c = self.cfg
        dtype = compute_dtype(c.dtype)
        p = c.patch_size
        if pixels.ndim != 5:
            raise ValueError(f"student input must be (B, T, H, W, C), got {pixels.shape}")
        b, _, hgt, wid, ch = pixels.shape
        if hgt % p or wid % p:
            raise ValueError(f"frame size {hgt}x{wid} is not a multiple of the patch size {p}")
        x = pad_frames_to_multiple(model_pixels(pixels, dtype), c.stride[0], axis=1)
        t, gh, gw = x.shape[1], hgt // p, wid // p
        x = nn.Conv(c.hidden_size, (p, p), strides=(p, p), padding="VALID", dtype=dtype, name="patch_embed",
                    kernel_init=logical(nn.initializers.lecun_normal(), ("conv_h", "conv_w", "conv_in", "embed")),
                    bias_init=logical(nn.initializers.zeros, ("embed",)))(x.reshape(b * t, hgt, wid, ch))
        x = x.reshape(b, t, gh, gw, c.hidden_size)
        x = x + self._positions(t, gh, gw).astype(dtype)[None]
        stages = {s.after_block: s for s in c.downsample}
        block_cls = nn.remat(StudentBlock) if c.remat else StudentBlock
        for i in range(c.num_layers):
            bt, bh, bw = x.shape[1:4]
            x = block_cls(c, name=f"layers_{i}")(x.reshape(b, bt, bh * bw, -1)).reshape(b, bt, bh, bw, -1)
            if i + 1 in stages:
                s = stages[i + 1]
                x = Downsample(s.stride, s.kernel, c.layer_norm_eps, c.identity_init, dtype,
                               name=f"downsample_{i + 1}")(x)
        x = layer_norm(c.layer_norm_eps, dtype=dtype, name="head_norm")(x)
        return dense(c.out_dim, ("embed", "mlp"), dtype=dtype, name="head")(x).astype(jnp.float32)

    def _positions(self, t: int, gh: int, gw: int) -> jax.Array:
        """(T, gh, gw, D) factorized position embedding: spatial table (+) temporal table, resized as needed."""
        c = self.cfg
        ngh, ngw = c.grid
        spatial = self.param("pos_spatial", logical(nn.initializers.normal(0.02), ("pos_h", "pos_w", "embed")),
                             (ngh, ngw, c.hidden_size))
        if (gh, gw) != (ngh, ngw):
            spatial = jax.image.resize(spatial, (gh, gw, c.hidden_size), "linear", antialias=False)
        if c.temporal_pos == "learned":
            temporal = self.param("pos_temporal", logical(nn.initializers.normal(0.02), ("frames", "embed")),
                                  (c.num_frames, c.hidden_size))
            if t != c.num_frames:
                temporal = jax.image.resize(temporal, (t, c.hidden_size), "linear", antialias=False)
        elif c.temporal_pos == "sinusoidal":
            temporal = sinusoidal_table(t, c.hidden_size)
        else:
            temporal = jnp.zeros((t, c.hidden_size))
        return spatial[None] + temporal[:, None, None]


def init_student(cfg: StudentConfig, seed: int = 0, num_frames: int | None = None):
    """Boxed student parameters (with logical axis names)."""
    t = num_frames or cfg.num_frames
    x = jnp.zeros((1, t, *cfg.image_size, cfg.num_channels))
    return LiteFrameStudent(cfg).init(jax.random.key(seed), x)["params"]


def abstract_student(cfg: StudentConfig):
    return jax.eval_shape(lambda: init_student(cfg))
