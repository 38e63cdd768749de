"""The LLM front end shared by every Video LLM here (the InternVL teacher, LiteFrame, the LMA step).

`LLMFront` is the Qwen2 decoder (same parameters, the "llm" subtree) plus what a Video LLM adds in front of it:
token embedding with the visual tokens merged in at the `<IMG_CONTEXT>` placeholders, then the decoder with or
without a KV cache, returning logits or (hidden_only) the final-normed hidden states.

    front = llm_front(cfg)    # cfg: the InternVLConfig holding the LLM and the token ids
    logits, cache = front.apply({"params": params["llm"]}, ids, visual, positions, key_valid, method="forward")

The functions below are the pure-functional uses built on it: `prompt_logits`, `next_token_logprobs`,
`greedy_generate` and `prompt_hidden` (take an attention mask, derive the RoPE positions from it).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.layers import compute_dtype
from liteframe_jax.models.qwen2 import KVCache, Qwen2, init_kv_cache, positions_from_mask


def merge_visual_tokens(embeds: jax.Array, input_ids: jax.Array, visual: jax.Array, image_token_id: int) -> jax.Array:
    """Replace, in row-major (batch, sequence) order, the k-th `image_token_id` embedding by visual[k].

    embeds (B, L, D), input_ids (B, L), visual (Nv, D) with Nv == number of placeholders (checked by callers,
    since it cannot be checked on traced values). Returns (B, L, D).
    """
    b, L, d = embeds.shape
    is_img = (input_ids == image_token_id).reshape(-1)
    k = jnp.cumsum(is_img) - 1
    picked = jnp.take(visual.astype(embeds.dtype), jnp.clip(k, 0, visual.shape[0] - 1), axis=0)
    return jnp.where(is_img[:, None], picked, embeds.reshape(b * L, d)).reshape(b, L, d)


class LLMFront(Qwen2):
    """Qwen2 (its parameters unchanged) with the Video LLM's prompt front. Methods:
    - `embed_prompt(input_ids (B, L), visual (..., d_llm) | None)` -> (B, L, D) with visual tokens merged
    - `forward(input_ids, visual, positions, key_valid, cache, cache_index, last_only, hidden_only)` -> (logits
      (B, L or 1, V) fp32 or hidden states (B, L or 1, D), cache); `embed`, `__call__`, `head` are Qwen2's."""

    image_token_id: int = -1

    def embed_prompt(self, input_ids: jax.Array, visual: jax.Array | None = None) -> jax.Array:
        embeds = self.embed(input_ids)
        if visual is not None:
            embeds = merge_visual_tokens(embeds, input_ids, visual.reshape(-1, visual.shape[-1]), self.image_token_id)
        return embeds

    def forward(self, input_ids, visual, positions, key_valid, cache: KVCache | None = None, cache_index=0,
                last_only: bool = False, hidden_only: bool = False):
        return self(self.embed_prompt(input_ids, visual), positions, key_valid, cache, cache_index, last_only,
                    hidden_only)


def llm_front(cfg: InternVLConfig) -> LLMFront:
    """The front end of the LLM described by `cfg` (text config, compute dtype, attention, remat, token ids)."""
    return LLMFront(cfg.text, compute_dtype(cfg.dtype), cfg.attention_impl, cfg.remat,
                    image_token_id=cfg.image_token_id)


def prompt_logits(cfg: InternVLConfig, llm_params, input_ids, visual, mask, last_only: bool = False) -> jax.Array:
    """Prompts input_ids (B, L) with attention mask (B, L) (left or right padding) and visual tokens (Nv, d_llm)
    or None -> fp32 logits (B, L, V), or (B, 1, V) with last_only."""
    logits, _ = llm_front(cfg).apply({"params": llm_params}, input_ids, visual, positions_from_mask(mask),
                                     mask.astype(bool), None, 0, last_only, method=LLMFront.forward)
    return logits


def next_token_logprobs(cfg: InternVLConfig, llm_params, input_ids, visual, mask) -> jax.Array:
    """Log-probabilities (B, V) of the token after each left-padded prompt (the last position's logits only)."""
    return jax.nn.log_softmax(prompt_logits(cfg, llm_params, input_ids, visual, mask, last_only=True)[:, -1], axis=-1)


def continuation_logprobs(cfg: InternVLConfig, llm_params, input_ids, visual, mask, lengths) -> jax.Array:
    """Summed log-probabilities (B,) of each left-padded row's last lengths[b] tokens given everything before
    them (teacher forcing: one forward pass scores a whole reply)."""
    logp = jax.nn.log_softmax(prompt_logits(cfg, llm_params, input_ids, visual, mask)[:, :-1], axis=-1)
    token_logp = jnp.take_along_axis(logp, input_ids[:, 1:, None], axis=-1)[..., 0]  # (B, L - 1)
    target_pos = jnp.arange(1, input_ids.shape[1])[None]
    scored = target_pos >= input_ids.shape[1] - jnp.asarray(lengths)[:, None]
    return jnp.sum(jnp.where(scored, token_logp, 0.0), axis=1)


def prompt_hidden(cfg: InternVLConfig, llm_params, input_ids, visual, mask) -> jax.Array:
    """Final-normed hidden states (B, L, D) of the prompts (as `prompt_logits`, before the head)."""
    hidden, _ = llm_front(cfg).apply({"params": llm_params}, input_ids, visual, positions_from_mask(mask),
                                     mask.astype(bool), hidden_only=True, method=LLMFront.forward)
    return hidden


def head(cfg: InternVLConfig, llm_params, hidden: jax.Array) -> jax.Array:
    """Final-normed hidden states (..., D) -> fp32 logits (..., V)."""
    return llm_front(cfg).apply({"params": llm_params}, hidden, method=LLMFront.head)


def greedy_generate(cfg: InternVLConfig, llm_params, input_ids, visual, mask, max_new_tokens: int) -> jax.Array:
    """Greedy KV-cached decoding of left-padded prompts (B, L) -> the new tokens (B, max_new_tokens) int32."""
    apply = functools.partial(llm_front(cfg).apply, {"params": llm_params}, method=LLMFront.forward)
    b, L = input_ids.shape
    key_valid = jnp.concatenate([mask.astype(bool), jnp.ones((b, max_new_tokens), bool)], axis=1)
    positions = positions_from_mask(mask)
    cache = init_kv_cache(cfg.text, b, L + max_new_tokens, compute_dtype(cfg.dtype))
    logits, cache = apply(input_ids, visual, positions, key_valid, cache, 0, True)
    first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)

    def step(carry, i):
        tok, cache, pos = carry
        logits, cache = apply(tok[:, None], None, pos[:, None], key_valid, cache, L + i, True)
        nxt = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        return (nxt, cache, pos + 1), nxt

    start = jnp.max(positions, axis=1) + 1
    _, rest = jax.lax.scan(step, (first, cache, start), jnp.arange(max_new_tokens - 1))
    return jnp.concatenate([first[:, None], rest.T], axis=1)
