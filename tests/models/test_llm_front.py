"""The LLM front end shared by the teacher, LiteFrame and the LMA step: visual tokens merged at <IMG_CONTEXT>,
the decoder with or without a KV cache, logits or hidden states."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.models import llm_front
from liteframe_jax.models.internvl import InternVL, init_params

CFG = model_from_config(internvl3_tiny.get_config())
IMG = CFG.image_token_id


@pytest.fixture(scope="module")
def params():
    return nn.unbox(init_params(CFG, seed=5))


def _prompts():
    """Two left-padded prompts (2, 7) with 2 and 1 <IMG_CONTEXT> placeholders, and 3 visual tokens (3, 96)."""
    ids = jnp.array([[0, 0, 5, IMG, IMG, 7, 8], [0, 4, 5, 6, IMG, 9, 3]], jnp.int32)
    mask = jnp.array([[0, 0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]], jnp.int32)
    visual = jax.random.normal(jax.random.key(0), (3, CFG.text.hidden_size))
    return ids, mask, visual


def test_the_llm_front_is_the_models_llm_with_the_same_parameters(params):
    ids, mask, visual = _prompts()
    positions = jnp.array([[1, 1, 0, 1, 2, 3, 4], [1, 0, 1, 2, 3, 4, 5]])
    want, _ = InternVL(CFG).apply({"params": params}, ids, visual, positions, mask.astype(bool))
    np.testing.assert_array_equal(llm_front.prompt_logits(CFG, params["llm"], ids, visual, mask), want)


def test_visual_tokens_replace_the_placeholder_embeddings_in_row_major_order(params):
    ids, _, visual = _prompts()
    front = llm_front.llm_front(CFG)
    embeds = front.apply({"params": params["llm"]}, ids, visual, method=llm_front.LLMFront.embed_prompt)
    text = front.apply({"params": params["llm"]}, ids, method=llm_front.LLMFront.embed)
    np.testing.assert_array_equal(embeds[0, 3], visual[0])
    np.testing.assert_array_equal(embeds[0, 4], visual[1])
    np.testing.assert_array_equal(embeds[1, 4], visual[2])
    keep = np.asarray(ids != IMG)
    np.testing.assert_array_equal(np.asarray(embeds)[keep], np.asarray(text)[keep])


def test_hidden_states_through_the_head_are_the_logits(params):
    ids, mask, visual = _prompts()
    hidden = llm_front.prompt_hidden(CFG, params["llm"], ids, visual, mask)
    assert hidden.shape == (2, 7, CFG.text.hidden_size)
    np.testing.assert_allclose(llm_front.head(CFG, params["llm"], hidden),
                               llm_front.prompt_logits(CFG, params["llm"], ids, visual, mask), rtol=1e-6, atol=1e-6)


def test_next_token_logprobs_are_the_last_positions_log_softmax(params):
    ids, mask, visual = _prompts()
    logits = llm_front.prompt_logits(CFG, params["llm"], ids, visual, mask)
    got = llm_front.next_token_logprobs(CFG, params["llm"], ids, visual, mask)
    np.testing.assert_allclose(got, jax.nn.log_softmax(logits[:, -1]), rtol=1e-5, atol=1e-5)


def test_greedy_generation_with_the_cache_equals_argmax_of_full_forwards(params):
    ids, mask, visual = _prompts()
    new = np.asarray(llm_front.greedy_generate(CFG, params["llm"], ids, visual, mask, 4))
    seq, m = ids, mask
    for k in range(4):
        nxt = llm_front.prompt_logits(CFG, params["llm"], seq, visual, m)[:, -1].argmax(-1)
        np.testing.assert_array_equal(new[:, k], nxt)
        seq = jnp.concatenate([seq, nxt[:, None].astype(jnp.int32)], axis=1)
        m = jnp.concatenate([m, jnp.ones((2, 1), jnp.int32)], axis=1)
