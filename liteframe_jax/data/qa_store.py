"""QA frame stores: the clips of video-QA records (LMA) decoded once per frame count, so training reads them
instead of decoding videos (experiments.extract_frames with an LMA config writes one; `data.frame_store` reads it).

Layout of a QA store directory (one `data.frame_store` serves every stage of a frame curriculum):
    qa_stores.json     format, version, the frame counts held, and per frame count the store's identity
    frames_<T>/        a frame store (data.frame_store) of every clip at T frames: store k = clip k

A *clip* is what a record's frames depend on besides the frame count: its video, start/end bounds and synthetic
spec. Records asking about the same clip (several questions per video, or a train file reused for eval) share
one stored clip; the clips are numbered in order of first appearance in the train records, then the eval
records (`qa_clips`). Frames are stored as `qa_pipeline.record_clip` gives them (native size), or resized to
image_size: LMA does not augment, so either serves bit-identical batches.

The directory appears only when every frame count is extracted (written under `<dir>.partial-HOST-PID-ID` and
renamed), like a single frame store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from liteframe_jax.data.frame_store import METADATA_FILE, FrameStore, FrameStoreError
from liteframe_jax.data.pipeline import DataError, refuse_changed_sources
from liteframe_jax.data.video_qa import QARecord

FORMAT = "liteframe_jax.qa_frame_stores"
VERSION = 1
INDEX_FILE = "qa_stores.json"
_SYNTHETIC = "synthetic:"


def clip_key(record: QARecord) -> str:
    """What the frames of `record` depend on, besides the frame count and sampling: video, bounds, synthetic spec."""
    return json.dumps([record.video, record.start, record.end, record.synthetic], sort_keys=True)


@dataclasses.dataclass(frozen=True, eq=False)
class QAClips:
    """The distinct clips of some record lists, by clip index: `records[k]` is the first record of clip k."""

    records: tuple[QARecord, ...]
    keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def paths(self) -> list[str]:
        """Each clip's video file ("" for synthetic clips): what source stamps are taken of."""
        return ["" if r.video.startswith(_SYNTHETIC) else r.video for r in self.records]

    def fingerprint(self) -> str:
        """sha256 over the clip keys in order: identifies the clip index space."""
        h = hashlib.sha256()
        for key in self.keys:
            h.update(key.encode() + b"\n")
        return h.hexdigest()

    def indices(self, records: Sequence[QARecord]) -> np.ndarray:
        """int64 (len(records),) clip index of each record; DataError for a record of no clip here."""
        where = {k: i for i, k in enumerate(self.keys)}
        try:
            return np.array([where[clip_key(r)] for r in records], np.int64)
        except KeyError as e:
            raise DataError(f"a record's clip is not in the frame store's clip list: {e}") from None


def qa_clips(*record_lists: Sequence[QARecord]) -> QAClips:
    """The distinct clips of the record lists (train records, then eval records), in order of first appearance."""
    first: dict[str, QARecord] = {}
    for records in record_lists:
        for r in records:
            first.setdefault(clip_key(r), r)
    return QAClips(tuple(first.values()), tuple(first))


def store_path(root, num_frames: int) -> str:
    """The frame store of `num_frames`-frame clips inside QA store directory `root`."""
    return os.path.join(os.fspath(root), f"frames_{int(num_frames)}")


def qa_store_identity(clips: QAClips, qa, frame_size) -> dict:
    """{"qa": {...}}: what the frame store of QADataConfig `qa`'s frame count holds per clip index (the clip
    list, the frame count, the sampling rule when a clip is a video file, and image_size for resized frames).
    Stored by the extraction, checked when training reads the store."""
    d = {"num_frames": qa.num_frames, "num_clips": len(clips), "clips_sha256": clips.fingerprint()}
    if any(clips.paths):  # synthetic clips are always segment-middle sampled
        d["sampling"] = qa.sampling
        if qa.sampling == "fps":
            d["fps"] = qa.fps
    if frame_size != "native":
        d["image_size"] = list(qa.image_size)
    return {"qa": d}


def read_index(root) -> dict:
    """The parsed qa_stores.json of QA store directory `root`; DataError (one line) when `root` is not one."""
    root = os.path.abspath(os.fspath(root))
    index = os.path.join(root, INDEX_FILE)
    if not os.path.isfile(index):
        if os.path.isfile(os.path.join(root, METADATA_FILE)):
            raise DataError(f"data.frame_store {root!r} is a single frame store (a CTD config's); LMA reads a QA "
                            "store directory: extract one with `experiments.extract_frames --config configs/lma.py`")
        if os.path.isdir(root):
            raise DataError(f"data.frame_store {root!r} is not a QA frame store directory: {INDEX_FILE} is missing")
        try:
            FrameStore(root)  # says that nothing is there, naming unfinished extractions
        except FrameStoreError as e:
            raise DataError(f"data.frame_store: {e}") from None
    try:
        with open(index) as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"data.frame_store: {index} is unreadable: {e}") from None
    if info.get("format") != FORMAT or info.get("version") != VERSION:
        raise DataError(f"data.frame_store: {root} is not a {FORMAT} v{VERSION} directory")
    return info


def check_qa_store(root, clips: QAClips, qa) -> str:
    """The path of the frame store in QA store directory `root` that serves QADataConfig `qa` (its frame count)
    for `clips`; DataError (one line) unless it was extracted from these clips with qa's sampling (and
    image_size, if resized), from the source files as they are now."""
    info = read_index(root)
    held = sorted(int(t) for t in info.get("num_frames", []))
    where = f"frame store {os.path.abspath(os.fspath(root))!r}"
    if qa.num_frames not in held:
        raise DataError(f"{where} holds clips of {held} frames, not {qa.num_frames}: extract it with "
                        f"--frames including {qa.num_frames} (or the curriculum of this config)")
    try:
        store = FrameStore(store_path(root, qa.num_frames))
    except FrameStoreError as e:
        raise DataError(f"data.frame_store: {e}") from None
    problems = store.mismatches(qa_store_identity(clips, qa, store.frame_size))
    if problems:
        raise DataError(f"{where} does not match the QA data at {qa.num_frames} frames (re-extract it): "
                        + "; ".join(problems))
    refuse_changed_sources(store, clips.paths, where)
    return store.path


class StoredClips:
    """Record index -> the stored clip of that record: a checked frame store (`check_qa_store`) and int64
    (num_records,) clip indices (`QAClips.indices`). Picklable (the store reopens in grain workers)."""

    def __init__(self, path: str, clip_index: np.ndarray):
        self.path, self.clip_index = path, np.asarray(clip_index, np.int64)
        self._store: FrameStore | None = None

    def __getstate__(self):
        return {**self.__dict__, "_store": None}

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """uint8 frames (T, H, W, 3) and int64 (T,) frame indices of record `i`'s clip; StoredSkip (a ValueError,
        with the reason recorded at extraction) for a clip that could not be read then."""
        if self._store is None:
            self._store = FrameStore(self.path)
        return self._store.read(int(self.clip_index[i]))


def stored_clips(root, clips: QAClips, records: Sequence[QARecord], qa) -> StoredClips:
    """The `StoredClips` of `records` at QADataConfig `qa` from QA store directory `root` (checked)."""
    return StoredClips(check_qa_store(root, clips, qa), clips.indices(records))

