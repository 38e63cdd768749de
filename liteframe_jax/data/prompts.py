"""InternVL3 prompts: the `internvl2_5` chat template, per-frame video prefixes and training-example encoding.

A video question is `video_prefix(...) + question`, wrapped by `chat_prompt` into the MPT-style string

    <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{user}<|im_end|>\\n<|im_start|>assistant\\n

and a training example appends `{answer}<|im_end|>`; the loss covers exactly the answer and that `<|im_end|>`.
Tokenizers are Hugging Face fast tokenizers (anything with `__call__`, `convert_tokens_to_ids`, `get_added_vocab`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|endoftext|>"
DEFAULT_SYSTEM_MESSAGE = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                          "多模态大语言模型。")
TEMPLATE_SPECIAL_TOKENS = (IMG_START, IMG_END, IMG_CONTEXT, IM_START, IM_END)


class PromptTooLongError(ValueError):
    """The encoded sequence does not fit in the requested length (visual placeholders are never truncated)."""


# ------------------------------------------------------------------------------------------------- strings

def resolve_system_message(setting: str | None) -> str | None:
    """A system-message setting (config value or flag) -> the system text: "default" = InternVL's
    DEFAULT_SYSTEM_MESSAGE, None, "" or "none" = no system turn, anything else the text itself."""
    if setting is None or setting.strip().lower() in ("", "none"):
        return None
    return DEFAULT_SYSTEM_MESSAGE if setting == "default" else setting



def frame_labels(num_frames: int, frames_per_group: int = 1) -> list[str]:
    """Labels of the ceil(num_frames / k) frame groups: "Frame1", "Frame2", ... for k = 1, else "Frame1-4",
    "Frame5-8", ...; a last short group names its real frames ("Frame9-10", or "Frame9" when it has one)."""
    if num_frames < 1 or frames_per_group < 1:
        raise ValueError(f"need num_frames >= 1 and frames_per_group >= 1, got {num_frames}, {frames_per_group}")
    labels = []
    for g in range(math.ceil(num_frames / frames_per_group)):
        first, last = g * frames_per_group + 1, min((g + 1) * frames_per_group, num_frames)
        labels.append(f"Frame{first}" if first == last else f"Frame{first}-{last}")
    return labels


def video_prefix(num_frames: int, tokens_per_group: int, frames_per_group: int = 1) -> str:
    """One line per frame group: "{label}: <img>" + tokens_per_group x "<IMG_CONTEXT>" + "</img>\\n"."""
    if tokens_per_group < 1:
        raise ValueError(f"tokens_per_group must be >= 1, got {tokens_per_group}")
    body = IMG_START + IMG_CONTEXT * tokens_per_group + IMG_END + "\n"
    return "".join(f"{label}: {body}" for label in frame_labels(num_frames, frames_per_group))


def chat_prompt(user_text: str, system_message: str | None = DEFAULT_SYSTEM_MESSAGE,
                history: Sequence[tuple[str, str]] = ()) -> str:
    """`internvl2_5` prompt ending with the open assistant turn; history is earlier (user, assistant) turns.
    system_message None or "" leaves out the system block."""
    parts = [f"{IM_START}system\n{system_message}{IM_END}\n"] if system_message else []
    for user, assistant in history:
        parts.append(f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n{assistant}{IM_END}\n")
    parts.append(f"{IM_START}user\n{user_text}{IM_END}\n{IM_START}assistant\n")
    return "".join(parts)


# ------------------------------------------------------------------------------------------------ encoding

def _token_id(tokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == getattr(tokenizer, "unk_token_id", None):
        raise ValueError(f"tokenizer has no id for {token!r}")
    return int(token_id)


def _special_pattern(added: dict[str, int]) -> re.Pattern:
    # Runs of <IMG_CONTEXT> are one match each, so thousands of placeholders cost one regex step, not thousands.
    others = sorted((t for t in added if t != IMG_CONTEXT), key=len, reverse=True)
    alternatives = [f"(?:{re.escape(IMG_CONTEXT)})+"] + [re.escape(t) for t in others]
    return re.compile("|".join(alternatives))


def encode_prompt(tokenizer, text: str) -> np.ndarray:
    """int32 (L,) ids of `text`, equal to `tokenizer(text, add_special_tokens=False).input_ids`.

    Special strings (the template tokens and every other added token of the tokenizer) map straight to their
    ids; only the text between them goes through the tokenizer, in one batched call.
    """
    added = dict(tokenizer.get_added_vocab())
    added.update({token: _token_id(tokenizer, token) for token in TEMPLATE_SPECIAL_TOKENS})
    context_id = added[IMG_CONTEXT]
    pieces: list[str | np.ndarray] = []
    cursor = 0
    for match in _special_pattern(added).finditer(text):
        if match.start() > cursor:
            pieces.append(text[cursor:match.start()])
        token = match.group()
        if token.startswith(IMG_CONTEXT) and len(token) > len(IMG_CONTEXT):
            pieces.append(np.full(len(token) // len(IMG_CONTEXT), context_id, np.int32))
        else:
            pieces.append(np.array([added[token]], np.int32))
        cursor = match.end()
    if cursor < len(text):
        pieces.append(text[cursor:])
    texts = [p for p in pieces if isinstance(p, str)]
    encoded = iter(tokenizer(texts, add_special_tokens=False).input_ids if texts else [])
    arrays = [np.asarray(next(encoded), np.int32) if isinstance(p, str) else p for p in pieces]
    return np.concatenate(arrays) if arrays else np.zeros((0,), np.int32)


def example_ids(tokenizer, user_text: str, answer: str, system_message: str | None = DEFAULT_SYSTEM_MESSAGE,
                history: Sequence[tuple[str, str]] = ()) -> tuple[np.ndarray, int]:
    """(int32 (L,) unpadded training sequence `chat_prompt(user_text, ...) + answer + "<|im_end|>"`, the prompt's
    length L_p: the answer starts there)."""
    prompt_ids = encode_prompt(tokenizer, chat_prompt(user_text, system_message, history))
    answer_ids = encode_prompt(tokenizer, answer)
    return np.concatenate([prompt_ids, answer_ids, [_token_id(tokenizer, IM_END)]]).astype(np.int32), len(prompt_ids)


def encode_example(tokenizer, user_text: str, answer: str, max_length: int,
                   system_message: str | None = DEFAULT_SYSTEM_MESSAGE,
                   history: Sequence[tuple[str, str]] = ()) -> dict[str, np.ndarray]:
    """Training example `example_ids(...)`, right-padded to max_length.

    Returns input_ids int32 (max_length,), loss_mask float32 (1 on the answer tokens and the closing <|im_end|>,
    0 on the prompt, history and padding) and attention_mask int32 (1 on real tokens). Raises
    PromptTooLongError when the sequence is longer than max_length.
    """
    ids, prompt_length = example_ids(tokenizer, user_text, answer, system_message, history)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else _token_id(tokenizer, PAD)
    length = len(ids)
    if length > max_length:
        raise PromptTooLongError(f"example needs {length} tokens ({prompt_length} prompt + "
                                 f"{length - prompt_length - 1} answer + 1 <|im_end|>) but max_length is {max_length}")
    input_ids = np.full(max_length, pad_id, np.int32)
    input_ids[:length] = ids
    loss_mask = np.zeros(max_length, np.float32)
    loss_mask[prompt_length:length] = 1.0
    attention_mask = np.zeros(max_length, np.int32)
    attention_mask[:length] = 1
    return {"input_ids": input_ids, "loss_mask": loss_mask, "attention_mask": attention_mask}


def pad_batch(examples: Sequence[dict], max_length: int | None = None, side: str = "right",
              pad_id: int = 0) -> dict[str, np.ndarray]:
    """Stack 1-D examples into (B, max_length) arrays, padded on `side` ("right" for training, "left" for
    generation so that every prompt ends at the last column).

    Each example needs input_ids; its real tokens are where attention_mask (default: all ones) is 1, which
    must be one contiguous run, so already padded examples are re-padded. input_ids pad with pad_id, every
    other key with 0; attention_mask is always returned. max_length defaults to the longest example.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    if not examples:
        raise ValueError("pad_batch needs at least one example")
    keys = list(examples[0])
    if "input_ids" not in keys:
        raise ValueError("examples need an 'input_ids' entry")
    trimmed = []
    for i, ex in enumerate(examples):
        if list(ex) != keys:
            raise ValueError(f"example {i} has keys {sorted(ex)}, example 0 has {sorted(keys)}")
        n = len(ex["input_ids"])
        mask = np.asarray(ex.get("attention_mask", np.ones(n)), bool)
        real = np.flatnonzero(mask)
        if real.size and real[-1] - real[0] + 1 != real.size:
            raise ValueError(f"example {i}: attention_mask is not one contiguous run of real tokens")
        kept = {k: np.asarray(v)[mask] for k, v in ex.items()}
        kept["attention_mask"] = np.ones(real.size, np.int32)
        trimmed.append(kept)
    longest = max(len(ex["input_ids"]) for ex in trimmed)
    width = longest if max_length is None else max_length
    if longest > width:
        raise PromptTooLongError(f"longest example has {longest} tokens but max_length is {width}")
    batch = {}
    for key in trimmed[0]:
        dtype = np.asarray(trimmed[0][key]).dtype
        out = np.full((len(trimmed), width), pad_id if key == "input_ids" else 0, dtype)
        for row, ex in enumerate(trimmed):
            n = len(ex[key])
            if side == "right":
                out[row, :n] = ex[key]
            else:
                out[row, width - n:] = ex[key]
        batch[key] = out
    return batch


def decode_answer(tokenizer, tokens, end_id: int | None) -> str:
    """Generated ids -> reply text: cut at the first `end_id` (e.g. <|im_end|>), special tokens dropped."""
    tokens = np.asarray(tokens)
    if end_id is not None and (tokens == end_id).any():
        tokens = tokens[:int(np.argmax(tokens == end_id))]
    return tokenizer.decode(tokens.tolist(), skip_special_tokens=True).strip()
