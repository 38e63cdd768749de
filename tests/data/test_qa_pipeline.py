"""QA examples: the reply a model is trained on (the option's letter or its text) and where the loss falls."""

import numpy as np
import pytest

from liteframe_jax.data.prompts import encode_prompt
from liteframe_jax.data.qa_pipeline import PromptLayout, QADataConfig, encode_record, target_answer
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
