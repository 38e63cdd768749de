"""The public API: lf.load / encode_frames / logits / generate, and their input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import liteframe_jax as lf
from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.models.internvl import init_params


@pytest.fixture(scope="module")
def model():
    cfg = model_from_config(internvl3_tiny.get_config())
    return lf.from_params(cfg, init_params(cfg, seed=3))


def prompt(model, frames: int, text=(5, 6)):
    t = model.config.tokens_per_frame()
    return np.array([[text[0]] + [model.config.image_token_id] * (t * frames) + [text[1]]])


def test_encode_frames_returns_llm_space_tokens(model):
    pixels = np.random.default_rng(0).normal(size=(3, 56, 56, 3)).astype(np.float32)
    assert model.encode_frames(pixels).shape == (3 * 4, 96)
    # frames are encoded independently; fp32 matmuls over 3 frames or 1 may block differently (last bits differ)
    batch, one = np.asarray(model.encode_frames(pixels)), np.asarray(model.encode_frames(pixels[1:2]))
    np.testing.assert_allclose(batch[4:8], one, rtol=1e-5, atol=1e-5 * np.abs(batch).max())


def test_generate_equals_repeated_full_forward_argmax(model):
    pixels = np.random.default_rng(1).normal(size=(2, 56, 56, 3)).astype(np.float32)
    ids = prompt(model, 2)
    new = model.generate(ids, pixels, max_new_tokens=5)
    seq = ids
    for _ in range(5):
        nxt = np.asarray(model.logits(seq, pixels))[:, -1].argmax(-1)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(new, seq[:, ids.shape[1]:])


def test_generate_pads_after_end_of_sequence(model):
    pixels = np.zeros((1, 56, 56, 3), np.float32)
    ids = prompt(model, 1)
    free = model.generate(ids, pixels, max_new_tokens=4, eos_token_id=None)
    stopped = model.generate(ids, pixels, max_new_tokens=4, eos_token_id=int(free[0, 0]))
    assert stopped[0, 0] == free[0, 0] and (stopped[0, 1:] == model.config.pad_token_id).all()


def test_precomputed_visual_tokens_give_what_the_pixels_give(model):
    pixels = np.random.default_rng(2).normal(size=(2, 56, 56, 3)).astype(np.float32)
    ids = prompt(model, 2)
    visual = model.encode_frames(pixels)
    np.testing.assert_array_equal(model.generate_from_visual(ids, visual, max_new_tokens=3),
                                  model.generate(ids, pixels, max_new_tokens=3))
    logp = model.next_token_logprobs(ids, visual)
    want = jax.nn.log_softmax(model.logits(ids, pixels)[:, -1], axis=-1)
    np.testing.assert_allclose(logp, want, atol=1e-5)


def test_continuation_logprobs_sum_the_reply_tokens_of_each_left_padded_row(model):
    pixels = np.random.default_rng(3).normal(size=(1, 56, 56, 3)).astype(np.float32)
    visual = model.encode_frames(pixels)
    base = prompt(model, 1)[0]
    rows = [np.concatenate([base, [7, 8, 9]]), np.concatenate([base, [11]])]
    ids, mask = model.batch_prompts(rows)
    got = model.continuation_logprobs(ids, jnp.concatenate([visual, visual]), mask, [3, 1])
    for row, n, value in zip(rows, (3, 1), got):
        logp = np.asarray(jax.nn.log_softmax(model.logits(row[None], pixels)[0], axis=-1))
        want = sum(float(logp[len(row) - n - 1 + j, row[len(row) - n + j]]) for j in range(n))
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="lengths must be"):
        model.continuation_logprobs(ids, jnp.concatenate([visual, visual]), mask, [0, 1])


def test_prompts_are_batched_left_padded_to_a_multiple(model):
    ids, mask = model.batch_prompts([np.array([7, 8, 9]), np.array([5])], num_rows=3, multiple=4)
    pad = model.llm_config.pad_token_id
    np.testing.assert_array_equal(ids, [[pad, 7, 8, 9], [pad, pad, pad, 5], [pad, 7, 8, 9]])
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1]])
    # a left-padded batch scores each row as that row alone
    visual = model.encode_frames(np.zeros((1, 56, 56, 3), np.float32))
    rows = [prompt(model, 1)[0], np.array([3, 4, 5])]
    ids, mask = model.batch_prompts(rows)
    both = model.next_token_logprobs(ids, visual, mask)
    np.testing.assert_allclose(both[0], model.next_token_logprobs(rows[0][None], visual)[0], atol=1e-5)
    np.testing.assert_allclose(both[1], model.next_token_logprobs(rows[1][None])[0], atol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda m: m.encode_frames(np.zeros((56, 56, 3))), "pixels must be (F, H, W, 3)"),
    (lambda m: m.encode_frames(np.zeros((1, 42, 56, 3))), "must be a multiple of 28"),
    (lambda m: m.logits(prompt(m, 2), np.zeros((1, 56, 56, 3))), "hold 8 <IMG_CONTEXT>"),
    (lambda m: m.logits(prompt(m, 1)), "no pixels were given"),
    (lambda m: m.logits(np.array([[1, 512]])), "input_ids must lie in [0, 512)"),
    (lambda m: m.logits(np.array([[1.0, 2.0]])), "input_ids must be an integer array"),
    (lambda m: m.logits(np.array([[1, 2]]), attention_mask=np.ones((1, 3))), "attention_mask (1, 3) must match"),
    (lambda m: m.generate(np.array([[1, 2]]), max_new_tokens=0), "max_new_tokens must be a positive integer"),
    (lambda m: m.generate_from_visual(prompt(m, 1), np.zeros((3, 96))), "hold 4 <IMG_CONTEXT> placeholders but 3"),
    (lambda m: m.next_token_logprobs(prompt(m, 1), np.zeros((4, 8))), "visual tokens must be (N, 96)"),
])
def test_bad_inputs_raise_clear_errors(model, call, message):
    with pytest.raises(ValueError) as err:
        call(model)
    assert message in str(err.value)


def test_load_rejects_a_directory_that_is_no_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a LiteFrame-JAX checkpoint nor an InternVL3 directory"):
        lf.load(tmp_path)
