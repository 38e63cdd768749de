"""The evidence ceiling: which sampled frames cover which evidence, per task and overall; and, on the synthetic
benchmarks, that covered evidence means a reader of only the sampled frames' pixels answers right (for the events
tasks: exactly then)."""

import math

import numpy as np
import pytest

from liteframe_jax.data.evidence import covers, evidence_ceiling, sampled_frames, synthetic_clip_info
from liteframe_jax.data.synthetic import PALETTE, SyntheticVideoSpec
from liteframe_jax.data.synthetic_events import EventVideoSpec
from liteframe_jax.data.video_qa import LETTERS, QARecord, build_synthetic_benchmark, synthetic_video_for

CLIP_16 = lambda record: (16, 8.0)  # noqa: E731  a 16-frame clip at 8 fps for the hand-made records


def record(evidence, task="t", **kw):
    return QARecord(video="a.mp4", question="q?", options=("x", "y", "z", "w"), answer="A", task=task,
                    evidence=evidence, **kw)


# ------------------------------------------------------------------------------------------- hand-made clips

def test_segment_middle_samples_of_a_16_frame_clip_are_known():
    assert sampled_frames(record([]), 4, clip_info=CLIP_16).tolist() == [1, 5, 9, 12]
    assert sampled_frames(record([]), 8, clip_info=CLIP_16).tolist() == [0, 2, 4, 6, 8, 9, 11, 13]


def test_a_brief_event_is_missed_by_4_frames_and_seen_by_8():
    event = record([[3, 4]])
    assert not covers(sampled_frames(event, 4, clip_info=CLIP_16), event.evidence)
    assert covers(sampled_frames(event, 8, clip_info=CLIP_16), event.evidence)


def test_every_group_must_be_hit():
    three_flashes = [[0, 1], [6, 7], [12, 13]]
    assert covers([1, 7, 12], three_flashes)
    assert not covers([1, 7, 10], three_flashes)  # the third flash is missed: two are counted
    assert covers([], []) and covers([5], [])     # nothing to see: always covered


def test_start_and_end_restrict_the_sampled_frames():
    late = record([[10]], start=1.0, end=1.5)  # 8 fps: frames 8 .. 12
    assert sampled_frames(late, 4, clip_info=CLIP_16).tolist() == [8, 9, 10, 11]
    assert covers(sampled_frames(late, 4, clip_info=CLIP_16), late.evidence)
    assert not covers(sampled_frames(record([[10]]), 4, clip_info=CLIP_16), [[10]])


def test_fixed_fps_sampling():
    assert sampled_frames(record([]), 8, sampling="fps", fps=2.0, clip_info=CLIP_16).tolist() == [0, 4, 8, 12]
    with pytest.raises(ValueError, match="sampling"):
        sampled_frames(record([]), 8, sampling="random", clip_info=CLIP_16)


def test_ceiling_per_task_and_overall_leaves_out_records_without_evidence():
    records = [record([[3, 4]], task="brief"), record([[6], [12]], task="brief"), record([list(range(16))],
                                                                                         task="static"),
               record(None, task="brief"), record(None, task="other")]
    c = evidence_ceiling(records, 4, clip_info=CLIP_16)  # frames [1, 5, 9, 12]
    assert c.per_task == {"brief": 0.0, "static": 1.0} and c.questions == {"brief": 2, "static": 1}
    assert c.overall == pytest.approx(1 / 3) and c.without_evidence == 2 and c.num_frames == 4
    c = evidence_ceiling(records, 16, clip_info=CLIP_16)
    assert c.per_task == {"brief": 1.0, "static": 1.0} and c.overall == 1.0
    empty = evidence_ceiling([record(None)], 8, clip_info=CLIP_16)
    assert empty.per_task == {} and math.isnan(empty.overall) and empty.without_evidence == 1


def test_clip_length_comes_from_the_synthetic_spec_or_must_be_given():
    r = QARecord(video="synthetic:0:1", question="q?", answer="x", evidence=[[3]],
                 synthetic={"kind": "events", "num_frames": 128})
    assert synthetic_clip_info(r) == (128, 8.0)
    assert sampled_frames(r, 8).tolist() == [7, 23, 39, 55, 71, 86, 102, 118]
    assert synthetic_clip_info(QARecord(video="synthetic:2:1", question="q?", answer="x")) == (16, 8.0)
    with pytest.raises(ValueError, match="clip_info"):
        evidence_ceiling([record([[3]])], 8)


# ------------------------------------------------------------------------------- a reader of sampled pixels

def packed(frames):
    f = frames.astype(np.int32)
    return (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]


def visible(pixels, color):
    """bool (T,): whether each frame of packed pixels (T, H, W) shows the colour."""
    r, g, b = PALETTE[color]
    return (pixels == (r << 16 | g << 8 | b)).any(axis=(1, 2))


def option_color(option):
    return option.split()[1]  # "the red square"


def letter_of(r, option):
    return LETTERS[r.options.index(option)] if option in r.options else None


def read_answer(r, pixels):
    """The answer letter a reader that sees only these frames (packed, in time order) gives at face value, or None
    when the frames leave it undecided. Covers the tasks whose answer the frames decide by colour alone."""
    if r.task == "event_count":
        seen = visible(pixels, r.question.split()[5]).astype(int)  # "How many times does the red ..."
        return letter_of(r, str(int(seen[0] + np.sum(np.diff(seen) == 1))))  # runs of frames showing it
    if r.task == "count":
        return letter_of(r, str(sum(visible(pixels, c).any() for c in PALETTE)))
    seen = {o: visible(pixels, option_color(o)) for o in r.options}
    if r.task in ("order", "event_order"):
        firsts = {o: int(np.flatnonzero(v)[0]) for o, v in seen.items() if v.any()}
        earliest = [o for o, t in firsts.items() if t == min(firsts.values())]
        return letter_of(r, earliest[0]) if len(earliest) == 1 else None
    if r.task == "event_presence":
        shown = [o for o, v in seen.items() if v.any()]
        return letter_of(r, shown[0]) if len(shown) == 1 else None
    raise AssertionError(f"no reader for {r.task}")


EVENTS = EventVideoSpec(num_frames=64, min_event_frames=2, max_event_frames=4, min_gap_frames=1, size=48)
SHAPES_SPEC = SyntheticVideoSpec(num_frames=16, size=48, max_objects=4)


@pytest.mark.parametrize("spec, tasks, exact", [
    (EVENTS, ("event_count", "event_order", "event_presence"), True),
    (SHAPES_SPEC, ("count", "order"), False),
])
def test_covered_evidence_lets_a_reader_of_the_sampled_frames_answer(spec, tasks, exact):
    records = [r for r in build_synthetic_benchmark(spec, 40, seed=1) if r.task in tasks]
    outcomes = set()
    for r in records:
        pixels = packed(synthetic_video_for(r).frames)
        for t in (2, 4, 8, 16):
            frames = sampled_frames(r, t)
            right = read_answer(r, pixels[frames]) == r.answer
            covered = covers(frames, r.evidence)
            outcomes.add((covered, right))
            if covered or exact:
                assert right == covered, (r.id, t, frames.tolist(), r.evidence)
    assert (True, True) in outcomes and (False, False) in outcomes  # both cases were exercised


# ------------------------------------------------------------------------------------- benchmark ceilings

def test_events_benchmark_needs_many_frames_and_shapes_benchmark_is_covered_by_all_frames():
    events = build_synthetic_benchmark(EventVideoSpec(), 40)
    at_8, at_64 = evidence_ceiling(events, 8), evidence_ceiling(events, 64)
    for task in ("event_count", "event_order", "event_presence"):
        assert 0.15 <= at_8.per_task[task] <= 0.7 and at_64.per_task[task] == 1.0, task
    for task in ("persistent_color", "persistent_shape"):
        assert at_8.per_task[task] == 1.0
    assert at_8.without_evidence == 0 and sum(at_8.questions.values()) == len(events)
    shapes = build_synthetic_benchmark(SyntheticVideoSpec(), 40)
    assert evidence_ceiling(shapes, 16).overall == 1.0  # every frame sampled
