"""The evidence ceiling: the share of questions whose evidence frames a T-frame sample contains.

A record's `evidence` (QARecord.evidence) lists groups of frame indices of its clip; a set S of sampled frames
covers it iff every group has a frame in S (no groups: always covered). The synthetic benchmarks choose the
groups (video_qa module doc) so that a reader who takes the sampled frames at face value (what no sampled frame
shows did not happen) answers right exactly when S covers them. The ceiling at T frames is the share of
questions covered by the T frames the pipeline would sample: how many questions the frames can answer at all. It
says nothing about guessing: a model may beat it by chance or by priors (e.g. answering 0 when nothing is seen).

Frames are sampled as `qa_pipeline.record_frames` samples video files: segment-middle (InternVL) or fixed fps,
within the record's [start, end] when it has them (record_frames renders synthetic clips whole and samples them
segment-middle; the synthetic benchmarks set no start/end, so both agree on them). A clip's frame count and fps
come from its synthetic spec, or from a `clip_info(record) -> (num_frames, fps)` the caller passes for other
videos.

    ceiling = evidence_ceiling(records, num_frames=8)
    ceiling.per_task["event_count"], ceiling.overall, ceiling.without_evidence
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from typing import Callable

import numpy as np

from liteframe_jax.data.sampling import fixed_fps_indices, segment_middle_indices
from liteframe_jax.data.video_qa import QARecord, synthetic_spec_of

ClipInfo = Callable[[QARecord], tuple[int, float]]


def synthetic_clip_info(record: QARecord) -> tuple[int, float]:
    """(frame count, fps) of a synthetic record's clip, from its spec; ValueError for other records."""
    if not record.video.startswith("synthetic:"):
        raise ValueError(f"record {record.id or record.video}: not a synthetic video, so its frame count is "
                         f"unknown here (pass clip_info)")
    spec = synthetic_spec_of(record)
    return spec.num_frames, spec.fps


def sampled_frames(record: QARecord, num_frames: int, sampling: str = "segment", fps: float = 1.0,
                   clip_info: ClipInfo = synthetic_clip_info) -> np.ndarray:
    """int64 (<= num_frames,) frame indices of the record's clip the pipeline samples: `num_frames`
    segment-middle frames, or (sampling="fps") frames at `fps` per second, at most num_frames; within the
    record's [start, end] seconds when set."""
    video_frames, video_fps = clip_info(record)
    bound = None if record.start is None else (float(record.start), float(record.end))
    if sampling == "segment":
        return segment_middle_indices(video_frames, num_frames, fps=video_fps, bound=bound)
    if sampling == "fps":
        return fixed_fps_indices(video_frames, video_fps, fps, max_frames=num_frames, bound=bound)
    raise ValueError(f"sampling must be 'segment' or 'fps', got {sampling!r}")


def covers(frames, evidence) -> bool:
    """Whether the sampled frames (any iterable of ints) hit every evidence group; True for no groups."""
    seen = {int(t) for t in frames}
    return all(not seen.isdisjoint(group) for group in evidence)


@dataclasses.dataclass(frozen=True)
class EvidenceCeiling:
    """per_task: task -> share of its questions covered; questions: task -> how many of its questions have
    evidence; overall: the share over all of them (nan when none); without_evidence: questions left out
    because they record no evidence."""

    num_frames: int
    per_task: dict[str, float]
    questions: dict[str, int]
    overall: float
    without_evidence: int


def evidence_ceiling(records, num_frames: int, sampling: str = "segment", fps: float = 1.0,
                     clip_info: ClipInfo = synthetic_clip_info) -> EvidenceCeiling:
    """The evidence ceiling of `records` at `num_frames` sampled frames (module doc), per task (sorted) and
    overall. Records without evidence are counted, not scored."""
    hits, missing = defaultdict(list), 0
    for record in records:
        if record.evidence is None:
            missing += 1
            continue
        frames = sampled_frames(record, num_frames, sampling, fps, clip_info)
        hits[record.task].append(covers(frames, record.evidence))
    every = [h for task_hits in hits.values() for h in task_hits]
    return EvidenceCeiling(
        num_frames=num_frames,
        per_task={task: float(np.mean(v)) for task, v in sorted(hits.items())},
        questions={task: len(v) for task, v in sorted(hits.items())},
        overall=float(np.mean(every)) if every else math.nan,
        without_evidence=missing)
