"""Answer-token cross-entropy: the chunked form (logits built a block of positions at a time) equals the full
form in value, metrics and gradients, and only masked targets count."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liteframe_jax.losses.lm import answer_loss, chunked_answer_loss


def _problem(b=2, L=13, d=8, v=11, seed=0):
    r = np.random.default_rng(seed)
    hidden = jnp.asarray(r.standard_normal((b, L, d)), jnp.float32)
    kernel = jnp.asarray(r.standard_normal((d, v)), jnp.float32)
    ids = jnp.asarray(r.integers(0, v, (b, L)), jnp.int32)
    mask = jnp.asarray(r.random((b, L)) < 0.5, jnp.int32)
    return hidden, kernel, ids, mask


@pytest.mark.parametrize("chunk", [1, 4, 5, 12, 64])
def test_chunked_equals_full_in_value_metrics_and_gradients(chunk):
    hidden, kernel, ids, mask = _problem()

    def full(h, w):
        return answer_loss(h @ w, ids, mask)

    def chunked(h, w):
        return chunked_answer_loss(h, lambda x: x @ w, ids, mask, chunk=chunk)

    (l_full, m_full), g_full = jax.value_and_grad(full, argnums=(0, 1), has_aux=True)(hidden, kernel)
    (l_chk, m_chk), g_chk = jax.value_and_grad(chunked, argnums=(0, 1), has_aux=True)(hidden, kernel)
    np.testing.assert_allclose(l_chk, l_full, rtol=1e-6)
    for k in m_full:
        np.testing.assert_allclose(m_chk[k], m_full[k], rtol=1e-6)
    for a, b in zip(g_chk, g_full):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_only_masked_targets_count():
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]]))
    ids = jnp.array([[0, 0, 1]])
    loss, m = answer_loss(logits, ids, jnp.array([[0, 0, 1]]))  # target 1 predicted from position 1: p = 0.1
    np.testing.assert_allclose(loss, -np.log(0.1), rtol=1e-6)
    assert float(m["answer_tokens"]) == 1 and float(m["token_accuracy"]) == 0
    hidden = jnp.eye(2)[None, [0, 1, 1]]
    loss_c, _ = chunked_answer_loss(hidden, lambda h: h @ logits[0, :2], ids, jnp.array([[0, 0, 1]]), chunk=1)
    np.testing.assert_allclose(loss_c, -np.log(0.1), rtol=1e-6)
