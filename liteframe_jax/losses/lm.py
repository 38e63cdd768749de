"""Language-model losses: next-token cross-entropy on answer tokens, computed from hidden states in sequence
chunks so the (B, L, V) fp32 logits never exist at once (V = 151674 at InternVL3-8B: 4.9 GB per 8k tokens)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

LOGITS_CHUNK = 1024  # positions whose logits are held at once: (B, LOGITS_CHUNK, V) fp32


def answer_loss(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array) -> tuple[jax.Array, dict]:
    """Mean next-token cross-entropy over positions whose target has loss_mask 1, + token accuracy.
    logits (B, L, V); input_ids, loss_mask (B, L)."""
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    target = input_ids[:, 1:]
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    correct = jnp.argmax(logp, axis=-1) == target
    return _reduce(nll, correct, loss_mask[:, 1:])


def chunked_answer_loss(hidden: jax.Array, head: Callable[[jax.Array], jax.Array], input_ids: jax.Array,
                        loss_mask: jax.Array, chunk: int | None = None) -> tuple[jax.Array, dict]:
    """`answer_loss` from final hidden states (B, L, D) and `head`: (B, C, D) -> (B, C, V) logits, evaluated on
    `chunk` positions at a time (default LOGITS_CHUNK) and recomputed in the backward pass."""
    chunk = chunk or LOGITS_CHUNK
    h, target, mask = hidden[:, :-1], input_ids[:, 1:], loss_mask[:, 1:]
    b, n, d = h.shape
    blocks = -(-n // chunk)
    pad = blocks * chunk - n
    hb = jnp.pad(h, ((0, 0), (0, pad), (0, 0))).reshape(b, blocks, chunk, d).swapaxes(0, 1)
    tb = jnp.pad(target, ((0, 0), (0, pad))).reshape(b, blocks, chunk).swapaxes(0, 1)

    @jax.checkpoint
    def block(args):
        h_blk, t_blk = args
        logits = head(h_blk).astype(jnp.float32)
        lse = jax.nn.logsumexp(logits, axis=-1)
        picked = jnp.take_along_axis(logits, t_blk[..., None], axis=-1)[..., 0]
        return lse - picked, jnp.argmax(logits, axis=-1) == t_blk

    nll, correct = jax.lax.map(block, (hb, tb))
    unblock = lambda x: x.swapaxes(0, 1).reshape(b, blocks * chunk)[:, :n]
    return _reduce(unblock(nll), unblock(correct), mask)


def _reduce(nll, correct, mask) -> tuple[jax.Array, dict]:
    m = mask.astype(jnp.float32)
    count = jnp.maximum(m.sum(), 1.0)
    loss = (nll * m).sum() / count
    acc = (correct * m).sum() / count
    return loss, {"loss": loss, "token_accuracy": acc, "answer_tokens": m.sum()}
