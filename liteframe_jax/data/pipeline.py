"""The CTD input pipeline: video examples -> augmented, normalized clip batches, as a checkpointable grain dataset.

    ds, skips = build_dataset(cfg, "train", batch_size=8)
    it = iter(ds)                 # a grain DatasetIterator
    batch = next(it)              # {"pixels": float32 (B, T, h, w, 3), "index": int64 (B,), "frame_indices": ...}
    state = it.get_state()        # small JSON-serializable dict: store it in the training checkpoint
    it.set_state(state)           # on a fresh iterator of an identically built dataset: resumes exactly

Examples come from one of three sources (`DataConfig.source`): "synthetic" (procedural moving shapes, no files),
"manifest" (a JSONL or CSV list of videos with optional start/end seconds) or "folder" (every video file under a
directory). Example k of the source has the *global example index* k (manifest line order, sorted folder paths,
synthetic video number); batches carry it as "index", and a teacher-target cache is keyed by it.

Order of work (one example per step, all numpy/PyAV, no jax in transforms):
  split indices -> shuffle (per epoch) -> repeat -> decode + crop/flip + resize + normalize (random_map, keyed by
  the position in the global stream) -> this process's slice [process_index::process_count] -> optional
  multiprocess prefetch -> drop skipped examples (main process) -> batch (drop_remainder).
Every process shuffles the same global stream and takes every process_count-th element of it, so processes never
see the same example in a step and together cover each epoch.

With `DataConfig.frame_store` the decode step reads the example's stored frames instead (data.frame_store, written
by experiments.extract_frames): same frames, frame indices and skipped examples, same crop/flip/resize draws, so the
batches are those decoding the videos would give (bit-identical for a lossless store).

Unreadable videos (missing, empty, truncated, not a video, no frames, a time bound outside the video) are skipped:
the decode step returns a marker, the main-process filter drops it and counts it in the `SkipStats` returned next
to the dataset. If the first `max_initial_failures` examples this process attempts (or all of its examples when it
has fewer) fail with no success, iteration raises `DataError` naming some of them.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import math
import operator
import os
import threading
import time
from typing import Any, ClassVar

import grain
import numpy as np

from liteframe_jax.config_base import ConfigBase
from liteframe_jax.data.frames import normalize_frames, pad_with_last
from liteframe_jax.data.synthetic import SyntheticVideoSpec, make_synthetic_video
from liteframe_jax.data.synthetic_events import EventVideoSpec, make_event_video
from liteframe_jax.data.video import VideoDecodeError, load_clip

SOURCES = ("synthetic", "manifest", "folder")
SYNTHETIC_KINDS = ("shapes", "events")
EVENT_CLIP_STRIDE = 2  # an events clip is sampled like 64 of its 128 frames (every other frame)
SAMPLINGS = ("segment", "fps")
SPLITS = ("train", "eval", "all")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_OPEN_END = 1e9  # seconds: the end of a manifest span that gives only "start"


class DataError(ValueError):
    """The data cannot be used: a bad manifest line, no examples, or nothing decodes."""


@dataclasses.dataclass(frozen=True)
class DataConfig(ConfigBase):
    """Where the videos come from and how clips are made.

    source: "synthetic" | "manifest" | "folder"; path: manifest file (.csv = CSV, anything else = JSONL) or folder.
    num_frames: T frames per clip; image_size: (h, w) output pixels.
    sampling: "segment" (InternVL's segment middles, T frames) or "fps" (frames at `fps` per second, at most T;
      shorter clips are padded by repeating the last frame, the project's shared padding rule). `fps` is only
      used by sampling="fps". Synthetic videos are rendered with exactly T frames (no sampling).
    decode_threads: FFmpeg threads per decoder (0 = auto); num_workers: grain worker processes (0 = in-process).
    shuffle, seed: shuffled order (reshuffled every epoch) and augmentation randomness; num_epochs: None = forever.
    synthetic_videos: number of synthetic videos; synthetic_size: their native (square) render size;
      synthetic_kind: "shapes" (moving shapes rendered with exactly T frames) or "events" (the long clips with
      brief events of data.synthetic_events: T frames at stride EVENT_CLIP_STRIDE from a start fixed per video).
    eval_fraction: share of videos held out for split="eval", chosen by a hash of the video id (stable across
      seeds, machines and manifest reordering; spans of one video file land in the same split).
    random_resized_crop_scale: (min, max) area fraction of a random crop (aspect 3/4..4/3) resized to image_size,
      or None; hflip: random horizontal flip. Both are drawn once per clip and applied to all of its frames.
    max_initial_failures: how many failures in a row, before any success, stop iteration with a DataError.
    frame_store: a frame store directory (experiments.extract_frames) to read the sampled frames from instead of
      decoding the videos ("" = decode); it must have been extracted from this config's examples and sampling.
    normalize_on_host: True: batches carry float32 pixels normalized here; False: uint8 pixels, normalized by the
      vision towers inside the jitted step (models.layers.model_pixels): 4x fewer bytes to the accelerator and no
      float pass on the host (the same values up to float rounding).
    """

    config_name: ClassVar[str] = "DataConfig"

    source: str = "synthetic"
    path: str = ""
    num_frames: int = 8
    image_size: tuple[int, int] = (224, 224)
    sampling: str = "segment"
    fps: float = 1.0
    decode_threads: int = 1
    num_workers: int = 0
    shuffle: bool = True
    seed: int = 0
    num_epochs: int | None = None
    synthetic_videos: int = 256
    synthetic_size: int = 112
    synthetic_kind: str = "shapes"
    eval_fraction: float = 0.1
    random_resized_crop_scale: tuple[float, float] | None = None
    hflip: bool = False
    max_initial_failures: int = 32
    frame_store: str = ""
    normalize_on_host: bool = True

    def problems(self, require_path: bool = True) -> list[str]:
        """Every problem; `require_path=False` accepts a manifest or folder source without its path yet (a plan
        made from the config alone; a run checks it)."""
        errors = []

        def integer(name, lo, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                errors.append(f"{name} must be an integer >= {lo}{' or None' if allow_none else ''}, got {v!r}")

        if self.source not in SOURCES:
            errors.append(f"source must be one of {SOURCES}, got {self.source!r}")
        elif self.source != "synthetic" and not self.path and require_path:
            errors.append(f"source={self.source!r} needs a path")
        integer("num_frames", 1)
        size = self.image_size
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size)):
            errors.append(f"image_size must be two positive integers (h, w), got {size!r}")
        if self.sampling not in SAMPLINGS:
            errors.append(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if not isinstance(self.fps, (int, float)) or not math.isfinite(self.fps) or self.fps <= 0:
            errors.append(f"fps must be a positive number, got {self.fps!r}")
        integer("decode_threads", 0)
        integer("num_workers", 0)
        integer("seed", 0)
        if isinstance(self.seed, int) and self.seed >= 2**32:
            errors.append(f"seed must be < 2**32, got {self.seed}")
        integer("num_epochs", 1, allow_none=True)
        integer("synthetic_videos", 1)
        integer("synthetic_size", 16)
        if self.synthetic_kind not in SYNTHETIC_KINDS:
            errors.append(f"synthetic_kind must be one of {SYNTHETIC_KINDS}, got {self.synthetic_kind!r}")
        elif self.synthetic_kind == "events" and self.num_frames * EVENT_CLIP_STRIDE > EventVideoSpec().num_frames:
            errors.append(f"num_frames={self.num_frames} at stride {EVENT_CLIP_STRIDE} does not fit in an events "
                          f"clip of {EventVideoSpec().num_frames} frames")
        integer("max_initial_failures", 1)
        if not isinstance(self.eval_fraction, (int, float)) or not 0 <= self.eval_fraction < 1:
            errors.append(f"eval_fraction must be in [0, 1), got {self.eval_fraction!r}")
        scale = self.random_resized_crop_scale
        if scale is not None:
            ok = isinstance(scale, (tuple, list)) and len(scale) == 2
            if not ok or not all(isinstance(v, (int, float)) for v in scale) or not 0 < scale[0] <= scale[1] <= 1:
                errors.append(f"random_resized_crop_scale must be None or (min, max) with 0 < min <= max <= 1, "
                              f"got {scale!r}")
        if not isinstance(self.frame_store, str):
            errors.append(f"frame_store must be a path (str), got {self.frame_store!r}")
        for name in ("shuffle", "hflip"):
            if not isinstance(getattr(self, name), bool):
                errors.append(f"{name} must be a bool, got {getattr(self, name)!r}")
        return errors

    @property
    def augments(self) -> bool:
        """Whether this config asks for any augmentation."""
        return self.random_resized_crop_scale is not None or self.hflip

    @classmethod
    def _coerce(cls, fields: dict) -> dict:
        scale = fields.get("random_resized_crop_scale")
        if isinstance(scale, tuple) and all(v is None for v in scale):
            # `--config.data.random_resized_crop_scale=None` reaches a tuple-typed ConfigDict field as (None,)
            fields["random_resized_crop_scale"] = None
        return fields


@dataclasses.dataclass
class SkipStats:
    """Examples skipped by one dataset (all its iterators, this process only): `count`, the first
    `max_examples` of them as "path: reason" strings in `examples`, and `succeeded` (examples delivered). Not part
    of the iterator state: a resumed run counts from zero again (add the count saved with the checkpoint)."""

    count: int = 0
    succeeded: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)
    max_examples: int = 20

    def record(self, message: str) -> None:
        self.count += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(printable(message))

    def summary(self) -> str:
        shown = "; ".join(self.examples[:5])
        return f"{self.count} skipped, {self.succeeded} delivered" + (f" (e.g. {shown})" if shown else "")


def printable(text: str) -> str:
    """`text` with the undecodable bytes of non-UTF-8 file names (surrogate-escaped by the os module) written as
    \\xNN escapes, so it can be printed and logged."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclasses.dataclass(frozen=True, eq=False)
class Examples:
    """The example list of a config, by global example index: video ids (split hashing, fingerprints), file paths
    ("" for synthetic) and time bounds float64 (N, 2) in seconds (NaN = whole video)."""

    video_ids: tuple[str, ...]
    paths: tuple[str, ...]
    bounds: np.ndarray

    def __len__(self) -> int:
        return len(self.video_ids)

    def fingerprint(self) -> str:
        """sha256 over (video id, bounds) in order: identifies the example index space, not where files live."""
        h = hashlib.sha256()
        for vid, (t0, t1) in zip(self.video_ids, self.bounds.tolist()):
            h.update(json.dumps([vid, None if math.isnan(t0) else t0, None if math.isnan(t1) else t1]).encode())
        return h.hexdigest()


def _parse_bound(start, end, where: str) -> tuple[float, float]:
    """(start, end) seconds from optional manifest values (None/"" = open), or DataError naming `where`."""
    def num(name, v):
        if v is None or v == "":
            return None
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{where}: {name} must be a number of seconds, got {v!r}") from None
        if not math.isfinite(x) or x < 0:
            raise DataError(f"{where}: {name} must be finite and >= 0, got {v!r}")
        return x

    t0, t1 = num("start", start), num("end", end)
    if t0 is None and t1 is None:
        return math.nan, math.nan
    t0, t1 = t0 or 0.0, _OPEN_END if t1 is None else t1
    if t1 < t0:
        raise DataError(f"{where}: end ({t1}) is before start ({t0})")
    return t0, t1


def _manifest_rows(path: str) -> list[tuple[int, str, Any, Any]]:
    """(line number, video, start, end) of every entry of a JSONL or CSV manifest; DataError naming bad lines."""
    rows, errors = [], []
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DataError(f"manifest {path}: line {line}: not valid UTF-8 ({e.reason} at byte {e.start}); "
                        "write the manifest in UTF-8") from None
    with io.StringIO(text, newline="") as f:
        if path.lower().endswith(".csv"):
            reader = csv.DictReader(f)
            if not reader.fieldnames or "video" not in [c.strip() for c in reader.fieldnames]:
                raise DataError(f"manifest {path}: the CSV header must contain a 'video' column, "
                                f"got {reader.fieldnames}")
            for row in reader:
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str) or v is None}
                if not any(row.values()):
                    continue
                if not row.get("video"):
                    errors.append(f"line {reader.line_num}: empty 'video'")
                else:
                    rows.append((reader.line_num, row["video"], row.get("start"), row.get("end")))
        else:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as e:
                    errors.append(f"line {n}: malformed JSON ({e.msg})")
                    continue
                if not isinstance(entry, dict) or not isinstance(entry.get("video"), str) or not entry["video"]:
                    errors.append(f"line {n}: needs a non-empty string 'video', got {line.strip()[:80]!r}")
                    continue
                rows.append((n, entry["video"], entry.get("start"), entry.get("end")))
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise DataError(f"manifest {path}: " + "; ".join(errors[:10]) + more)
    return rows


def load_examples(cfg: DataConfig) -> Examples:
    """The config's examples in global-index order. DataError for a missing/malformed manifest (naming the line)
    or folder, or no examples at all. Relative manifest paths resolve against the manifest's directory."""
    if cfg.source == "synthetic":
        n = cfg.synthetic_videos
        return Examples(tuple(f"synthetic:{i}" for i in range(n)), ("",) * n, np.full((n, 2), np.nan))
    path = os.fspath(cfg.path)
    ids, paths, bounds = [], [], []
    if cfg.source == "manifest":
        if not os.path.isfile(path):
            raise DataError(f"manifest {path!r} does not exist")
        base = os.path.dirname(os.path.abspath(path))
        for n, video, start, end in _manifest_rows(path):
            bounds.append(_parse_bound(start, end, f"manifest {path}: line {n}"))
            ids.append(video)
            paths.append(video if os.path.isabs(video) else os.path.join(base, video))
    else:
        if not os.path.isdir(path):
            raise DataError(f"video folder {path!r} does not exist")
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found += [os.path.join(root, f) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
        for p in sorted(found, key=lambda p: os.path.relpath(p, path)):
            ids.append(os.path.relpath(p, path).replace(os.sep, "/"))
            paths.append(p)
            bounds.append((math.nan, math.nan))
    if not ids:
        raise DataError(f"{cfg.source} {path!r} lists no videos"
                        + (f" (looked for {', '.join(VIDEO_EXTENSIONS)})" if cfg.source == "folder" else ""))
    return Examples(tuple(ids), tuple(paths), np.asarray(bounds, np.float64).reshape(-1, 2))


def _in_eval(video_id: str, fraction: float) -> bool:
    if fraction <= 0:
        return False
    # os.fsencode: a file name that is not UTF-8 (surrogate-escaped by os.walk) hashes as its bytes on disk
    h = int.from_bytes(hashlib.sha256(os.fsencode(video_id)).digest()[:8], "big")
    return h / 2**64 < fraction


def split_indices(cfg: DataConfig, split: str, examples: Examples | None = None) -> np.ndarray:
    """Sorted global example indices int64 (n,) of split "train", "eval" (a video-id hash below eval_fraction)
    or "all"."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    examples = load_examples(cfg) if examples is None else examples
    if split == "all":
        return np.arange(len(examples), dtype=np.int64)
    held = np.array([_in_eval(v, cfg.eval_fraction) for v in examples.video_ids], bool)
    return np.flatnonzero(held if split == "eval" else ~held).astype(np.int64)


def cache_identity(cfg: DataConfig, examples: Examples | None = None) -> dict[str, Any]:
    """{"data": {...}}: the data fields that determine teacher targets per global index. A target cache written for
    `cfg` should include these (e.g. metadata={"data": {**cfg.to_dict(), **cache_identity(cfg)["data"]}, ...});
    `build_dataset(cache=...)` checks them with `TargetCache.check_compatible`."""
    examples = load_examples(cfg) if examples is None else examples
    d: dict[str, Any] = {"source": cfg.source, "num_frames": cfg.num_frames, "image_size": list(cfg.image_size),
                         "num_examples": len(examples), "examples_sha256": examples.fingerprint()}
    if cfg.source == "synthetic":
        d["synthetic_size"] = cfg.synthetic_size
        if cfg.synthetic_kind != "shapes":  # absent for shapes, so caches written before the field stay valid
            d["synthetic_kind"] = cfg.synthetic_kind
    else:
        d["sampling"] = cfg.sampling
        if cfg.sampling == "fps":
            d["fps"] = cfg.fps
    return {"data": d}


def frame_store_identity(cfg: DataConfig, frame_size, examples: Examples | None = None) -> dict[str, Any]:
    """{"data": {...}}: what a frame store of `cfg` holds per global index (`cache_identity` without image_size
    for a store of native-size frames, which any image_size can be resized from). Stored by
    experiments.extract_frames, checked by `build_dataset` when cfg.frame_store is set."""
    d = cache_identity(cfg, examples)["data"]
    if frame_size == "native":
        del d["image_size"]
    return {"data": d}


def event_clip(index: int, num_frames: int, size: int) -> np.ndarray:
    """uint8 (T, size, size, 3): T frames at stride EVENT_CLIP_STRIDE of events video `index`, from a start
    that is a fixed function of the index (so a teacher-target cache stays valid) spread over the clip."""
    frames = make_event_video(index, EventVideoSpec(size=size)).frames
    span = (num_frames - 1) * EVENT_CLIP_STRIDE + 1
    start = (index * 7919) % (len(frames) - span + 1)
    return frames[start:start + span:EVENT_CLIP_STRIDE]


def random_resized_crop_box(height: int, width: int, scale: tuple[float, float], rng: np.random.Generator,
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (x0, y0, x1, y1) in an image of height x width: area fraction in
    `scale`, aspect ratio log-uniform in `ratio`; after 10 failed draws a centre crop with clamped aspect."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            return x0, y0, x0 + w, y0 + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    y0, x0 = (height - h) // 2, (width - w) // 2
    return x0, y0, x0 + w, y0 + h


def crop_resize(frames: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int] | None = None,
                flip: bool = False) -> np.ndarray:
    """uint8 (F, H, W, 3) -> uint8 (F, h, w, 3): the same `box` (x0, y0, x1, y1; None = whole frame) of every frame,
    bicubic-resized (Pillow, as InternVL) to size=(h, w), then mirrored left-right if `flip`."""
    from PIL import Image

    h, w = size
    full = box is None or tuple(box) == (0, 0, frames.shape[2], frames.shape[1])
    if full and frames.shape[1:3] == (h, w):
        out = frames
    else:
        out = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC,
                                                             box=None if full else tuple(box))) for f in frames])
    return np.ascontiguousarray(out[:, :, ::-1]) if flip else out


def native_clip(cfg: DataConfig, examples: Examples, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Example `index` decoded as the pipeline decodes it: uint8 frames (T, H0, W0, 3) at native size and their
    int64 (T,) frame indices (-1 for synthetic). VideoDecodeError / ValueError when it cannot be read."""
    t = cfg.num_frames
    if cfg.source == "synthetic" and cfg.synthetic_kind == "events":
        return event_clip(index, t, cfg.synthetic_size), np.full((t,), -1, np.int64)
    if cfg.source == "synthetic":
        video = make_synthetic_video(index, SyntheticVideoSpec(num_frames=t, size=cfg.synthetic_size))
        return video.frames, np.full((t,), -1, np.int64)
    t0, t1 = examples.bounds[index]
    bound = None if math.isnan(t0) else (float(t0), float(t1))
    frames, idx = load_clip(examples.paths[index], t, size=None, sampling=cfg.sampling,
                            fps=cfg.fps if cfg.sampling == "fps" else None, bound=bound, threads=cfg.decode_threads)
    # fps sampling of a short span: pad by repeating the last frame
    return pad_with_last(frames, t), pad_with_last(idx, t).astype(np.int64)


def skip_reason(e: ValueError) -> str:
    """Why an example was skipped, from the error `native_clip` (or a frame store) raised."""
    return e.reason if isinstance(e, VideoDecodeError) else str(e)


class ClipLoader(grain.transforms.RandomMap):
    """Global example index -> {"pixels": float32 (T, h, w, 3) normalized (uint8 with normalize_on_host=False),
    "index": int64 (), "frame_indices":
    int64 (T,) (-1 for synthetic), and "targets" float32 (T', H', W', C) with a cache}; or, when the video cannot
    be read, a marker {"skipped": "path: reason", "index": int64 ()}. Picklable; numpy/PyAV only (runs in grain
    workers). The rng (one per clip) draws one crop box and one flip for all frames."""

    def __init__(self, cfg: DataConfig, examples: Examples, augment: bool, cache_path: str | None = None):
        self.cfg, self.examples, self.augment, self.cache_path = cfg, examples, augment, cache_path
        self._cache = self._store = None

    def __getstate__(self):
        return {**self.__dict__, "_cache": None, "_store": None}

    def _native(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 frames (T, H0, W0, 3) and their int64 (T,) frame indices: decoded, or read from the frame store
        (native size, or already at image_size for a resized store)."""
        if not self.cfg.frame_store:
            return native_clip(self.cfg, self.examples, index)
        from liteframe_jax.data.frame_store import FrameStore

        if self._store is None:
            self._store = FrameStore(self.cfg.frame_store)
        return self._store.read(index)

    def random_map(self, element, rng: np.random.Generator) -> dict:
        index = int(element)
        try:
            frames, frame_indices = self._native(index)
        except (VideoDecodeError, ValueError) as e:  # ValueError: e.g. a manifest span outside the video
            return {"skipped": f"{self.examples.paths[index]}: {skip_reason(e)}", "index": np.int64(index)}
        box, flip = None, False
        if self.augment and self.cfg.random_resized_crop_scale is not None:
            box = random_resized_crop_box(frames.shape[1], frames.shape[2], self.cfg.random_resized_crop_scale, rng)
        if self.augment and self.cfg.hflip:
            flip = bool(rng.random() < 0.5)
        pixels = crop_resize(frames, tuple(self.cfg.image_size), box, flip)
        if self.cfg.normalize_on_host:
            pixels = normalize_frames(pixels)
        out = {"pixels": pixels, "index": np.int64(index), "frame_indices": frame_indices}
        if self.cache_path is not None:
            return self._attach_targets(out)
        return out

    def _attach_targets(self, out: dict) -> dict:
        from liteframe_jax.data.target_cache import TargetCache

        if self._cache is None:
            self._cache = TargetCache(self.cache_path, allow_partial=True)
        index = int(out["index"])
        if not self._cache.is_written(index):
            return {"skipped": f"{self.examples.paths[index] or self.examples.video_ids[index]}: no cached target "
                               f"in {self.cache_path}", "index": out["index"]}
        targets, cached_idx = self._cache.read([index])
        if (cached_idx[0] >= 0).all() and not np.array_equal(cached_idx[0], out["frame_indices"]):
            raise DataError(f"example {index} ({self.examples.paths[index]}): the target cache was computed on frames "
                            f"{cached_idx[0].tolist()} but the video now gives {out['frame_indices'].tolist()}; "
                            "the video or the sampling changed since the cache was written")
        out["targets"] = targets[0]
        return out


class DropSkipped(grain.transforms.Filter):
    """Main-process filter: drops skip markers into `stats`; raises DataError when the first `limit` attempts all
    failed (nothing decodes)."""

    def __init__(self, stats: SkipStats, limit: int):
        self.stats, self.limit = stats, limit

    def filter(self, element) -> bool:
        if "skipped" not in element:
            self.stats.succeeded += 1
            return True
        self.stats.record(str(element["skipped"]))
        if self.stats.succeeded == 0 and self.stats.count >= self.limit:
            shown = "\n  - ".join(self.stats.examples[:8])
            raise DataError(f"no example could be read: the first {self.stats.count} attempted all failed, e.g.\n"
                            f"  - {shown}")
        return False


def _worker_init(worker_index: int, worker_count: int) -> None:
    """Keep grain worker processes off accelerators: they only decode, and a worker that initialised the GPU
    backend would take device memory (or the TPU lock) from the trainer. And make them exit with their parent."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    _exit_with_parent()


def _exit_with_parent(poll_seconds: float = 0.5) -> None:
    """Ends this process soon after its parent dies (kill -9, OOM killer, a scheduler's SIGKILL): the orphan would
    otherwise keep decoding into a queue nobody reads, holding memory for minutes. A daemon thread watches the
    parent pid (re-parenting changes it)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _ensure_absl_flags_parsed() -> None:
    """grain reads its options from absl flags, in workers too, and fails on unparsed flags; outside absl.app.run
    (tests, notebooks) mark them parsed with their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _to_iter(ds: grain.MapDataset, num_workers: int) -> grain.IterDataset:
    """`ds` read by up to 4 threads of this process, or (num_workers > 0) prefetched by grain worker processes."""
    threads = 1 if num_workers else max(1, min(4, os.cpu_count() or 1))
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(threads, 4)))
    if num_workers:
        _ensure_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers, per_worker_buffer_size=2),
                                  worker_init_fn=_worker_init)
    return it_ds


def build_dataset(cfg: DataConfig, split: str, batch_size: int, process_index: int = 0, process_count: int = 1,
                  augment: bool = True, cache: str | None = None,
                  drop_remainder: bool = True) -> tuple[grain.IterDataset, SkipStats]:
    """-> (dataset, skip_stats). Iterating the dataset yields this process's batches:
    {"pixels": float32 (B, T, h, w, 3) normalized by `normalize_frames` (uint8 RGB when cfg.normalize_on_host is
    False), "index": int64 (B,) global example
    indices, "frame_indices": int64 (B, T) decoded frame numbers (-1 for synthetic), and with `cache`
    "targets": float32 (B, T', H', W', C) read from the teacher-target cache by example index}.

    split: "train" (shuffled if cfg.shuffle, augmented if `augment` and the config asks for it), "eval" (held-out
    videos, in index order, never shuffled or augmented) or "all" (every example, unshuffled, unaugmented: for
    writing a target cache; use drop_remainder=False and num_epochs=1 there). Every split repeats cfg.num_epochs
    times (None = forever). Deterministic given (cfg, split, batch_size, process_index, process_count).

    Resume: `iter(dataset)` returns a grain DatasetIterator; `it.get_state()` is a small JSON-serializable dict
    (stream positions, no data) and `it.set_state(state)` on a fresh iterator of a dataset built with the same
    arguments continues exactly. The state's layout depends on num_workers (0 vs N workers): resume with the same
    num_workers. `skip_stats` counts the examples this dataset skipped (see SkipStats); it is not in the state.

    cache: a `target_cache.TargetCache` directory; its metadata must match `cache_identity(cfg)`. Examples
    without a cached target are skipped like unreadable videos. cfg.frame_store: read frames from that store,
    which must match `frame_store_identity(cfg)` and whose source files, where present, must be unchanged.
    Raises ValueError when augmentation is requested with a cache, for a bad config or arguments; DataError for
    unusable data (bad manifest line, no examples, incompatible cache or frame store).
    """
    cfg.validate()
    if operator.index(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index < process_count, got {process_index}, {process_count}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    augment = bool(augment) and split == "train" and cfg.augments
    if cache is not None and augment:
        raise ValueError("a target cache holds targets of un-augmented frames: build the dataset with augment=False "
                         "or set random_resized_crop_scale=None and hflip=False")
    examples = load_examples(cfg)
    indices = split_indices(cfg, split, examples)
    if len(indices) < process_count:
        raise DataError(f"split {split!r} has {len(indices)} examples, fewer than the {process_count} processes"
                        + (" (raise eval_fraction or add videos)" if split == "eval" else ""))
    if cache is not None:
        _check_cache(cache, cfg, examples)
    if cfg.frame_store:
        _check_store(cfg, examples, augment)
    per_process = len(range(process_index, len(indices), process_count))
    if cfg.num_epochs is not None and drop_remainder and per_process * cfg.num_epochs < batch_size:
        raise DataError(f"split {split!r} gives this process {per_process} examples x {cfg.num_epochs} epochs, "
                        f"fewer than one batch of {batch_size}")

    ds = grain.MapDataset.source(indices)
    if split == "train" and cfg.shuffle:
        ds = ds.shuffle(seed=cfg.seed)
    ds = ds.repeat(cfg.num_epochs)
    ds = ds.random_map(ClipLoader(cfg, examples, augment, None if cache is None else os.fspath(cache)),
                       seed=(cfg.seed + 1) % 2**32)
    ds = ds[process_index::process_count]
    it_ds = _to_iter(ds, cfg.num_workers)
    stats = SkipStats()
    it_ds = it_ds.filter(DropSkipped(stats, limit=min(cfg.max_initial_failures, per_process)))
    return it_ds.batch(batch_size, drop_remainder=drop_remainder), stats


class _StoreExample(grain.transforms.Map):
    """Example index -> {"index", "frames" uint8 (T, H, W, 3), "frame_indices" int64 (T,), "source" int64 (2,)}
    or {"index", "skipped": reason, "source"}: what a frame store holds of the example. read(index) -> (native
    frames, frame indices); `errors`: what it raises for an unreadable example."""

    def __init__(self, read, paths, frame_size, errors):
        self.read, self.paths, self.frame_size, self.errors = read, paths, frame_size, errors

    def map(self, element) -> dict:
        from liteframe_jax.data.frame_store import source_stamp

        index = int(element)
        source = np.asarray(source_stamp(self.paths[index]), np.int64)  # stamped before decoding
        try:
            frames, frame_indices = self.read(index)
        except self.errors as e:
            return {"index": np.int64(index), "skipped": skip_reason(e), "source": source}
        if self.frame_size != "native":
            frames = crop_resize(frames, tuple(self.frame_size))
        return {"index": np.int64(index), "frames": frames, "frame_indices": frame_indices, "source": source}


def store_stream(read, paths, frame_size, num_workers: int = 0,
                 errors: tuple[type[Exception], ...] = (VideoDecodeError, ValueError)) -> grain.IterDataset:
    """Examples 0 .. len(paths) - 1 in order, as a frame store holds them (see `_StoreExample`): read(index) ->
    (uint8 frames (T, H0, W0, 3), int64 (T,) frame indices) at native size (picklable), paths[index] the file
    stamped as its source ("" = none); kept at native size (frame_size="native") or resized to frame_size=(h, w)
    as the pipelines resize, never augmented; `num_workers` grain processes decode in parallel."""
    ds = grain.MapDataset.source(np.arange(len(paths), dtype=np.int64))
    ds = ds.map(_StoreExample(read, tuple(paths), frame_size, errors))
    return _to_iter(ds, num_workers)


def store_examples(cfg: DataConfig, frame_size, examples: Examples | None = None) -> grain.IterDataset:
    """Every example of `cfg` in global index order, as a frame store holds it (`store_stream`): decoded as
    the pipeline decodes (`native_clip`), cfg.num_workers grain processes in parallel. What
    experiments.extract_frames writes."""
    examples = load_examples(cfg) if examples is None else examples
    read = functools.partial(native_clip, cfg.replace(frame_store=""), examples)
    return store_stream(read, examples.paths, frame_size, cfg.num_workers)


def _check_cache(path, cfg: DataConfig, examples: Examples) -> None:
    """DataError unless the cache at `path` was written for this config's examples and clip shape."""
    from liteframe_jax.data.target_cache import TargetCache

    c = TargetCache(path, allow_partial=True)
    problems = []
    if len(c) != len(examples):
        problems.append(f"it holds {len(c)} examples, the data has {len(examples)}")
    if c.num_frames != cfg.num_frames:
        problems.append(f"it was written for num_frames={c.num_frames}, the data has {cfg.num_frames}")
    problems += c.compatibility_problems(cache_identity(cfg, examples))
    if problems:
        raise DataError(f"target cache {os.fspath(path)!r} does not match the data config: " + "; ".join(problems))


def _check_store(cfg: DataConfig, examples: Examples, augment: bool) -> None:
    """DataError unless the frame store cfg.frame_store was extracted from this config's examples and sampling,
    from the source files as they are now, at a frame size that serves the config (and its augmentation)."""
    from liteframe_jax.data.frame_store import FrameStore, FrameStoreError
    from liteframe_jax.data.qa_store import INDEX_FILE

    if os.path.isfile(os.path.join(cfg.frame_store, INDEX_FILE)):
        raise DataError(f"data.frame_store {cfg.frame_store!r} is a QA frame store directory (an LMA config's); CTD "
                        "reads a single frame store: extract one with `experiments.extract_frames --config "
                        "configs/ctd.py`")
    try:
        store = FrameStore(cfg.frame_store)
    except FrameStoreError as e:
        raise DataError(f"data.frame_store: {e}") from None
    where = f"frame store {store.path!r}"
    problems = []
    if len(store) != len(examples):
        problems.append(f"it holds {len(store)} examples, the data has {len(examples)}")
    if store.num_frames != cfg.num_frames:
        problems.append(f"it holds {store.num_frames} frames per clip, the data asks for {cfg.num_frames}")
    problems += store.mismatches(frame_store_identity(cfg, store.frame_size, examples))
    if problems:
        raise DataError(f"{where} does not match the data config (re-extract it): " + "; ".join(problems))
    if augment and cfg.random_resized_crop_scale is not None and store.frame_size != "native":
        raise DataError(f"{where} holds frames already resized to {list(store.frame_size)}; random_resized_crop "
                        "crops the native frames: extract with --frame_size=native or set "
                        "data.random_resized_crop_scale=None")
    refuse_changed_sources(store, examples.paths, where)


def refuse_changed_sources(store, paths, where: str) -> None:
    """DataError unless every source file of frame store `store` (paths[k]: example k's, "" = none) that exists
    now is the version it was extracted from (same size and modification time)."""
    changed = list(dict.fromkeys(store.changed_sources(paths)))  # a file of several examples (spans) once
    if changed:
        shown = ", ".join(printable(p) for p in changed[:3]) + (", ..." if len(changed) > 3 else "")
        raise DataError(f"{where} was extracted from other versions of {len(changed)} source video(s) (size or "
                        f"modification time changed since), e.g. {shown}; re-extract it")
