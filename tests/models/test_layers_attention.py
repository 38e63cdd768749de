"""Attention implementations: "chunked" computes the same function as "xla" (forward and gradients, with
causal / padding masks and GQA) while holding only one query block's logits; bad names are rejected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liteframe_jax.models.config import ConfigError, InternVLConfig, StudentConfig
from liteframe_jax.models.layers import attention


def _qkv(b=2, t=37, s=37, n=4, kv=2, h=8, seed=0):
    r = np.random.default_rng(seed)
    q = jnp.asarray(r.standard_normal((b, t, n, h)), jnp.float32)
    k = jnp.asarray(r.standard_normal((b, s, kv, h)), jnp.float32)
    v = jnp.asarray(r.standard_normal((b, s, kv, h)), jnp.float32)
    return q, k, v


@pytest.mark.parametrize("t,chunk", [(37, 8), (64, 16), (5, 16)])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_matches_xla_forward_and_grad(t, chunk, masked):
    q, k, v = _qkv(t=t, s=t)
    key_valid = jnp.asarray(np.arange(t)[None, :] >= np.array([[0], [3]])) if masked else None  # left padding
    slots = jnp.arange(t) if masked else None

    def loss(impl, q, k, v):
        o = attention(q, k, v, key_valid=key_valid, query_slots=slots, implementation=impl, query_chunk=chunk)
        return jnp.sum(o * jnp.cos(o)), o

    (l_ref, o_ref), g_ref = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)("xla", q, k, v)
    (l_chk, o_chk), g_chk = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)("chunked", q, k, v)
    np.testing.assert_allclose(o_chk, o_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_chk, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_causal_slots_with_cache_offset_match_an_explicit_mask():
    """Decoding 3 queries at cache slots 5..7 of a 12-slot cache: each sees slots <= its own."""
    q, k, v = _qkv(b=1, t=3, s=12)
    slots = 5 + jnp.arange(3)
    got = attention(q, k, v, query_slots=slots, implementation="chunked", query_chunk=2)
    mask = (np.arange(12)[None, :] <= np.asarray(slots)[:, None])[None, None]
    want = jax.nn.dot_product_attention(q, k, v, mask=jnp.asarray(mask))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_chunked_holds_a_fraction_of_the_logits():
    """448px-like frame attention (1025 tokens, 16 heads, 8 frames): the compiled temp memory of "chunked" is far
    below the (B, N, T, S) fp32 logits, whatever the backend's compiler does with the plain "xla" form (XLA:CPU
    now fuses it into smaller buffers; GPU compilers keep the logits)."""
    shape_q = jax.ShapeDtypeStruct((8, 1025, 16, 64), jnp.float32)
    logits_bytes = 8 * 16 * 1025 * 1025 * 4

    def temp(impl):
        f = jax.jit(lambda q, k, v: attention(q, k, v, implementation=impl, query_chunk=128))
        return f.lower(shape_q, shape_q, shape_q).compile().memory_analysis().temp_size_in_bytes

    chunked = temp("chunked")
    assert chunked < logits_bytes / 2, (chunked, logits_bytes)  # one block of logits + q/out re-layouts


def test_unknown_implementation_is_rejected_by_configs_and_layer():
    with pytest.raises(ConfigError, match="attention_impl"):
        StudentConfig(attention_impl="flash").validate()
    with pytest.raises(ValueError, match="must be one of"):
        attention(*_qkv(), implementation="flash")


def test_pallas_needs_a_tpu_and_says_so():
    if jax.default_backend() == "tpu":
        pytest.fail("this test documents the CPU behaviour; on TPU the kernel itself is exercised")
    with pytest.raises(ValueError, match="needs a TPU"):
        attention(*_qkv(), implementation="pallas")


def test_configs_accept_every_implementation():
    for impl in ("xla", "chunked", "cudnn", "pallas"):
        InternVLConfig().replace(attention_impl=impl).validate()
        StudentConfig(attention_impl=impl).validate()


def test_teacher_model_with_chunked_attention_equals_xla(monkeypatch):
    """The whole InternVL (ViT over 16 patches + LLM prefill with left padding, then one cached decode step)
    computes the same logits when attention runs in query blocks of 3."""
    from flax import linen as nn

    from configs import internvl3_tiny
    from configs.common import model_from_config
    from liteframe_jax.models import layers
    from liteframe_jax.models.internvl import InternVL, init_params
    from liteframe_jax.models.qwen2 import init_kv_cache, positions_from_mask

    monkeypatch.setattr(layers, "QUERY_CHUNK", 3)
    cfg = model_from_config(internvl3_tiny.get_config())
    params = nn.unbox(init_params(cfg, seed=1))
    pixels = jax.random.normal(jax.random.key(0), (2, 56, 56, 3))
    ids = jnp.array([[0, 0, 5, cfg.image_token_id, 7, 9, 11], [4, 5, 6, cfg.image_token_id, 7, 8, 9]], jnp.int32)
    mask = jnp.array([[0, 0, 1, 1, 1, 1, 1], [1] * 7], jnp.int32)

    def run(impl):
        c = cfg.replace(attention_impl=impl)
        model = InternVL(c)
        visual = model.apply({"params": params}, pixels, method=InternVL.encode_images).reshape(-1, 96)[:2]
        cache = init_kv_cache(c.text, 2, 8)
        valid = jnp.pad(mask, ((0, 0), (0, 1))).astype(bool)
        logits, cache = model.apply({"params": params}, ids, visual, positions_from_mask(mask), valid, cache, 0)
        valid = valid.at[:, 7].set(True)
        step, _ = model.apply({"params": params}, ids[:, -1:], None, positions_from_mask(mask)[:, -1:] + 1, valid,
                              cache, 7)
        return visual, logits, step

    for got, want in zip(run("chunked"), run("xla")):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_llm_remat_changes_memory_not_the_function():
    from flax import linen as nn

    from configs import internvl3_tiny
    from configs.common import model_from_config
    from liteframe_jax.models.qwen2 import Qwen2

    text = model_from_config(internvl3_tiny.get_config()).text
    params = nn.unbox(Qwen2(text).init(jax.random.key(0), jnp.zeros((1, 4, text.hidden_size)),
                                       jnp.arange(4)[None], jnp.ones((1, 4), bool)))["params"]
    x = jax.random.normal(jax.random.key(1), (2, 6, text.hidden_size))
    pos, valid = jnp.tile(jnp.arange(6), (2, 1)), jnp.ones((2, 6), bool)

    def grads(remat):
        f = lambda p: jnp.sum(Qwen2(text, remat=remat).apply({"params": p}, x, pos, valid)[0] ** 2)
        return jax.value_and_grad(f)(params)

    (v0, g0), (v1, g1) = grads(False), grads(True)
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5), g1, g0)  # fp32 re-association
