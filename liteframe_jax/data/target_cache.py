"""Teacher-target cache: precomputed (WAP-compressed) teacher targets by global example index, in zarr v3 arrays
written with tensorstore, so CTD can train without running the teacher.

Layout of a cache directory:
    cache.json        format, version, shapes, dtype, num_frames, how many examples were written, and the
                      caller's `metadata` (data config, WAP config, teacher identity, ...)
    targets/          zarr3 (N, T', H', W', C) float32 or bfloat16, one example per chunk
    frame_indices/    zarr3 int64 (N, T), 1024 examples per chunk: the decoded frame numbers of each example
                      (-1: synthetic / unknown)
    written/          zarr3 bool (N,): which examples hold a target

Completion is atomic: the writer fills a sibling directory `<path>.partial-<host>-<pid>-<id>` and renames it to
`<path>` only in `close()`, after writing cache.json. A directory at `path` therefore is always a finished cache; a
crashed writer leaves only the `.partial-*` directory (the reader says so), which the next writer of `path` removes
(liteframe_jax.partial_writes). One writer process per cache.
"""

from __future__ import annotations

import datetime
import json
import math
import operator
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorstore as ts

from liteframe_jax.partial_writes import (FinishedDirReader, PartialDirWriter, publish, read_finished_metadata,
                                          start_partial)

FORMAT = "liteframe_jax.target_cache"
VERSION = 1
METADATA_FILE = "cache.json"
DTYPES = ("float32", "bfloat16")


class TargetCacheError(ValueError):
    """A target cache is missing, unfinished, corrupt, used wrongly, or does not match what the caller expects."""


def _array_spec(directory: str, name: str) -> dict:
    return {"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(directory, name)}}


def _create(directory: str, name: str, shape: Sequence[int], dtype: str, chunk: Sequence[int], fill) -> ts.TensorStore:
    spec = {**_array_spec(directory, name), "create": True,
            "metadata": {"shape": list(shape), "data_type": dtype, "fill_value": fill,
                         "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk)}}}}
    return ts.open(spec).result()


def to_json(value) -> Any:
    """JSON-normal form (tuples -> lists, numpy scalars -> Python), so stored and expected values compare."""
    return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _check_shape(name: str, shape) -> tuple[int, ...]:
    try:
        out = tuple(operator.index(v) for v in shape)
    except TypeError:
        raise TargetCacheError(f"{name} must be a tuple of integers, got {shape!r}") from None
    if not out or min(out) < 1:
        raise TargetCacheError(f"{name} must be non-empty and positive, got {shape!r}")
    return out


def _check_indices(indices, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
        raise TargetCacheError(f"indices must be a 1-D array of integers, got {idx.dtype} {idx.shape}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise TargetCacheError(f"indices must be in [0, {n}), got min {idx.min()} max {idx.max()}")
    return idx


class TargetCacheWriter(PartialDirWriter):
    """Writes a cache for `num_examples` examples of targets (T', H', W', C) in `dtype` and `num_frames` frame
    indices each. `metadata` (JSON-serializable) is stored as is; include the data config (with
    `pipeline.cache_identity`), the WAP config and the teacher's identity so readers can `check_compatible`.
    Use as a context manager (an exception aborts, else closes) or call `close()` / `abort()`.
    TargetCacheError if `path` exists (unless overwrite=True, which replaces it only when this cache completes)."""

    error = TargetCacheError

    def __init__(self, path, num_examples: int, target_shape: Sequence[int], dtype: str = "float32", *,
                 num_frames: int, metadata: Mapping[str, Any] | None = None, overwrite: bool = False):
        self.path = os.path.abspath(os.fspath(path))
        self.num_examples = operator.index(num_examples)
        self.target_shape = _check_shape("target_shape", target_shape)
        self.num_frames = operator.index(num_frames)
        if self.num_examples < 1 or self.num_frames < 1:
            raise TargetCacheError(f"num_examples and num_frames must be >= 1, got {num_examples}, {num_frames}")
        if dtype not in DTYPES:
            raise TargetCacheError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        self.dtype = dtype
        try:
            self.metadata = to_json(dict(metadata or {}))
        except (TypeError, ValueError) as e:
            raise TargetCacheError(f"metadata must be JSON-serializable: {e}") from None
        self._tmp = start_partial(self.path, "target cache", TargetCacheError, overwrite)
        n = self.num_examples
        self._targets = _create(self._tmp, "targets", (n, *self.target_shape), dtype, (1, *self.target_shape), 0.0)
        self._frames = _create(self._tmp, "frame_indices", (n, self.num_frames), "int64",
                               (min(n, 1024), self.num_frames), -1)
        self._written = np.zeros(n, bool)
        self._state = "open"

    @property
    def num_written(self) -> int:
        return int(self._written.sum())

    def write(self, indices, targets, frame_indices=None) -> None:
        """Stores targets (B, T', H', W', C) (any float dtype, cast to the cache dtype) and frame_indices int
        (B, T) (None = -1) at global example indices (B,) (distinct). Rewriting an index replaces it."""
        self._check_open()
        idx = _check_indices(indices, self.num_examples)
        if len(np.unique(idx)) != len(idx):
            raise TargetCacheError("indices of one write must be distinct")
        targets = np.asarray(targets)
        if targets.shape != (len(idx), *self.target_shape):
            raise TargetCacheError(f"targets must have shape {(len(idx), *self.target_shape)}, got {targets.shape}")
        if frame_indices is None:
            frame_indices = np.full((len(idx), self.num_frames), -1, np.int64)
        frame_indices = np.asarray(frame_indices)
        if frame_indices.shape != (len(idx), self.num_frames) or not np.issubdtype(frame_indices.dtype, np.integer):
            raise TargetCacheError(f"frame_indices must be integers of shape {(len(idx), self.num_frames)}, got "
                                   f"{frame_indices.dtype} {frame_indices.shape}")
        if not np.isfinite(targets.astype(np.float32)).all():
            raise TargetCacheError("targets contain NaN or infinity")
        if not len(idx):
            return
        writes = [self._targets.oindex[idx].write(targets.astype(self._targets.dtype.numpy_dtype)),
                  self._frames.oindex[idx].write(frame_indices.astype(np.int64))]
        for w in writes:
            w.result()
        self._written[idx] = True

    def close(self, allow_partial: bool = False) -> str:
        """Finalizes the cache at `path` and returns it. TargetCacheError if examples are missing, unless
        allow_partial (then readers need allow_partial=True too); the writer stays open in that case."""
        self._check_open()
        missing = np.flatnonzero(~self._written)
        if missing.size and not allow_partial:
            raise TargetCacheError(f"{missing.size} of {self.num_examples} examples were not written (e.g. indices "
                                   f"{missing[:8].tolist()}); write them or close(allow_partial=True)")
        _create(self._tmp, "written", (self.num_examples,), "bool", (self.num_examples,), False).write(
            self._written).result()
        info = {"format": FORMAT, "version": VERSION, "complete": True, "num_examples": self.num_examples,
                "target_shape": list(self.target_shape), "dtype": self.dtype, "num_frames": self.num_frames,
                "num_written": self.num_written, "created": datetime.datetime.now(datetime.UTC).isoformat(),
                "metadata": self.metadata}
        with open(os.path.join(self._tmp, METADATA_FILE), "w") as f:
            json.dump(info, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        publish(self._tmp, self.path)  # overwrite=True: swaps the finished cache in, then drops the old one
        self._state = "closed"
        return self.path



class TargetCache(FinishedDirReader):
    """Reader of a finished cache. TargetCacheError for a missing or unfinished cache, a foreign or corrupt
    directory, or (unless allow_partial) a cache in which some examples were not written. Picklable (reopens)."""

    pickled = ("path", "allow_partial")

    def __init__(self, path, *, allow_partial: bool = False):
        self.path = os.path.abspath(os.fspath(path))
        self.allow_partial = allow_partial
        self._open()

    def _open(self) -> None:
        path = self.path
        info = read_finished_metadata(path, METADATA_FILE, "target cache", TargetCacheError)
        if info.get("format") != FORMAT or info.get("version") != VERSION:
            raise TargetCacheError(f"{path} is not a {FORMAT} v{VERSION} cache (format {info.get('format')!r}, "
                                   f"version {info.get('version')!r})")
        if info.get("complete") is not True:
            raise TargetCacheError(f"{path} is an incomplete target cache")
        self.info = info
        n, shape, t = info["num_examples"], tuple(info["target_shape"]), info["num_frames"]
        try:
            self._targets = ts.open(_array_spec(path, "targets"), open=True).result()
            self._frames = ts.open(_array_spec(path, "frame_indices"), open=True).result()
            written = ts.open(_array_spec(path, "written"), open=True).result().read().result()
        except ValueError as e:  # tensorstore raises ValueError for missing or malformed arrays
            raise TargetCacheError(f"{path} is corrupt: {e}") from None
        expected = {"targets": ((n, *shape), info["dtype"]), "frame_indices": ((n, t), "int64")}
        for name, arr in (("targets", self._targets), ("frame_indices", self._frames)):
            if (tuple(arr.shape), arr.dtype.name) != expected[name]:
                raise TargetCacheError(f"{path} is corrupt: {name} is {arr.dtype.name} {tuple(arr.shape)}, "
                                       f"{METADATA_FILE} says {expected[name][1]} {expected[name][0]}")
        self._written = np.asarray(written, bool)
        missing = np.flatnonzero(~self._written)
        if missing.size and not self.allow_partial:
            raise TargetCacheError(f"target cache {path} is partial: {missing.size} of {n} examples were not written "
                                   f"(e.g. {missing[:8].tolist()}); open it with allow_partial=True to use the rest")

    @property
    def metadata(self) -> dict:
        """The writer's `metadata` dict."""
        return self.info["metadata"]

    @property
    def target_shape(self) -> tuple[int, ...]:
        return tuple(self.info["target_shape"])

    @property
    def num_frames(self) -> int:
        return self.info["num_frames"]

    @property
    def dtype(self) -> str:
        return self.info["dtype"]

    def is_written(self, index: int) -> bool:
        return bool(self._written[operator.index(index)])

    def read(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Global example indices (B,) (any order, repeats allowed) -> (targets float32 (B, T', H', W', C),
        frame_indices int64 (B, T)). TargetCacheError for an index out of range or never written."""
        idx = _check_indices(indices, len(self))
        unwritten = idx[~self._written[idx]]
        if unwritten.size:
            raise TargetCacheError(f"target cache {self.path} has no targets for examples {unwritten[:8].tolist()}")
        if not idx.size:
            return (np.zeros((0, *self.target_shape), np.float32), np.zeros((0, self.num_frames), np.int64))
        uniq, inverse = np.unique(idx, return_inverse=True)
        reads = [self._targets.oindex[uniq].read(), self._frames.oindex[uniq].read()]
        targets, frames = (r.result() for r in reads)
        return np.asarray(targets, np.float32)[inverse], np.asarray(frames, np.int64)[inverse]

    def compatibility_problems(self, expected_metadata: Mapping[str, Any]) -> list[str]:
        """Every field of `expected_metadata` (nested dicts compared key by key, as dotted names) whose value
        differs from or is missing in the cache's metadata, as "field: cache has X, expected Y". Fields the cache
        has beyond those expected are not compared."""
        return metadata_problems(expected_metadata, self.metadata, "cache")

    def check_compatible(self, expected_metadata: Mapping[str, Any]) -> None:
        """TargetCacheError listing every differing field (see `compatibility_problems`), else None."""
        problems = self.compatibility_problems(expected_metadata)
        if problems:
            raise TargetCacheError(f"target cache {self.path} does not match the run:\n  - " + "\n  - ".join(problems))


def metadata_problems(expected: Mapping[str, Any], actual: Mapping[str, Any], holder: str) -> list[str]:
    """Every field of `expected` (nested dicts compared key by key, as dotted names) whose value differs from or
    is missing in `actual` (stored metadata), as "field: <holder> has X, expected Y"; `actual`'s extra fields are
    not compared. Shared by the stores that refuse to serve a run they were not written for."""
    problems: list[str] = []

    def walk(want_map, have, prefix):
        for key, want in want_map.items():
            name = f"{prefix}{key}"
            if not isinstance(have, Mapping) or key not in have:
                problems.append(f"{name}: missing in the {holder}, expected {json.dumps(want)}")
            elif isinstance(want, Mapping) and isinstance(have[key], Mapping):
                walk(want, have[key], name + ".")
            elif not _same(have[key], want):
                problems.append(f"{name}: {holder} has {json.dumps(have[key])}, expected {json.dumps(want)}")

    walk(to_json(dict(expected)), actual, "")
    return problems


def _same(a, b) -> bool:
    """Equal JSON values, numbers compared with a relative tolerance of 1e-9 (floats survive JSON exactly, but
    an int and the equal float are the same setting)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b
