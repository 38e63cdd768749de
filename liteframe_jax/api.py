"""Public inference API: `load` a checkpoint, then encode frames, score tokens or generate.

    import liteframe_jax as lf
    model = lf.load(path)                       # our checkpoint dir, or an InternVL3 HF dir (imported on the fly)
    vis = model.encode_frames(pixels)           # (F, H, W, 3) normalized -> (F * tokens_per_frame, d_llm)
    logits = model.logits(input_ids, pixels)    # (B, L) with <IMG_CONTEXT> placeholders -> (B, L, vocab)
    ids = model.generate(input_ids, pixels, max_new_tokens=N)   # greedy, KV-cached -> (B, N) new tokens
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import InternVL, abstract_params
from liteframe_jax.models.layers import compute_dtype
from liteframe_jax.models.qwen2 import init_kv_cache


def _positions(mask: jax.Array) -> jax.Array:
    """RoPE positions from a (B, L) attention mask: consecutive over real tokens (left padding allowed)."""
    pos = jnp.cumsum(mask, axis=1) - 1
    return jnp.where(mask > 0, pos, 1)


@functools.partial(jax.jit, static_argnums=0)
def _encode(cfg: InternVLConfig, params, pixels):
    return InternVL(cfg).apply({"params": params}, pixels, method=InternVL.encode_images)


@functools.partial(jax.jit, static_argnums=0)
def _logits(cfg: InternVLConfig, params, input_ids, visual, mask):
    model = InternVL(cfg)
    logits, _ = model.apply({"params": params}, input_ids, visual, _positions(mask), mask.astype(bool))
    return logits


@functools.partial(jax.jit, static_argnums=(0, 5))
def _generate(cfg: InternVLConfig, params, input_ids, visual, mask, max_new_tokens: int):
    model = InternVL(cfg)
    apply = functools.partial(model.apply, {"params": params})
    b, L = input_ids.shape
    key_valid = jnp.concatenate([mask.astype(bool), jnp.ones((b, max_new_tokens), bool)], axis=1)
    positions = _positions(mask)
    cache = init_kv_cache(cfg.text, b, L + max_new_tokens, compute_dtype(cfg.dtype))
    embeds = apply(input_ids, visual, method=InternVL.embed)
    logits, cache = apply(embeds, positions, key_valid, cache, 0, True, method=InternVL.decode)
    first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)

    def step(carry, i):
        tok, cache, pos = carry
        emb = apply(tok[:, None], None, method=InternVL.embed)
        logits, cache = apply(emb, pos[:, None], key_valid, cache, L + i, True, method=InternVL.decode)
        nxt = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        return (nxt, cache, pos + 1), nxt

    start = jnp.max(positions, axis=1) + 1
    _, rest = jax.lax.scan(step, (first, cache, start), jnp.arange(max_new_tokens - 1))
    return jnp.concatenate([first[:, None], rest.T], axis=1)


@dataclasses.dataclass
class VideoLLM:
    """A loaded teacher Video LLM: config + parameters (nested dict of arrays)."""

    config: InternVLConfig
    params: dict
    path: Path | None = None

    # ------------------------------------------------------------------ inputs
    def _check_pixels(self, pixels) -> jax.Array:
        pixels = jnp.asarray(pixels, jnp.float32)
        v = self.config.vision
        if pixels.ndim != 4 or pixels.shape[-1] != v.num_channels:
            raise ValueError(f"pixels must be (F, H, W, {v.num_channels}) normalized floats, got {pixels.shape}")
        step = v.patch_size * self.config.shuffle_factor
        if pixels.shape[1] % step or pixels.shape[2] % step:
            raise ValueError(f"frame size {pixels.shape[1]}x{pixels.shape[2]} must be a multiple of "
                             f"{step} (patch {v.patch_size} x pixel-shuffle {self.config.shuffle_factor})")
        return pixels

    def _check_ids(self, input_ids, pixels, attention_mask):
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be an integer array (B, L), got {ids.dtype}{ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.text.vocab_size):
            raise ValueError(f"input_ids must lie in [0, {self.config.text.vocab_size})")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask {mask.shape} must match input_ids {ids.shape}")
        n_placeholders = int((ids == self.config.image_token_id).sum())
        visual = None
        if pixels is not None:
            pixels = self._check_pixels(pixels)
            need = pixels.shape[0] * self.config.tokens_per_frame(pixels.shape[1:3])
            if n_placeholders != need:
                raise ValueError(f"input_ids hold {n_placeholders} <IMG_CONTEXT> (id {self.config.image_token_id}) "
                                 f"placeholders but the {pixels.shape[0]} frame(s) give {need} visual tokens")
            visual = self.encode_frames(pixels)
        elif n_placeholders:
            raise ValueError(f"input_ids hold {n_placeholders} <IMG_CONTEXT> placeholders but no pixels were given")
        return jnp.asarray(ids, jnp.int32), visual, jnp.asarray(mask, jnp.int32)

    # ------------------------------------------------------------------ public
    def encode_frames(self, pixels) -> jax.Array:
        """pixels (F, H, W, 3) float32, normalized -> LLM-space visual tokens (F * tokens_per_frame, d_llm)."""
        out = _encode(self.config, self.params, self._check_pixels(pixels))
        return out.reshape(-1, out.shape[-1])

    def logits(self, input_ids, pixels=None, attention_mask=None) -> jax.Array:
        """input_ids (B, L) with <IMG_CONTEXT> placeholders -> logits (B, L, vocab) fp32."""
        ids, visual, mask = self._check_ids(input_ids, pixels, attention_mask)
        return _logits(self.config, self.params, ids, visual, mask)

    def generate(self, input_ids, pixels=None, max_new_tokens: int = 32, attention_mask=None,
                 eos_token_id: int | None | str = "config") -> np.ndarray:
        """Greedy KV-cached decoding. Returns the new tokens (B, max_new_tokens); positions after a sequence's
        end-of-sequence token hold the pad id. Batches may be left-padded (attention_mask 0 on padding)."""
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        ids, visual, mask = self._check_ids(input_ids, pixels, attention_mask)
        if ids.shape[1] + max_new_tokens > self.config.text.max_position_embeddings and \
                self.config.text.rope_scaling != "none":
            raise ValueError(f"prompt + new tokens exceed max_position_embeddings="
                             f"{self.config.text.max_position_embeddings}; dynamic RoPE scaling is not implemented")
        tokens = np.asarray(_generate(self.config, self.params, ids, visual, mask, max_new_tokens))
        eos = self.config.eos_token_id if eos_token_id == "config" else eos_token_id
        if eos is not None:
            is_eos = tokens == eos
            after = (np.cumsum(is_eos, axis=1) - is_eos) > 0
            pad = self.config.pad_token_id if self.config.pad_token_id is not None else eos
            tokens = np.where(after, pad, tokens)
        return tokens


def from_params(config: InternVLConfig, params) -> VideoLLM:
    params = nn.unbox(params)
    return VideoLLM(config.validate(), jax.tree.map(jnp.asarray, params))


def load(path: str | Path, dtype: str | None = None) -> VideoLLM:
    """Loads our checkpoint directory, or imports a PyTorch InternVL3 directory (config.json + safetensors) on
    the fly. `dtype` ("float32" | "bfloat16") overrides the compute dtype."""
    path = Path(path)
    if store.is_checkpoint(path):
        meta = store.read_metadata(path)
        if meta["kind"] != "internvl":
            raise ValueError(f"{path} holds a {meta['kind']!r} checkpoint, not an InternVL model")
        cfg = InternVLConfig.from_dict(meta["model"]).validate()
        params = store.restore_params(path, nn.unbox(abstract_params(cfg)))
    elif (path / "config.json").is_file():
        from liteframe_jax.checkpoints.import_internvl import import_internvl3
        cfg, params, _ = import_internvl3(path)
    else:
        raise FileNotFoundError(f"{path} is neither a LiteFrame-JAX checkpoint nor an InternVL3 directory "
                                "with config.json")
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype).validate()
    model = from_params(cfg, params)
    model.path = path
    return model
