"""InternViT, the teacher's per-frame vision encoder (OpenGVLab InternViT-300M-448px-V2.5 semantics)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from liteframe_jax.models.config import VisionConfig
from liteframe_jax.models.layers import RMSNorm, attention, dense, gelu_exact, logical, make_norm, model_pixels
from liteframe_jax.models.resize import resize_bicubic


class VisionAttention(nn.Module):
    """Bidirectional multi-head self-attention with fused or split, biased q/k/v. x (B, N, D) -> (B, N, D)."""

    cfg: VisionConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.cfg
        b, n, d = x.shape
        if c.qkv_layout == "fused":
            qkv = nn.DenseGeneral((3, d), use_bias=c.qkv_bias, dtype=self.dtype, name="qkv",
                                  kernel_init=logical(nn.initializers.lecun_normal(), ("embed", "qkv", "heads")),
                                  bias_init=logical(nn.initializers.zeros, ("qkv", "heads")))(x)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        else:
            q, k, v = (dense(d, ("embed", "heads"), use_bias=c.qkv_bias, dtype=self.dtype, name=nm)(x)
                       for nm in ("q", "k", "v"))
        if c.qk_norm:
            q = RMSNorm(c.layer_norm_eps, axis_name="heads", name="q_norm")(q)
            k = RMSNorm(c.layer_norm_eps, axis_name="heads", name="k_norm")(k)
        heads = lambda t: t.reshape(b, n, c.num_heads, c.head_dim)
        o = attention(heads(q), heads(k), heads(v), implementation=self.attention_impl)
        return dense(d, ("heads", "embed"), dtype=self.dtype, name="out")(o.reshape(b, n, d))


class VisionBlock(nn.Module):
    """Pre-norm block with per-channel layer scales: h += ls1*attn(norm1 h); h += ls2*mlp(norm2 h)."""

    cfg: VisionConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        c = self.cfg

        def scale(name, y):
            if not c.layer_scale:
                return y
            ls = self.param(name, logical(nn.initializers.constant(0.1), ("embed",)), (c.hidden_size,))
            return ls.astype(y.dtype) * y

        a = make_norm(c.norm_type, c.layer_norm_eps, dtype=self.dtype, name="norm1")(h)
        h = h + scale("ls1", VisionAttention(c, self.dtype, self.attention_impl, name="attn")(a))
        m = make_norm(c.norm_type, c.layer_norm_eps, dtype=self.dtype, name="norm2")(h)
        m = dense(c.mlp_dim, ("embed", "mlp"), dtype=self.dtype, name="fc1")(m)
        m = dense(c.hidden_size, ("mlp", "embed"), dtype=self.dtype, name="fc2")(gelu_exact(m))
        return h + scale("ls2", m)


class InternViT(nn.Module):
    """pixels (B, H, W, C), normalized, H and W multiples of the patch size -> hidden states (B, 1 + gh*gw, D)
    at `cfg.select_layer` (CLS first, then patches row-major). No final norm."""

    cfg: VisionConfig
    dtype: jnp.dtype = jnp.float32
    attention_impl: str = "xla"

    @nn.compact
    def __call__(self, pixels: jax.Array) -> jax.Array:
        c = self.cfg
        b, hgt, wid, _ = pixels.shape
        p = c.patch_size
        if hgt % p or wid % p:
            raise ValueError(f"pixel size {hgt}x{wid} is not a multiple of the patch size {p}")
        x = nn.Conv(c.hidden_size, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="patch_embed",
                    kernel_init=logical(nn.initializers.lecun_normal(), ("conv_h", "conv_w", "conv_in", "embed")),
                    bias_init=logical(nn.initializers.zeros, ("embed",)))(model_pixels(pixels, self.dtype))
        gh, gw = hgt // p, wid // p
        x = x.reshape(b, gh * gw, c.hidden_size)
        cls = self.param("cls_token", logical(nn.initializers.zeros, ("embed",)), (c.hidden_size,))
        ngh, ngw = c.grid
        pos = self.param("pos_embed", logical(nn.initializers.zeros, ("positions", "embed")),
                         (1 + ngh * ngw, c.hidden_size))
        patch_pos = pos[1:].reshape(ngh, ngw, c.hidden_size)
        if (gh, gw) != (ngh, ngw):
            # torch bicubic (align_corners=False) in fp32, as the reference does on every non-native forward
            patch_pos = resize_bicubic(patch_pos.astype(jnp.float32), (gh, gw)).astype(pos.dtype)
        pos = jnp.concatenate([pos[:1], patch_pos.reshape(gh * gw, c.hidden_size)], axis=0)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, c.hidden_size)), x], axis=1)
        x = x + pos.astype(x.dtype)[None]
        # Blocks past select_layer still own parameters: create them at init, skip them when applying.
        run = c.num_layers if self.is_initializing() else c.num_blocks_run
        for i in range(c.num_layers):
            block = VisionBlock(c, self.dtype, self.attention_impl, name=f"layers_{i}")
            if i < run:
                x = block(x)
        return x
