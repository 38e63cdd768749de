"""Frame store: the sampled frames of every example of a data config, decoded once, so training reads them instead
of decoding videos (experiments.extract_frames writes one; `DataConfig.frame_store` reads it).

Layout of a store directory:
    store.json            format, version, num_examples, num_frames, frame_size ("native" or [h, w]), encoding,
                          how many examples were stored / skipped, and the caller's `metadata` (the data identity)
    frames.array_record   ArrayRecord, record k = example k (global example index), one record per chunk: a
                          header (frame indices, shape, JPEG sizes) and the frames (T, H, W, 3) uint8, raw or one
                          JPEG per frame; or, for an example that could not be read, the reason
    sources.npy           int64 (N, 2): (size, mtime_ns) of each example's source file when it was extracted
                          (-1: synthetic, or not a file)

Frames are stored at the config's sampling and either at native (decoded) size, before the pipeline's crop, resize
and flip, so every augmentation is reproduced exactly, or already resized to the config's image_size (smaller,
but random crops, which cut the native frame, cannot be reproduced). "raw" is lossless; "jpeg" is not.

Completion is atomic as for the teacher-target cache: the writer fills `<path>.partial-<host>-<pid>-<id>` and
renames it to `<path>` in `close()` after writing store.json, so a directory at `path` is always a finished store.
One writer process per store; examples are written in index order (ArrayRecord appends).
"""

from __future__ import annotations

import datetime
import io
import json
import operator
import os
import struct
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from liteframe_jax.data.target_cache import metadata_problems, to_json
from liteframe_jax.partial_writes import (FinishedDirReader, PartialDirWriter, publish, read_finished_metadata,
                                          start_partial)

FORMAT = "liteframe_jax.frame_store"
VERSION = 1
METADATA_FILE = "store.json"
RECORDS_FILE = "frames.array_record"
SOURCES_FILE = "sources.npy"
ENCODINGS = ("raw", "jpeg")
_HEADER = struct.Struct("<I")  # byte length of a record's JSON header


class FrameStoreError(ValueError):
    """A frame store is missing, unfinished, corrupt, used wrongly, or does not match what the caller expects."""


class StoredSkip(ValueError):
    """Example `index` could not be read when the store was extracted; str(e) is the reason recorded then."""


def source_stamp(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a source file, or (-1, -1) for no file ("" = synthetic) or one that cannot be stat'ed."""
    if not path:
        return -1, -1
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return int(st.st_size), int(st.st_mtime_ns)


def _frame_size(frame_size) -> str | tuple[int, int]:
    if frame_size == "native":
        return "native"
    try:
        h, w = (operator.index(v) for v in frame_size)
    except (TypeError, ValueError):
        raise FrameStoreError(f"frame_size must be 'native' or (height, width), got {frame_size!r}") from None
    if h < 1 or w < 1:
        raise FrameStoreError(f"frame_size must be positive, got {frame_size!r}")
    return h, w


def encode_record(frames: np.ndarray, frame_indices: np.ndarray, encoding: str, jpeg_quality: int) -> bytes:
    """One stored example: uint8 frames (T, H, W, 3) and int (T,) frame indices -> record bytes."""
    header: dict[str, Any] = {"frame_indices": [int(i) for i in frame_indices], "shape": list(frames.shape)}
    if encoding == "raw":
        payload = np.ascontiguousarray(frames).tobytes()
    else:
        from PIL import Image

        parts = []
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, format="JPEG", quality=jpeg_quality)
            parts.append(buf.getvalue())
        header["jpeg_sizes"] = [len(p) for p in parts]
        payload = b"".join(parts)
    head = json.dumps(header).encode()
    return _HEADER.pack(len(head)) + head + payload


def _skip_record(reason: str) -> bytes:
    head = json.dumps({"skipped": reason}).encode()
    return _HEADER.pack(len(head)) + head


def decode_record(record: bytes) -> tuple[np.ndarray, np.ndarray] | str:
    """Record bytes -> (frames uint8 (T, H, W, 3), frame_indices int64 (T,)), or the skip reason."""
    (n,) = _HEADER.unpack_from(record)
    header = json.loads(record[_HEADER.size:_HEADER.size + n])
    if "skipped" in header:
        return header["skipped"]
    body = memoryview(record)[_HEADER.size + n:]
    shape = tuple(header["shape"])
    if "jpeg_sizes" not in header:
        frames = np.frombuffer(body, np.uint8).reshape(shape)
    else:
        from PIL import Image

        frames, at = np.empty(shape, np.uint8), 0
        for t, size in enumerate(header["jpeg_sizes"]):
            with Image.open(io.BytesIO(body[at:at + size])) as img:
                frames[t] = np.asarray(img.convert("RGB"))
            at += size
    return frames, np.asarray(header["frame_indices"], np.int64)


class FrameStoreWriter(PartialDirWriter):
    """Writes a store of `num_examples` examples of `num_frames` frames each, in index order (`write` or `skip`
    for every index 0, 1, ...). frame_size: "native" (any size per example) or (h, w) that every example has.
    encoding: "raw" (lossless uint8) or "jpeg" (Pillow, `jpeg_quality`). `metadata` (JSON-serializable) is stored
    as is: put the data identity there (`pipeline.frame_store_identity`) so readers can check it. Use as a
    context manager (an exception aborts, else closes) or call `close()` / `abort()`. FrameStoreError if `path`
    exists (unless overwrite=True, which replaces it only when this store completes)."""

    error = FrameStoreError

    def __init__(self, path, num_examples: int, num_frames: int, *, frame_size="native", encoding: str = "raw",
                 jpeg_quality: int = 95, metadata: Mapping[str, Any] | None = None, overwrite: bool = False):
        from array_record.python.array_record_module import ArrayRecordWriter

        self.path = os.path.abspath(os.fspath(path))
        self.num_examples, self.num_frames = operator.index(num_examples), operator.index(num_frames)
        if self.num_examples < 1 or self.num_frames < 1:
            raise FrameStoreError(f"num_examples and num_frames must be >= 1, got {num_examples}, {num_frames}")
        self.frame_size = _frame_size(frame_size)
        if encoding not in ENCODINGS:
            raise FrameStoreError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if not 1 <= operator.index(jpeg_quality) <= 100:
            raise FrameStoreError(f"jpeg_quality must be in [1, 100], got {jpeg_quality}")
        self.encoding, self.jpeg_quality = encoding, int(jpeg_quality)
        try:
            self.metadata = to_json(dict(metadata or {}))
        except (TypeError, ValueError) as e:
            raise FrameStoreError(f"metadata must be JSON-serializable: {e}") from None
        self._tmp = start_partial(self.path, "frame store", FrameStoreError, overwrite)
        # group_size:1: reading one example decodes one chunk; uncompressed: raw frames are read without a codec
        self._records = ArrayRecordWriter(os.path.join(self._tmp, RECORDS_FILE), "group_size:1,uncompressed")
        self._sources = np.full((self.num_examples, 2), -1, np.int64)
        self.num_written = self.num_skipped = 0
        self.bytes_written = 0
        self._state = "open"

    def _next(self, index: int, source) -> None:
        self._check_open()
        done = self.num_written + self.num_skipped
        if operator.index(index) != done:
            raise FrameStoreError(f"examples are written in index order: expected index {done}, got {index}")
        if done >= self.num_examples:
            raise FrameStoreError(f"all {self.num_examples} examples were written already")
        if source is not None:
            self._sources[index] = source

    def write(self, index: int, frames, frame_indices, source: tuple[int, int] | None = None) -> None:
        """Stores example `index`: uint8 frames (T, H, W, 3) (T = num_frames; H, W = frame_size unless native)
        and their int frame indices (T,); `source` = `source_stamp` of its file."""
        frames, frame_indices = np.asarray(frames), np.asarray(frame_indices)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[0] != self.num_frames or frames.shape[3] != 3:
            raise FrameStoreError(f"frames must be uint8 ({self.num_frames}, H, W, 3), got {frames.dtype} "
                                  f"{frames.shape}")
        if self.frame_size != "native" and frames.shape[1:3] != self.frame_size:
            raise FrameStoreError(f"frames must be {self.frame_size} (the store's frame_size), got {frames.shape[1:3]}")
        if frame_indices.shape != (self.num_frames,) or not np.issubdtype(frame_indices.dtype, np.integer):
            raise FrameStoreError(f"frame_indices must be integers of shape ({self.num_frames},), got "
                                  f"{frame_indices.dtype} {frame_indices.shape}")
        self._next(index, source)
        record = encode_record(frames, frame_indices, self.encoding, self.jpeg_quality)
        self._records.write(record)
        self.bytes_written += len(record)
        self.num_written += 1

    def skip(self, index: int, reason: str, source: tuple[int, int] | None = None) -> None:
        """Records that example `index` could not be read (`reason`): readers skip it with that reason."""
        self._next(index, source)
        self._records.write(_skip_record(str(reason)))
        self.num_skipped += 1

    def close(self) -> str:
        """Finalizes the store at `path` and returns it. FrameStoreError if examples are missing (the writer
        stays open then)."""
        self._check_open()
        done = self.num_written + self.num_skipped
        if done != self.num_examples:
            raise FrameStoreError(f"{self.num_examples - done} of {self.num_examples} examples were not written "
                                  f"(next index {done})")
        self._records.close()
        np.save(os.path.join(self._tmp, SOURCES_FILE), self._sources)
        info = {"format": FORMAT, "version": VERSION, "complete": True, "num_examples": self.num_examples,
                "num_frames": self.num_frames,
                "frame_size": self.frame_size if self.frame_size == "native" else list(self.frame_size),
                "encoding": self.encoding, "jpeg_quality": self.jpeg_quality if self.encoding == "jpeg" else None,
                "num_stored": self.num_written, "num_skipped": self.num_skipped,
                "created": datetime.datetime.now(datetime.UTC).isoformat(), "metadata": self.metadata}
        with open(os.path.join(self._tmp, METADATA_FILE), "w") as f:
            json.dump(info, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        publish(self._tmp, self.path)
        self._state = "closed"
        return self.path

    def _release(self) -> None:
        self._records.close()


class FrameStore(FinishedDirReader):
    """Reader of a finished store, random access by example index. FrameStoreError for a missing or unfinished
    store, a foreign or corrupt directory. Picklable (reopens; grain workers each hold their own reader)."""

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        self._open()

    def _open(self) -> None:
        from array_record.python.array_record_module import ArrayRecordReader

        path = self.path
        info = read_finished_metadata(path, METADATA_FILE, "frame store", FrameStoreError, "unfinished extractions")
        if info.get("format") != FORMAT or info.get("version") != VERSION or info.get("complete") is not True:
            raise FrameStoreError(f"{path} is not a complete {FORMAT} v{VERSION} store (format "
                                  f"{info.get('format')!r}, version {info.get('version')!r})")
        self.info = info
        self._lock = threading.Lock()  # grain's reader threads share this reader
        try:
            self._records = ArrayRecordReader(os.path.join(path, RECORDS_FILE), "readahead_buffer_size:0")
            self.sources = np.load(os.path.join(path, SOURCES_FILE))
        except (OSError, ValueError, RuntimeError) as e:
            raise FrameStoreError(f"{path} is corrupt: {e}") from None
        n = info["num_examples"]
        if self._records.num_records() != n or self.sources.shape != (n, 2):
            raise FrameStoreError(f"{path} is corrupt: {self._records.num_records()} records and sources "
                                  f"{self.sources.shape}, {METADATA_FILE} says {n} examples")

    @property
    def num_frames(self) -> int:
        return self.info["num_frames"]

    @property
    def frame_size(self) -> str | tuple[int, int]:
        size = self.info["frame_size"]
        return size if size == "native" else tuple(size)

    @property
    def metadata(self) -> dict:
        return self.info["metadata"]

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Example `index` -> (frames uint8 (T, H, W, 3), frame_indices int64 (T,)). StoredSkip (with the
        recorded reason) for an example that could not be read at extraction."""
        i = operator.index(index)
        if not 0 <= i < len(self):
            raise FrameStoreError(f"index must be in [0, {len(self)}), got {i}")
        with self._lock:
            record = self._records.read([i])[0]
        out = decode_record(record)
        if isinstance(out, str):
            raise StoredSkip(out)
        return out

    def mismatches(self, expected_metadata: Mapping[str, Any]) -> list[str]:
        """Fields of `expected_metadata` that differ from the store's metadata ("field: store has X, expected Y")."""
        return metadata_problems(expected_metadata, self.metadata, "store")

    def changed_sources(self, paths) -> list[str]:
        """The source files (one path per example, "" = none) that exist now but differ in size or modification
        time from when they were extracted. Missing files are not listed: a store can serve without its videos."""
        changed = []
        for path, (size, mtime) in zip(paths, self.sources.tolist()):
            if size < 0:
                continue
            now = source_stamp(path)
            if now != (-1, -1) and now != (size, mtime):
                changed.append(path)
        return changed
