"""The video-QA data of a training config (config.data, config.teacher): tokenizer, train/eval records, the
per-frame-count data settings and batches. Shared by the tasks that train on video QA (LMA; teacher
pre-training)."""

from __future__ import annotations

import dataclasses

from pathlib import Path

import jax
import numpy as np

from liteframe_jax.checkpoints.liteframe_store import tokenizer_files
from liteframe_jax.data.prompts import resolve_system_message
from liteframe_jax.data.qa_pipeline import PromptLayout, QADataConfig, build_qa_dataset
from liteframe_jax.data.qa_store import StoredClips, check_qa_store, qa_clips
from liteframe_jax.data.synthetic_events import DENSE_FIELDS
from liteframe_jax.data.tokenizer import load_tokenizer, save_tiny_tokenizer
from liteframe_jax.data.video_qa import read_records, synthetic_spec, synthetic_splits

RECORD_ERRORS_SHOWN = 10
BATCH_KEYS = ("pixels", "input_ids", "loss_mask", "attention_mask")  # what the steps take of a QA batch


def qa_tokenizer(config, workdir: Path):
    """(tokenizer, its directory): data.tokenizer, else the teacher checkpoint's, else (tiny demo) the built-in
    tiny tokenizer written once to workdir/tokenizer."""
    src = config.data.tokenizer or (config.teacher.checkpoint if tokenizer_files(config.teacher.checkpoint) else "")
    if not src:
        if config.variant != "tiny":
            raise ValueError("no tokenizer: set data.tokenizer or use a teacher checkpoint with tokenizer files")
        src = workdir / "tokenizer"
        if not (src / "tokenizer.json").exists():
            save_tiny_tokenizer(src, config.teacher.model.text.vocab_size)
    return load_tokenizer(src), Path(src)


def load_qa_records(config, log=print):
    """(train records, eval records) from the configured files or the embedded synthetic benchmark; malformed
    lines are skipped and reported with line numbers."""
    d = config.data
    if not d.train_file:
        spec = synthetic_spec(d.synthetic_benchmark, num_frames=d.synthetic_video_frames,
                              size=d.synthetic_video_size, seed=d.synthetic_seed)
        train_spec = spec
        if d.get("synthetic_train_clips", "benchmark") == "dense":
            train_spec = dataclasses.replace(spec, **DENSE_FIELDS)
        train = synthetic_splits(train_spec, d.synthetic_train_videos, 0, seed=d.synthetic_seed,
                                 separate_persistent=d.get("synthetic_separate_persistent", False))[0]
        if d.get("synthetic_extra_videos", 0) > 0:  # about 12 ms a clip: minutes for thousands
            log(f"adding the {d.synthetic_extra_tasks} questions of {d.synthetic_extra_videos} more synthetic clips")
        extra_spec = spec
        if d.get("synthetic_extra_clips", "benchmark") == "dense":
            extra_spec = dataclasses.replace(spec, **DENSE_FIELDS)
        train += extra_synthetic_questions(extra_spec, d.get("synthetic_extra_videos", 0),
                                           d.get("synthetic_extra_tasks", ""), d.synthetic_seed)
        return train, synthetic_splits(spec, 0, d.synthetic_test_videos, seed=d.synthetic_seed)[1]
    out = []
    for path in (d.train_file, d.eval_file or d.train_file):
        records, errors = read_records(path)
        for line, reason in errors[:RECORD_ERRORS_SHOWN]:
            log(f"{path}:{line}: skipped malformed record: {reason}")
        if len(errors) > RECORD_ERRORS_SHOWN:
            log(f"{path}: {len(errors) - RECORD_ERRORS_SHOWN} more malformed records skipped")
        if errors:  # a duplicated id drops a whole share of a merged file; say how much is left
            log(f"{path}: {len(errors)} of {len(errors) + len(records)} records skipped, {len(records)} kept")
        out.append(records)
    return out[0], out[1]


def extra_synthetic_questions(spec, videos: int, tasks: str, seed: int) -> list:
    """The questions of `tasks` (comma-separated task names) about `videos` more train clips of `spec` (the eval
    split's, or its dense variant), drawn with spec seed + 1 so that their clips and ids differ from the train
    split's: weights a task that the mix of one question per task and clip under-trains (README, "Teacher
    pre-training")."""
    if videos <= 0:
        return []
    wanted = set(tasks.split(","))
    more = synthetic_splits(dataclasses.replace(spec, seed=spec.seed + 1), videos, 0, seed=seed)[0]
    return [r for r in more if r.task in wanted]


def qa_config(config, num_frames: int) -> QADataConfig:
    """The QA data settings of config.data for clips of `num_frames` frames."""
    d = config.data
    return QADataConfig(num_frames=num_frames, image_size=tuple(d.image_size), max_length=d.max_length,
                        sampling=d.sampling, fps=d.fps, decode_threads=d.decode_threads, seed=config.seed,
                        system_message=resolve_system_message(d.system_message),
                        answer_format=d.answer_format,
                        normalize_on_host=d.normalize_on_host).validate()


def qa_batches(records, tokenizer, qa: QADataConfig, layout: PromptLayout, local_batch: int, train: bool,
               store: StoredClips | None = None):
    """(dataset of this process's batches, skip stats): shuffled and endless for training, one ordered pass for
    eval (data.qa_pipeline.build_qa_dataset); frames read from `store` (`qa_stores`) when given."""
    return build_qa_dataset(records, tokenizer, qa, layout, local_batch, train=train,
                            process_index=jax.process_index(), process_count=jax.process_count(), store=store)


def qa_stores(config, train_records, eval_records, frame_counts) -> dict[int, tuple[StoredClips, StoredClips]]:
    """{frame count: (train, eval) StoredClips} from the QA store directory data.frame_store, each frame count's
    store checked against the records and qa_config (DataError naming the mismatch); {} when data.frame_store is
    unset (decode the videos)."""
    root = config.data.get("frame_store", "")
    if not root:
        return {}
    clips = qa_clips(train_records, eval_records)
    train_index, eval_index = clips.indices(train_records), clips.indices(eval_records)
    stores = {}
    for t in sorted(set(frame_counts)):
        path = check_qa_store(root, clips, qa_config(config, t))
        stores[t] = (StoredClips(path, train_index), StoredClips(path, eval_index))
    return stores


def example_batch(qa: QADataConfig, b: int) -> dict:
    """Zero host arrays shaped like one local batch: pixels (b, T, H, W, 3), token rows (b, L)."""
    return {"pixels": np.zeros((b, qa.num_frames, *qa.image_size, 3), np.float32 if qa.normalize_on_host else np.uint8),
            "input_ids": np.zeros((b, qa.max_length), np.int32), "loss_mask": np.zeros((b, qa.max_length), np.float32),
            "attention_mask": np.zeros((b, qa.max_length), np.int32)}
