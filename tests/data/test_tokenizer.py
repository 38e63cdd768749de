"""Tiny demo tokenizer: fixed special-id layout, byte-for-byte deterministic, lossless on any text, and a saved
folder that transformers loads offline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liteframe_jax.data.tokenizer import (build_tiny_tokenizer, load_tokenizer, save_tiny_tokenizer,
                                          special_token_ids)

V = 512
TEXTS = [
    "What colour is the circle?\nA. red\nB. blue",
    "héllo wörld — naïve café, 你好，世界！ 🙂🎬 Ωμέγα ру́сский",
    "  leading and trailing spaces \t tabs\n\nnewlines  ",
    "unusual words: xylophone quixotic 1234567890 {json: [1, 2]} <not_special> <img",
]


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny_tok")
    save_tiny_tokenizer(directory, V)
    return directory


@pytest.fixture(scope="module")
def hf_tokenizer(saved_dir):
    return load_tokenizer(saved_dir)


# ------------------------------------------------------------------------------------------------ layout

@pytest.mark.parametrize("vocab_size", [262, 512, 1024])
def test_special_ids_sit_at_fixed_positions(vocab_size):
    tok = build_tiny_tokenizer(vocab_size)
    assert tok.get_vocab_size(with_added_tokens=True) == vocab_size
    expected = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<img>": vocab_size - 3,
                "</img>": vocab_size - 2, "<IMG_CONTEXT>": vocab_size - 1}
    assert {t: tok.token_to_id(t) for t in expected} == expected
    ids = sorted(tok.get_vocab(with_added_tokens=True).values())
    assert ids == list(range(vocab_size))  # no holes and no duplicates


def test_vocab_size_below_bytes_plus_specials_is_rejected():
    with pytest.raises(ValueError, match="262"):
        build_tiny_tokenizer(261)


def test_build_is_byte_for_byte_deterministic():
    assert build_tiny_tokenizer(V).to_str() == build_tiny_tokenizer(V).to_str()


def test_bpe_learned_merges_for_the_benchmark_vocabulary():
    tok = build_tiny_tokenizer(V)
    # frequent benchmark words are single tokens, so the tokenizer was really trained on the QA corpus
    for word in (" circle", " square", " triangle", "Answer", "assistant", "system", "Frame"):
        assert len(tok.encode(word).ids) == 1, word


# ------------------------------------------------------------------------------------------------ encoding

@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_of_arbitrary_text(text):
    tok = build_tiny_tokenizer(V)
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert all(0 <= i < V for i in ids)


def test_special_strings_encode_to_single_ids():
    tok = build_tiny_tokenizer(V)
    ids = tok.encode("<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img><|im_end|>").ids
    assert ids[0] == 1 and ids[-1] == 2
    assert ids[-5:-1] == [V - 3, V - 1, V - 1, V - 2]


# ------------------------------------------------------------------------------------------- saved folder

def test_saved_folder_has_the_files_and_config(tmp_path):
    paths = save_tiny_tokenizer(tmp_path / "nested" / "tok", V)
    assert sorted(p.name for p in paths) == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert all(p.is_file() for p in paths)
    config = json.loads((tmp_path / "nested" / "tok" / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and config["pad_token"] == "<|endoftext|>"
    assert config["additional_special_tokens"] == ["<img>", "</img>", "<IMG_CONTEXT>"]


def test_saved_tokenizer_json_is_deterministic(tmp_path):
    save_tiny_tokenizer(tmp_path / "a", V)
    save_tiny_tokenizer(tmp_path / "b", V)
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_autotokenizer_loads_the_saved_folder_offline(hf_tokenizer):
    tok = hf_tokenizer
    assert tok.is_fast
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 0
    assert len(tok) == V
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False).input_ids
        assert ids == build_tiny_tokenizer(V).encode(text).ids
        assert tok.decode(ids) == text
    # no BOS or other token is added around the text
    assert tok("red").input_ids == tok("red", add_special_tokens=False).input_ids


def test_special_tokens_are_skipped_when_decoding(hf_tokenizer):
    ids = hf_tokenizer("<|im_start|>user\nhi<img><IMG_CONTEXT></img><|im_end|>").input_ids
    assert hf_tokenizer.decode(ids, skip_special_tokens=True) == "user\nhi"


def test_special_token_ids(hf_tokenizer):
    assert special_token_ids(hf_tokenizer) == {"pad": 0, "eos": 2, "im_start": 1, "img_start": V - 3,
                                               "img_end": V - 2, "img_context": V - 1}


def test_special_token_ids_names_missing_tokens():
    class NoImageTokens:
        pad_token_id = 0

        def get_vocab(self):
            return {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}

    with pytest.raises(ValueError, match="IMG_CONTEXT"):
        special_token_ids(NoImageTokens())


def test_load_from_missing_or_empty_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        load_tokenizer(tmp_path / "does_not_exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_tokenizer(tmp_path / "empty")


def test_load_of_broken_tokenizer_files_names_the_folder(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text('{"not": "a tokenizer"}')
    with pytest.raises(ValueError, match="broken"):
        load_tokenizer(tmp_path / "broken")


def test_a_tokenizer_folder_naming_custom_code_is_refused_without_running_it(tmp_path):
    """A checkpoint may name a tokenizer class in a .py file beside it (auto_map); that code must never run, even
    when a user would answer transformers' "do you trust this code?" prompt with yes."""
    evil = tmp_path / "evil"
    save_tiny_tokenizer(evil)
    marker = tmp_path / "ran"
    (evil / "evil_tokenizer.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                            "from transformers import PreTrainedTokenizerFast as EvilTokenizer\n")
    config = json.loads((evil / "tokenizer_config.json").read_text())
    config.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": [None, "evil_tokenizer.EvilTokenizer"]})
    (evil / "tokenizer_config.json").write_text(json.dumps(config))
    code = ("import sys\nfrom liteframe_jax.data.tokenizer import load_tokenizer\n"
            f"try:\n    load_tokenizer({str(evil)!r})\nexcept ValueError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], input="y\ny\n", capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert not marker.exists(), out.stdout + out.stderr
    assert out.returncode == 0 and "refused:" in out.stdout, out.stdout + out.stderr
