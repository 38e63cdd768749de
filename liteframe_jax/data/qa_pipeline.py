"""Video-QA batches for LMA: QA records -> frames + a tokenized `internvl2_5` prompt with answer-only loss.

    records -> [shuffle] -> repeat -> QALoader (decode/sample/resize frames, or read them from a QA frame store
            (data.qa_store); build the prompt, tokenize)
            -> drop unreadable -> batch
    batch: {"pixels": float32 (B, T, H, W, 3), "input_ids": int32 (B, L), "loss_mask": float32 (B, L),
            "attention_mask": int32 (B, L), "index": int64 (B,)}

The prompt layout (one `<img>` block of `tokens_per_group` placeholders per group of `frames_per_group` frames)
comes from the model being trained, so the same records serve the teacher (groups of 1 frame) and LiteFrame.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import ClassVar, Sequence

import grain
import numpy as np

from liteframe_jax.config_base import ConfigBase
from liteframe_jax.data.frames import normalize_frames, pad_with_last
from liteframe_jax.data.pipeline import DataError, DropSkipped, SkipStats, crop_resize, skip_reason
from liteframe_jax.data.prompts import (DEFAULT_SYSTEM_MESSAGE, PromptTooLongError, chat_prompt, encode_example,
                                        encode_prompt, example_ids, video_prefix)
from liteframe_jax.data.sampling import segment_middle_indices
from liteframe_jax.data.video import VideoDecodeError, load_clip
from liteframe_jax.data.video_qa import LETTERS, QARecord, format_multiple_choice, synthetic_video_for

ANSWER_FORMATS = ("letter", "text")


@dataclasses.dataclass(frozen=True)
class PromptLayout:
    """How a model lays out a clip in the prompt."""

    tokens_per_group: int
    frames_per_group: int = 1


def record_clip(record: QARecord, num_frames: int, sampling: str = "segment", fps: float | None = None,
                threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A record's clip before resizing: uint8 frames (T, H0, W0, 3) at native size and their int64 (T,) frame
    indices. InternVL segment-middle sampling (or fixed fps, padded by repeating the last frame) within the
    record's [start, end] bounds; synthetic clips are rendered whole and segment-middle sampled. Asking for more
    frames than the video has repeats frames (InternVL's rule). Raises VideoDecodeError / FileNotFoundError /
    ValueError."""
    if record.video.startswith("synthetic:"):
        video = synthetic_video_for(record)
        idx = segment_middle_indices(len(video.frames), num_frames)
        return video.frames[idx], idx.astype(np.int64)
    bound = None if record.start is None else (float(record.start), float(record.end))
    frames, idx = load_clip(record.video, num_frames, size=None, sampling=sampling,
                            fps=fps if sampling == "fps" else None, bound=bound, threads=threads)
    return pad_with_last(frames, num_frames), pad_with_last(idx, num_frames).astype(np.int64)


def record_frames(record: QARecord, num_frames: int, image_size: tuple[int, int], sampling: str = "segment",
                  fps: float | None = None, threads: int = 1) -> np.ndarray:
    """uint8 frames (T, H, W, 3) of a record's video: `record_clip` resized to image_size (bicubic)."""
    return crop_resize(record_clip(record, num_frames, sampling, fps, threads)[0], tuple(image_size))


def question_text(record: QARecord) -> str:
    """The user text of a single-turn record (lettered options for multiple choice)."""
    return format_multiple_choice(record.question, record.options) if record.options else record.question


def turns(record: QARecord) -> tuple[list[tuple[str, str]], str, str]:
    """-> (history [(user, assistant)], last user text, last answer); the video prefix goes to the first turn."""
    if record.conversations is None:
        return [], question_text(record), record.answer
    pairs, pending = [], None
    for turn in record.conversations:
        if turn["from"] == "human":
            pending = turn["value"]
        elif pending is not None:
            pairs.append((pending, turn["value"]))
            pending = None
    if not pairs:
        raise ValueError(f"record {record.id or record.video}: no (human, gpt) turn pair")
    return pairs[:-1], pairs[-1][0], pairs[-1][1]


def _strip_image_tag(text: str) -> str:
    return text.replace("<video>\n", "").replace("<video>", "").replace("<image>\n", "").replace("<image>", "")


def target_answer(record: QARecord, answer_format: str = "letter") -> str:
    """The reply a model is trained to give: the record's answer, or for answer_format "text" on a multiple-choice
    record the text of the right option instead of its letter."""
    if answer_format == "text" and record.options:
        return record.options[LETTERS.index(record.answer)]
    return record.answer


def _training_turns(record: QARecord, num_frames: int, layout: PromptLayout,
                    answer_format: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(user text, reply, history) of the training example: the video prefix before the first turn; the reply of
    a single-turn record is `target_answer(record, answer_format)`."""
    history, user, answer = turns(record)
    if record.conversations is None:
        answer = target_answer(record, answer_format)
    prefix = video_prefix(num_frames, layout.tokens_per_group, layout.frames_per_group)
    if history:
        history = [(prefix + _strip_image_tag(history[0][0]), history[0][1])] + history[1:]
    else:
        user = prefix + _strip_image_tag(user)
    return user, answer, history


def encode_record(tokenizer, record: QARecord, num_frames: int, layout: PromptLayout, max_length: int,
                  system_message: str | None = DEFAULT_SYSTEM_MESSAGE,
                  answer_format: str = "letter") -> dict[str, np.ndarray]:
    """Tokenized training example (see `prompts.encode_example`) with the video prefix before the first turn;
    the reply of a single-turn record is `target_answer(record, answer_format)`."""
    user, answer, history = _training_turns(record, num_frames, layout, answer_format)
    return encode_example(tokenizer, user, answer, max_length, system_message, history)


def example_length(tokenizer, record: QARecord, num_frames: int, layout: PromptLayout,
                   system_message: str | None = DEFAULT_SYSTEM_MESSAGE, answer_format: str = "letter") -> int:
    """Tokens of `encode_record`'s example before padding: the max_length it needs at num_frames."""
    user, answer, history = _training_turns(record, num_frames, layout, answer_format)
    return len(example_ids(tokenizer, user, answer, system_message, history)[0])


def fitted_max_length(records: Sequence[QARecord], tokenizer, cfg: QADataConfig, layout: PromptLayout,
                      multiple: int = 8) -> int:
    """The longest example of `records` at cfg's frame count, rounded up to `multiple`: the max_length that
    pads least and skips none (max_length=0, "fit")."""
    if not records:
        raise DataError("no QA records to fit max_length to")
    longest = max(example_length(tokenizer, r, cfg.num_frames, layout, cfg.system_message, cfg.answer_format)
                  for r in records)
    return -(-longest // multiple) * multiple


def prompt_ids(tokenizer, user_text: str, num_frames: int, layout: PromptLayout,
               system_message: str | None = DEFAULT_SYSTEM_MESSAGE) -> np.ndarray:
    """int32 (L,) generation prompt: the video prefix + user text, ending with the open assistant turn."""
    prefix = video_prefix(num_frames, layout.tokens_per_group, layout.frames_per_group)
    return encode_prompt(tokenizer, chat_prompt(prefix + user_text, system_message))


@dataclasses.dataclass(frozen=True)
class QADataConfig(ConfigBase):
    config_name: ClassVar[str] = "QA data config"
    num_frames: int = 8
    image_size: tuple[int, int] = (448, 448)
    max_length: int = 512  # 0: fit, the longest example of the records (fitted_max_length, before batching)
    sampling: str = "segment"  # "segment" | "fps"
    fps: float = 1.0
    decode_threads: int = 1
    shuffle: bool = True
    seed: int = 0
    system_message: str | None = DEFAULT_SYSTEM_MESSAGE
    max_initial_failures: int = 32
    answer_format: str = "letter"  # "letter" | "text": reply with the right option's letter or its text
    normalize_on_host: bool = True  # False: uint8 pixels, normalized in the step (as DataConfig.normalize_on_host)

    def problems(self) -> list[str]:
        e = []
        if self.num_frames < 1 or not (self.max_length == 0 or self.max_length >= 8):
            e.append(f"num_frames={self.num_frames} must be >= 1 and max_length={self.max_length} >= 8 (or 0: fit "
                     "the records)")
        if self.sampling not in ("segment", "fps") or self.fps <= 0:
            e.append(f"sampling={self.sampling!r} must be segment|fps and fps={self.fps} > 0")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            e.append(f"image_size={self.image_size} must be (H, W)")
        if self.answer_format not in ANSWER_FORMATS:
            e.append(f"answer_format={self.answer_format!r} must be one of {ANSWER_FORMATS}")
        return e


class QALoader(grain.transforms.Map):
    """Record index -> example dict, or a skip marker {"skipped": "video: reason", "index"} for unreadable videos
    and prompts that do not fit max_length. `store` (data.qa_store.StoredClips): read each record's clip there
    instead of decoding it (the same frames; a clip unreadable at extraction is skipped with the same reason).
    Picklable (numpy/PyAV/tokenizers only)."""

    def __init__(self, records: Sequence[QARecord], tokenizer, cfg: QADataConfig, layout: PromptLayout,
                 store=None):
        self.records, self.tokenizer, self.cfg, self.layout, self.store = list(records), tokenizer, cfg, layout, store

    def _frames(self, i: int) -> np.ndarray:
        c = self.cfg
        if self.store is None:
            return record_frames(self.records[i], c.num_frames, c.image_size, c.sampling, c.fps, c.decode_threads)
        return crop_resize(self.store.read(i)[0], tuple(c.image_size))

    def map(self, element) -> dict:
        i = int(element)
        record, c = self.records[i], self.cfg
        try:
            frames = self._frames(i)
            example = encode_record(self.tokenizer, record, c.num_frames, self.layout, c.max_length,
                                    c.system_message, c.answer_format)
        except (VideoDecodeError, FileNotFoundError, PromptTooLongError, ValueError) as e:
            return {"skipped": f"{record.id or record.video}: {skip_reason(e)}", "index": np.int64(i)}
        pixels = normalize_frames(frames) if c.normalize_on_host else frames
        return {"pixels": pixels, **example, "index": np.int64(i)}


def build_qa_dataset(records: Sequence[QARecord], tokenizer, cfg: QADataConfig, layout: PromptLayout,
                     batch_size: int, train: bool = True, process_index: int = 0, process_count: int = 1,
                     num_epochs: int | None = None, store=None) -> tuple[grain.IterDataset, SkipStats]:
    """-> (dataset, skip stats) of this process's batches (module doc). train: shuffled (cfg.shuffle) and
    repeated forever unless num_epochs is given; otherwise one pass in order. Resumable via
    `iter(ds).get_state()/set_state()` like the CTD pipeline. store: a data.qa_store.StoredClips of `records`
    at cfg's frame count (`qa_store.stored_clips`, which checks it): frames are read there, batches unchanged."""
    cfg.validate()
    if not records:
        raise DataError("no QA records to build a dataset from")
    if cfg.max_length == 0:
        raise ValueError("max_length=0 (fit) must be resolved before batching: "
                         "cfg.replace(max_length=fitted_max_length(records, ...))")
    if operator.index(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if store is not None and len(store.clip_index) != len(records):
        raise ValueError(f"store maps {len(store.clip_index)} records, got {len(records)} records")
    ds = grain.MapDataset.source(np.arange(len(records)))
    if train and cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds.repeat(num_epochs if num_epochs is not None else (None if train else 1))
    ds = ds.map(QALoader(records, tokenizer, cfg, layout, store))[process_index::process_count]
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    stats = SkipStats()
    it_ds = it_ds.filter(DropSkipped(stats, limit=min(cfg.max_initial_failures, len(records))))
    return it_ds.batch(batch_size, drop_remainder=train), stats
