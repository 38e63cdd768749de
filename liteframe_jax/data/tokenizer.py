"""Tokenizers: a tiny byte-level BPE tokenizer for the embedded demo model, and loading from checkpoint folders.

Tiny tokenizer id layout for vocabulary size V:
    0 <|endoftext|> (pad), 1 <|im_start|>, 2 <|im_end|> (eos), 3 .. V-4 byte-level BPE tokens,
    V-3 <img>, V-2 </img>, V-1 <IMG_CONTEXT>.
The BPE starts from all 256 byte symbols (any text, any script, encodes without unknown tokens) and is trained
with `tokenizers`' BpeTrainer on a fixed corpus built from the synthetic video-QA prompts, so the same V always
gives the same tokenizer.json. When the corpus runs out of merges before V-3 tokens, the gap is filled with
unused special tokens <|reserved_k|>, keeping the image tokens at the top ids.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

from liteframe_jax.data import prompts, video_qa
from liteframe_jax.data.synthetic import PALETTE, SHAPES, SyntheticVideoSpec

LEADING_SPECIALS = (prompts.PAD, prompts.IM_START, prompts.IM_END)
IMAGE_SPECIALS = (prompts.IMG_START, prompts.IMG_END, prompts.IMG_CONTEXT)
MIN_VOCAB_SIZE = len(LEADING_SPECIALS) + 256 + len(IMAGE_SPECIALS)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_CORPUS_FRAME_COUNTS = ((8, 1), (16, 1), (32, 1), (64, 4), (32, 4), (10, 4))
_CORPUS_VIDEOS, _CORPUS_SEED = 40, 20250101


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[str, ...]:
    """Training text: sample chat prompts of the synthetic benchmark (so words are weighted as in real
    prompts), every question, option phrase and answer once more for coverage; special tokens removed."""
    samples = video_qa.build_synthetic_benchmark(SyntheticVideoSpec(), _CORPUS_VIDEOS, seed=_CORPUS_SEED)
    texts = []
    for i, record in enumerate(samples):
        num_frames, group = _CORPUS_FRAME_COUNTS[i % len(_CORPUS_FRAME_COUNTS)]
        user = prompts.video_prefix(num_frames, 1, group) + record.turns()[0][0]
        texts.append(prompts.chat_prompt(user) + record.answer + prompts.IM_END)
    colors, motions = list(PALETTE), list(video_qa.MOTION_ANSWERS.values())
    texts += [video_qa.QUESTION_TEMPLATES["color"].format(shape=s) for s in SHAPES]
    texts += [video_qa.QUESTION_TEMPLATES["shape"].format(color=c) for c in colors]
    texts += [video_qa.QUESTION_TEMPLATES["motion"].format(color=c, shape=s) for c in colors for s in SHAPES]
    texts += [video_qa.describe(c, s) for c in colors for s in SHAPES] + motions
    texts += [video_qa.QUESTION_TEMPLATES[t] for t in ("count", "order")] + [video_qa.MC_INSTRUCTION]
    texts += list(video_qa.LETTERS[:5]) + [str(k) for k in range(10)]
    for token in (*LEADING_SPECIALS, *IMAGE_SPECIALS):
        texts = [t.replace(token, "\n") for t in texts]
    return tuple(piece for t in texts for piece in t.split("\n") if piece)


def _tiny_tokenizer(vocab_size: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(IMAGE_SPECIALS), show_progress=False,
                                  special_tokens=[AddedToken(t, special=True) for t in LEADING_SPECIALS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_corpus(), trainer)
    filler = vocab_size - len(IMAGE_SPECIALS) - tokenizer.get_vocab_size()
    tokenizer.add_special_tokens([AddedToken(f"<|reserved_{k}|>", special=True) for k in range(filler)])
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t in IMAGE_SPECIALS])
    for i, token in enumerate(IMAGE_SPECIALS):
        if tokenizer.token_to_id(token) != vocab_size - len(IMAGE_SPECIALS) + i:
            raise RuntimeError(f"{token} landed on id {tokenizer.token_to_id(token)}, "
                               f"not {vocab_size - len(IMAGE_SPECIALS) + i}")
    return tokenizer


def build_tiny_tokenizer(vocab_size: int = 512) -> Tokenizer:
    """The deterministic tiny tokenizer (`tokenizers.Tokenizer`) with vocab_size ids in the layout above."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be >= {MIN_VOCAB_SIZE} (3 + 256 bytes + 3 image tokens), "
                         f"got {vocab_size}")
    return _tiny_tokenizer(vocab_size)


def save_tiny_tokenizer(directory: str | os.PathLike, vocab_size: int = 512) -> list[Path]:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json for
    `transformers.AutoTokenizer.from_pretrained(directory)`; returns the written paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = {"eos_token": prompts.IM_END, "pad_token": prompts.PAD,
              "additional_special_tokens": list(IMAGE_SPECIALS)}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 32768,
              "clean_up_tokenization_spaces": False, "bos_token": None, "unk_token": None, **tokens}
    paths = [directory / "tokenizer.json", directory / "tokenizer_config.json", directory / "special_tokens_map.json"]
    paths[0].write_text(build_tiny_tokenizer(vocab_size).to_str(pretty=True), encoding="utf-8")
    paths[1].write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    paths[2].write_text(json.dumps(tokens, indent=2) + "\n", encoding="utf-8")
    return paths


def load_tokenizer(directory: str | os.PathLike):
    """A transformers fast tokenizer from a local folder (a checkpoint or `save_tiny_tokenizer` output);
    never touches the network."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer folder {str(directory)!r} does not exist")
    if not (directory / "tokenizer.json").is_file() and not (directory / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {str(directory)!r}")
    from transformers import AutoTokenizer  # heavy import, only when a tokenizer is actually loaded

    try:
        # never run code from the folder (a tokenizer_config.json may name a class in a .py file beside it)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ... for broken files
        raise ValueError(f"could not load a tokenizer from {str(directory)!r}: {e}") from e
    if not tokenizer.is_fast:
        raise ValueError(f"tokenizer in {str(directory)!r} is not a fast (Rust) tokenizer")
    return tokenizer


def special_token_ids(tokenizer) -> dict[str, int]:
    """Ids of pad, eos (<|im_end|>), im_start, img_start, img_end and img_context; ValueError if one is missing."""
    names = {"pad": prompts.PAD, "eos": prompts.IM_END, "im_start": prompts.IM_START,
             "img_start": prompts.IMG_START, "img_end": prompts.IMG_END, "img_context": prompts.IMG_CONTEXT}
    vocab = tokenizer.get_vocab()  # includes added tokens (transformers and `tokenizers` alike)
    missing = [token for token in names.values() if token not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks the special tokens {missing}")
    ids = {name: int(vocab[token]) for name, token in names.items()}
    if getattr(tokenizer, "pad_token_id", None) is not None:  # a checkpoint's own pad token wins
        ids["pad"] = int(tokenizer.pad_token_id)
    return ids
