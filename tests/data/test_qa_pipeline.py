"""QA examples: the reply a model is trained on (the option's letter or its text) and where the loss falls."""

import numpy as np
import pytest

from liteframe_jax.data.prompts import PromptTooLongError, encode_prompt
from liteframe_jax.data.qa_pipeline import (PromptLayout, QADataConfig, build_qa_dataset, encode_record,
                                            example_length, fitted_max_length, target_answer)
from liteframe_jax.data.tokenizer import load_tokenizer, save_tiny_tokenizer
from liteframe_jax.data.video_qa import QARecord


RECORD = QARecord(video="synthetic:0:1", question="What colour is the square?", options=("red", "blue", "green"),
                  answer="B", task="color")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    save_tiny_tokenizer(d)
    return load_tokenizer(d)


def test_target_answer_is_the_letter_or_the_right_options_text():
    assert target_answer(RECORD) == "B" and target_answer(RECORD, "text") == "blue"
    open_ended = QARecord(video="synthetic:0:1", question="Describe it.", answer="a red square")
    assert target_answer(open_ended, "text") == "a red square"


@pytest.mark.parametrize("answer_format, reply", [("letter", "B"), ("text", "blue")])
def test_loss_covers_exactly_the_reply_and_the_end_token(tokenizer, answer_format, reply):
    ex = encode_record(tokenizer, RECORD, 2, PromptLayout(4), 256, None, answer_format)
    scored = ex["input_ids"][ex["loss_mask"] == 1]
    want = np.concatenate([encode_prompt(tokenizer, reply), [tokenizer.convert_tokens_to_ids("<|im_end|>")]])
    np.testing.assert_array_equal(scored, want)
    # the prompt lists the options with letters in both formats
    prompt = tokenizer.decode(ex["input_ids"][ex["loss_mask"] == 0][ex["attention_mask"][ex["loss_mask"] == 0] == 1])
    assert "B. blue" in prompt


def test_unknown_answer_format_is_refused():
    with pytest.raises(ValueError, match="answer_format='word' must be one of"):
        QADataConfig(answer_format="word").validate()


LONGER = QARecord(video="synthetic:0:2", question="Which shape appears first, and in which colour is it drawn?",
                  options=("a red circle", "a blue square", "a green triangle", "none of these"), answer="C",
                  task="order")
TWO_TURNS = QARecord(video="synthetic:0:3", conversations=(
    {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a square"},
    {"from": "human", "value": "And its colour?"}, {"from": "gpt", "value": "red"}))


@pytest.mark.parametrize("record", [RECORD, LONGER, TWO_TURNS], ids=["choice", "longer", "two_turns"])
def test_example_length_is_the_unpadded_length_of_the_encoded_example(tokenizer, record):
    n = example_length(tokenizer, record, 4, PromptLayout(4), None, "text")
    assert encode_record(tokenizer, record, 4, PromptLayout(4), n, None, "text")["attention_mask"].sum() == n
    with pytest.raises(PromptTooLongError):
        encode_record(tokenizer, record, 4, PromptLayout(4), n - 1, None, "text")


def test_fitted_max_length_is_the_longest_example_rounded_up_to_8_at_the_frame_count(tokenizer):
    records = [RECORD, LONGER, TWO_TURNS]
    for frames in (2, 16):
        qa = QADataConfig(num_frames=frames, max_length=0, system_message=None, answer_format="text")
        longest = max(example_length(tokenizer, r, frames, PromptLayout(4), None, "text") for r in records)
        fitted = fitted_max_length(records, tokenizer, qa, PromptLayout(4))
        assert fitted % 8 == 0 and longest <= fitted < longest + 8
    # more frames, more placeholders: the fit grows with the frame count
    assert (fitted_max_length(records, tokenizer, qa, PromptLayout(4))
            > fitted_max_length(records, tokenizer, qa.replace(num_frames=2), PromptLayout(4)))


def test_max_length_zero_must_be_fitted_before_batching(tokenizer):
    qa = QADataConfig(num_frames=2, max_length=0).validate()  # 0 is a valid setting: fit the records
    with pytest.raises(ValueError, match="must be resolved before batching"):
        build_qa_dataset([RECORD], tokenizer, qa, PromptLayout(4), 1)
    with pytest.raises(ValueError, match=r"max_length=4 >= 8 \(or 0: fit"):
        QADataConfig(max_length=4).validate()
