"""Decoding data once into frame stores (data.frame_store): what experiments.extract_frames runs, for a CTD data
config (one store) or the QA records of an LMA config (a QA store directory, data.qa_store: one store per frame
count)."""

from __future__ import annotations

import datetime
import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence

from tqdm import tqdm

from liteframe_jax.data.frame_store import FrameStoreError, FrameStoreWriter
from liteframe_jax.data.pipeline import (DataConfig, SkipStats, frame_store_identity, load_examples, printable,
                                         store_examples, store_stream)
from liteframe_jax.data.qa_pipeline import QADataConfig, record_clip
from liteframe_jax.data.qa_store import FORMAT, INDEX_FILE, VERSION, qa_clips, qa_store_identity, store_path
from liteframe_jax.data.video import VideoDecodeError
from liteframe_jax.data.video_qa import QARecord
from liteframe_jax.partial_writes import publish, start_partial


def _write_all(writer: FrameStoreWriter, stream, names: Sequence[str], desc: str, progress: bool) -> dict:
    """Writes every example of `stream` (`pipeline.store_stream`) with `writer`, naming skipped ones (names[index])
    on stderr, progress on stderr unless progress=False. -> {"stored", "skipped", "skips" (SkipStats), "bytes"}."""
    skips = SkipStats()
    with tqdm(total=len(names), unit="clip", desc=desc, file=sys.stderr, disable=not progress) as bar:
        for ex in stream:
            index, source = int(ex["index"]), tuple(int(v) for v in ex["source"])
            if "skipped" in ex:
                reason = str(ex["skipped"])
                skips.record(f"{names[index]}: {reason}")
                writer.skip(index, reason, source)
                bar.write(f"skipped {printable(names[index])}: {printable(reason)}", file=sys.stderr)
            else:
                skips.succeeded += 1
                writer.write(index, ex["frames"], ex["frame_indices"], source)
            bar.update(1)
    return {"stored": skips.succeeded, "skipped": skips.count, "skips": skips, "bytes": writer.bytes_written}


def extract_frame_store(cfg: DataConfig, out: str, frame_size: str = "native", encoding: str = "raw",
                        jpeg_quality: int = 95, overwrite: bool = False, progress: bool = True) -> dict:
    """Writes the frame store of DataConfig `cfg` at `out`: every example (all splits) as the pipeline decodes it,
    never augmented, at frame_size "native" or "config" (cfg.image_size), `encoding` "raw" or "jpeg"; skipped
    examples recorded with their reason and named on stderr, progress on stderr unless progress=False. Returns
    {"stored", "skipped", "skips" (SkipStats), "bytes" (records written), "seconds"}. DataError / ConfigError for
    unusable data, FrameStoreError for an existing `out` without overwrite."""
    cfg = cfg.replace(frame_store="").validate()
    examples = load_examples(cfg)
    size = "native" if frame_size == "native" else tuple(cfg.image_size)
    metadata = {"data": {**cfg.to_dict(), **frame_store_identity(cfg, size, examples)["data"]}}
    t0 = time.perf_counter()
    with FrameStoreWriter(out, len(examples), cfg.num_frames, frame_size=size, encoding=encoding,
                          jpeg_quality=jpeg_quality, metadata=metadata, overwrite=overwrite) as writer:
        result = _write_all(writer, store_examples(cfg, size, examples), examples.paths, "extracting frames",
                            progress)
    return {**result, "seconds": time.perf_counter() - t0}


def _clip_at(records: Sequence[QARecord], num_frames: int, sampling: str, fps: float, threads: int, index: int):
    return record_clip(records[index], num_frames, sampling, fps, threads)


def extract_qa_frame_stores(record_lists: Sequence[Sequence[QARecord]], qa: QADataConfig, frame_counts, out: str,
                            frame_size: str = "native", encoding: str = "raw", jpeg_quality: int = 95,
                            overwrite: bool = False, progress: bool = True) -> dict:
    """Writes the QA store directory (data.qa_store) of the records in `record_lists` (train, then eval) at `out`:
    each distinct clip once per frame count in `frame_counts`, as `qa_pipeline.record_clip` gives it with qa's
    sampling, at frame_size "native" or "config" (qa.image_size). `out` appears only once every frame count is
    written. Returns {"clips", "records", "bytes", "seconds", "per_frames": {T: {"stored", "skipped", "skips",
    "bytes"}}}. FrameStoreError for an existing `out` without overwrite or bad frame counts."""
    counts = sorted({int(t) for t in frame_counts})
    if not counts or counts[0] < 1:
        raise FrameStoreError(f"frame counts must be integers >= 1, got {list(frame_counts)}")
    qa = qa.validate()
    clips = qa_clips(*record_lists)
    if not len(clips):
        raise FrameStoreError("no QA records to extract")
    size = "native" if frame_size == "native" else tuple(qa.image_size)
    out = os.path.abspath(os.fspath(out))
    tmp = start_partial(out, "QA frame store", FrameStoreError, overwrite)
    t0, per_frames = time.perf_counter(), {}
    try:
        for t in counts:
            q = qa.replace(num_frames=t)
            settings = {"sampling": q.sampling, "fps": q.fps, "image_size": list(q.image_size)}
            metadata = {"qa": {**settings, **qa_store_identity(clips, q, size)["qa"]}}
            read = functools.partial(_clip_at, clips.records, t, q.sampling, q.fps, q.decode_threads)
            stream = store_stream(read, clips.paths, size, errors=(VideoDecodeError, FileNotFoundError, ValueError))
            with FrameStoreWriter(store_path(tmp, t), len(clips), t, frame_size=size, encoding=encoding,
                                  jpeg_quality=jpeg_quality, metadata=metadata) as writer:
                per_frames[t] = _write_all(writer, stream, [r.video for r in clips.records],
                                           f"extracting {t} frames", progress)
        index = {"format": FORMAT, "version": VERSION, "num_frames": counts, "num_clips": len(clips),
                 "num_records": [len(r) for r in record_lists], "frame_size": size if size == "native" else list(size),
                 "encoding": encoding, "created": datetime.datetime.now(datetime.UTC).isoformat()}
        with open(os.path.join(tmp, INDEX_FILE), "w") as f:
            json.dump(index, f, indent=2)
        publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"clips": len(clips), "records": sum(len(r) for r in record_lists), "per_frames": per_frames,
            "bytes": sum(r["bytes"] for r in per_frames.values()), "seconds": time.perf_counter() - t0}
