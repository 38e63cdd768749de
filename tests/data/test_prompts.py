"""InternVL3 `internvl2_5` prompts: frame labels, the literal template string, fast encoding equal to the
tokenizer's own, and training examples whose loss covers exactly the answer and the closing <|im_end|>."""

import numpy as np
import pytest

from liteframe_jax.data.prompts import (DEFAULT_SYSTEM_MESSAGE, PromptTooLongError, chat_prompt, encode_example,
                                        encode_prompt, frame_labels, pad_batch, resolve_system_message, video_prefix)
from liteframe_jax.data.tokenizer import load_tokenizer, save_tiny_tokenizer

V = 512
PAD, IM_START, IM_END, IMG, END_IMG, CTX = 0, 1, 2, V - 3, V - 2, V - 1


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    save_tiny_tokenizer(directory, V)
    return load_tokenizer(directory)


# --------------------------------------------------------------------------------------------- frame labels

def test_one_label_per_frame():
    assert frame_labels(3) == ["Frame1", "Frame2", "Frame3"]


@pytest.mark.parametrize("num_frames, k, expected", [
    (8, 4, ["Frame1-4", "Frame5-8"]),
    (10, 4, ["Frame1-4", "Frame5-8", "Frame9-10"]),
    (9, 4, ["Frame1-4", "Frame5-8", "Frame9"]),
    (3, 4, ["Frame1-3"]),
    (5, 2, ["Frame1-2", "Frame3-4", "Frame5"]),
])
def test_group_labels_and_short_last_group(num_frames, k, expected):
    assert frame_labels(num_frames, k) == expected


@pytest.mark.parametrize("num_frames, k", [(1, 1), (16, 4), (17, 4), (31, 8), (64, 3)])
def test_number_of_groups_is_ceil(num_frames, k):
    assert len(frame_labels(num_frames, k)) == -(-num_frames // k)


@pytest.mark.parametrize("num_frames, k", [(0, 1), (4, 0)])
def test_bad_frame_counts_are_rejected(num_frames, k):
    with pytest.raises(ValueError):
        frame_labels(num_frames, k)


# ------------------------------------------------------------------------------------------------ template

def test_two_frame_prompt_matches_internvl_literal_format():
    # the literal InternVL2.5/3 chat prompt for a two-frame video, with the 256 placeholders per frame written out
    ctx = "<IMG_CONTEXT>" * 256
    expected = ("<|im_start|>system\n你是书生·万象，英文名是InternVL，"
                "是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。<|im_end|>\n"
                f"<|im_start|>user\nFrame1: <img>{ctx}</img>\nFrame2: <img>{ctx}</img>\nWhat happens?<|im_end|>\n"
                "<|im_start|>assistant\n")
    assert chat_prompt(video_prefix(2, 256) + "What happens?") == expected


def test_grouped_video_prefix():
    assert video_prefix(6, 2, 4) == ("Frame1-4: <img><IMG_CONTEXT><IMG_CONTEXT></img>\n"
                                     "Frame5-6: <img><IMG_CONTEXT><IMG_CONTEXT></img>\n")


def test_history_turns_come_between_system_and_question():
    prompt = chat_prompt("Q2", system_message="sys", history=[("Q1", "A1")])
    assert prompt == ("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n"
                      "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("system", [None, ""])
def test_no_system_block_when_system_message_is_empty(system):
    assert chat_prompt("hi", system_message=system) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


# ------------------------------------------------------------------------------------------------ encoding

def test_encode_prompt_equals_tokenizer_on_a_short_prompt(tok):
    text = chat_prompt(video_prefix(3, 4, 2) + "Qué color tiene el círculo? 你好", history=[("hello", "world")])
    fast = encode_prompt(tok, text)
    assert fast.dtype == np.int32
    assert fast.tolist() == tok(text, add_special_tokens=False).input_ids


def test_encode_prompt_equals_tokenizer_with_thousands_of_placeholders(tok):
    text = chat_prompt(video_prefix(16, 256) + "How many objects appear in the video?")
    fast = encode_prompt(tok, text)
    assert fast.tolist() == tok(text, add_special_tokens=False).input_ids
    assert int(np.sum(fast == CTX)) == 16 * 256
    assert int(np.sum(fast == IMG)) == 16 and int(np.sum(fast == END_IMG)) == 16


@pytest.mark.parametrize("text", ["", "<IMG_CONTEXT>", "plain text only", "<img></img>", "a<|im_end|>"])
def test_encode_prompt_edge_cases(tok, text):
    assert encode_prompt(tok, text).tolist() == tok(text, add_special_tokens=False).input_ids


def test_encode_prompt_needs_the_template_tokens():
    class NoImageTokens:
        unk_token_id = None

        def get_added_vocab(self):
            return {}

        def convert_tokens_to_ids(self, token):
            return None

    with pytest.raises(ValueError, match="<img>"):
        encode_prompt(NoImageTokens(), "hi")


# ------------------------------------------------------------------------------------------ training example

def test_loss_mask_covers_exactly_the_answer_and_im_end(tok):
    user = video_prefix(2, 3) + "What colour is the square?"
    ex = encode_example(tok, user, "B. red", max_length=128)
    ids, mask, attn = ex["input_ids"], ex["loss_mask"], ex["attention_mask"]
    assert ids.dtype == np.int32 and mask.dtype == np.float32 and attn.dtype == np.int32
    assert ids.shape == mask.shape == attn.shape == (128,)
    prompt = encode_prompt(tok, chat_prompt(user)).tolist()
    n = int(attn.sum())
    assert ids[:len(prompt)].tolist() == prompt
    trained = ids[mask == 1]
    assert trained[-1] == IM_END
    assert tok.decode(trained.tolist()) == "B. red<|im_end|>"
    assert np.flatnonzero(mask).tolist() == list(range(len(prompt), n))   # contiguous, right after the prompt
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}
    assert attn[:n].all() and not attn[n:].any()
    assert (ids[n:] == PAD).all()


def test_history_answers_are_not_trained(tok):
    ex = encode_example(tok, "Q2", "second", max_length=96, history=[("Q1", "first")])
    trained = ex["input_ids"][ex["loss_mask"] == 1].tolist()
    assert tok.decode(trained) == "second<|im_end|>"
    assert "first" in tok.decode(ex["input_ids"].tolist())


def test_example_that_fits_exactly_is_not_padded(tok):
    length = int(encode_example(tok, "hi", "yes", max_length=200)["attention_mask"].sum())
    ex = encode_example(tok, "hi", "yes", max_length=length)
    assert ex["attention_mask"].all() and ex["input_ids"][-1] == IM_END


def test_too_long_raises_naming_both_lengths(tok):
    user = video_prefix(4, 64) + "How many objects appear in the video?"
    needed = int(encode_example(tok, user, "A", max_length=4096)["attention_mask"].sum())
    with pytest.raises(PromptTooLongError, match=rf"{needed}.*{needed - 1}"):
        encode_example(tok, user, "A", max_length=needed - 1)
    assert issubclass(PromptTooLongError, ValueError)


def test_default_system_message_is_internvls():
    assert DEFAULT_SYSTEM_MESSAGE.startswith("你是书生·万象，英文名是InternVL")
    assert DEFAULT_SYSTEM_MESSAGE.endswith("模型。")


@pytest.mark.parametrize("setting,expected", [("default", DEFAULT_SYSTEM_MESSAGE), ("", None), (None, None),
                                              ("none", None), ("Be brief.", "Be brief.")])
def test_system_message_settings_resolve_to_the_system_text(setting, expected):
    assert resolve_system_message(setting) == expected


# ------------------------------------------------------------------------------------------------- batching

def _prompt(ids):
    return {"input_ids": np.array(ids, np.int32)}


def test_right_padding_stacks_and_masks():
    batch = pad_batch([_prompt([5, 6, 7]), _prompt([8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_left_padding_ends_every_prompt_in_the_last_column():
    batch = pad_batch([_prompt([5, 6, 7]), _prompt([8])], max_length=5, side="left", pad_id=9)
    assert batch["input_ids"].tolist() == [[9, 9, 5, 6, 7], [9, 9, 9, 9, 8]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 0, 1]]


def test_padded_training_examples_are_repadded(tok):
    a = encode_example(tok, "hi", "yes", max_length=64)
    b = encode_example(tok, "a longer question here", "no", max_length=80)
    batch = pad_batch([a, b], side="left")
    width = int(b["attention_mask"].sum())
    assert batch["input_ids"].shape == batch["loss_mask"].shape == (2, width)
    na = int(a["attention_mask"].sum())
    assert batch["input_ids"][0, width - na:].tolist() == a["input_ids"][:na].tolist()
    assert batch["loss_mask"][0, width - na:].tolist() == a["loss_mask"][:na].tolist()
    assert batch["loss_mask"][0, :width - na].sum() == 0
    assert batch["loss_mask"].dtype == np.float32


def test_pad_batch_rejects_bad_input():
    with pytest.raises(PromptTooLongError):
        pad_batch([_prompt([1, 2, 3])], max_length=2)
    with pytest.raises(ValueError, match="side"):
        pad_batch([_prompt([1])], side="middle")
    with pytest.raises(ValueError, match="keys"):
        pad_batch([_prompt([1]), {"input_ids": np.array([1]), "loss_mask": np.array([1.0])}])
    with pytest.raises(ValueError, match="contiguous"):
        pad_batch([{"input_ids": np.array([1, 2, 3]), "attention_mask": np.array([1, 0, 1])}])
