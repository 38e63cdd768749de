"""The events benchmark: every answer is checked against the rendered pixels and is unambiguous, evidence groups
are the frames that show it, splits are disjoint and deterministic, records round-trip through JSON and
re-render the identical clip."""

import dataclasses
import json

import numpy as np
import pytest

from liteframe_jax.data.synthetic import PALETTE, SHAPES, SyntheticVideoSpec, shape_mask
from liteframe_jax.data.synthetic_events import EventVideoSpec, make_event_video
from liteframe_jax.data.video_qa import (LETTERS, QARecord, build_synthetic_benchmark, chance_level,
                                         read_records, synthetic_spec, synthetic_splits, synthetic_video_for,
                                         unused_colors, write_records)

SPEC = EventVideoSpec(num_frames=80, size=64, min_event_frames=2, max_event_frames=5, min_gap_frames=2, seed=2)
NUM_VIDEOS = 40
TASKS = {"event_count", "event_order", "event_presence", "persistent_color", "persistent_shape", "flash_color",
         "flash_count"}
NUM_OPTIONS = {"persistent_shape": 3, "event_presence": 3}  # else 4; presence: the clip leaves 2 unused colours


@pytest.fixture(scope="module")
def records():
    return build_synthetic_benchmark(SPEC, NUM_VIDEOS, seed=3)


@pytest.fixture(scope="module")
def clips():
    """video id -> int32 frames (T, H, W, 3) of the benchmark's clips."""
    return {v.video_id: v.frames.astype(np.int32) for v in (make_event_video(i, SPEC) for i in range(NUM_VIDEOS))}


@pytest.fixture(scope="module")
def flashed(clips):
    """video id -> (the one colour that covers most of some frame's border, bool (T,) those frames), from the
    pixels (a large event never reaches the border, the persistent object covers less than half of it)."""
    out = {}
    for video_id, f in clips.items():
        border = np.concatenate([f[:, 0], f[:, -1], f[:, 1:-1, 0], f[:, 1:-1, -1]], axis=1)  # (T, 4 (S - 1), 3)
        share = {c: (np.abs(border - np.asarray(rgb)).max(-1) <= SPEC.background_noise).mean(axis=1)
                 for c, rgb in PALETTE.items()}  # per frame, the share of border pixels of that colour (+- texture)
        (color,) = [c for c in PALETTE if share[c].max() > 0.5]
        out[video_id] = color, share[color] > 0.5
    return out


@pytest.fixture(scope="module")
def shown(clips):
    """video id -> {colour: bool (T,) frames showing it}, read from the pixels."""
    out = {}
    for video_id, f in clips.items():
        pixels = (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]
        out[video_id] = {c: (pixels == (r << 16 | g << 8 | b)).any(axis=(1, 2)) for c, (r, g, b) in PALETTE.items()}
    return out


def by_task(records, task):
    return [r for r in records if r.task == task]


def answer_text(r):
    return r.options[LETTERS.index(r.answer)]


def runs(seen):
    """[(start, end)] of the runs of True in a bool (T,) array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], seen.astype(int), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def color_of(option):
    return option.split()[1]  # "the red square"


# ------------------------------------------------------------------------------------------------ questions

def test_every_clip_gets_one_question_per_task(records):
    assert len(records) == len(TASKS) * NUM_VIDEOS
    for i in range(NUM_VIDEOS):
        assert {r.task for r in records if r.video == f"synthetic:2:{i}"} == TASKS


def test_options_hold_the_answer_exactly_once(records):
    for r in records:
        assert len(set(r.options)) == len(r.options) == NUM_OPTIONS.get(r.task, 4), r.id
        assert r.options.count(answer_text(r)) == 1


def test_count_answer_is_the_number_of_separate_appearances(records, shown):
    answers = set()
    for r in by_task(records, "event_count"):
        color = r.question.removeprefix("How many times does the ").split()[0]
        assert int(answer_text(r)) == len(runs(shown[r.video][color])), r.id
        assert sorted(r.options) == ["0", "1", "2", "3"]
        answers.add(answer_text(r))
    assert answers == {"0", "1", "2", "3"}


def test_order_answer_is_the_only_option_seen_first(records, shown):
    for r in by_task(records, "event_order"):
        first = {o: np.flatnonzero(shown[r.video][color_of(o)]) for o in r.options}
        answer = first.pop(answer_text(r))
        assert len(runs(shown[r.video][color_of(answer_text(r))])) == 1, r.id
        assert all(f.size == 0 or answer[-1] < f[0] for f in first.values()), r.id  # over before the next starts
        assert sum(f.size == 0 for f in first.values()) == 1  # two other one-off objects and one absent


def test_presence_answer_is_the_only_option_in_the_video(records, shown):
    for r in by_task(records, "event_presence"):
        present = [o for o in r.options if shown[r.video][color_of(o)].any()]
        assert present == [answer_text(r)], r.id
        assert not shown[r.video][color_of(answer_text(r))].all()  # a brief event, not the persistent object



def test_unused_colours_are_those_no_pixel_and_no_flash_of_the_clip_shows_nor_the_count_asks_about(shown, flashed):
    for i in range(NUM_VIDEOS):
        video = make_event_video(i, SPEC)
        seen = {c for c, frames in shown[video.video_id].items() if frames.any()} | {flashed[video.video_id][0]}
        seen.add(video.repeated[0])  # the count question's object, even in a clip where it appears 0 times
        assert unused_colors(video) == [c for c in PALETTE if c not in seen], video.video_id
        hidden = make_event_video(i, dataclasses.replace(SPEC, show_persistent=False))
        assert unused_colors(hidden) == [c for c in PALETTE if c not in seen - {video.persistent.color}]

def test_flash_answers_are_the_colour_filling_the_frame_and_its_separate_runs(records, flashed):
    counts = set()
    for r in by_task(records, "flash_color"):
        color, frames = flashed[r.video]
        assert answer_text(r) == color and frames.any(), r.id
    for r in by_task(records, "flash_count"):
        assert int(answer_text(r)) == len(runs(flashed[r.video][1])), r.id
        assert sorted(r.options) == ["1", "2", "3", "4"]
        counts.add(answer_text(r))
    assert counts == {"1", "2", "3", "4"}


def test_persistent_answers_are_the_object_visible_in_every_frame(records, shown):
    for r in by_task(records, "persistent_color"):
        assert shown[r.video][answer_text(r)].all(), r.id
        assert [c for c, s in shown[r.video].items() if s.all()] == [answer_text(r)]
    for r in by_task(records, "persistent_shape"):
        v = synthetic_video_for(r)
        x0, y0, x1, y1 = v.persistent.box
        mask = np.all(v.frames[0, y0:y1, x0:x1] == PALETTE[r.question.split()[4]], axis=-1)
        assert [s for s in SHAPES if np.array_equal(mask, shape_mask(s, x1 - x0))] == [answer_text(r)], r.id


def test_answers_are_spread_over_letters_and_chance_is_a_quarter(records):
    four = [r.answer for r in records if len(r.options) == 4]
    assert min(four.count(x) for x in "ABCD") >= len(four) / 10
    levels = chance_level(records)
    assert levels["event_count"] == pytest.approx(0.25) and levels["persistent_shape"] == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------------------- evidence

def test_count_evidence_is_each_appearance_and_each_gap_between_two(records, shown):
    for r in by_task(records, "event_count"):
        appearances = runs(shown[r.video][r.question.split()[5]])
        gaps = [(a[1], b[0]) for a, b in zip(appearances, appearances[1:])]
        assert r.evidence == tuple(tuple(range(s, e)) for s, e in appearances + gaps), r.id


def test_order_and_presence_evidence_is_the_answer_objects_frames(records, shown):
    for r in by_task(records, "event_order") + by_task(records, "event_presence"):
        assert r.evidence == (tuple(np.flatnonzero(shown[r.video][color_of(answer_text(r))]).tolist()),), r.id


def test_flash_evidence_is_any_flash_for_the_colour_and_each_flash_and_gap_for_the_count(records, flashed):
    for r in by_task(records, "flash_color"):
        assert r.evidence == (tuple(np.flatnonzero(flashed[r.video][1]).tolist()),), r.id
    for r in by_task(records, "flash_count"):
        flashes = runs(flashed[r.video][1])
        gaps = [(a[1], b[0]) for a, b in zip(flashes, flashes[1:])]
        assert r.evidence == tuple(tuple(range(s, e)) for s, e in flashes + gaps), r.id


def test_persistent_evidence_is_every_frame(records):
    for r in by_task(records, "persistent_color") + by_task(records, "persistent_shape"):
        assert r.evidence == (tuple(range(SPEC.num_frames)),)


# ---------------------------------------------------------------------------------- splits, JSON, re-render

def test_splits_are_disjoint_deterministic_and_independent_of_each_others_size():
    train, test = synthetic_splits(SPEC, train_videos=4, test_videos=3, seed=1)
    assert {r.video for r in train}.isdisjoint({r.video for r in test})
    assert len({r.video for r in train}) == 4 and len({r.video for r in test}) == 3
    assert (train, test) == synthetic_splits(SPEC, 4, 3, seed=1)
    bigger_train, same_test = synthetic_splits(SPEC, 6, 3, seed=1)
    assert same_test == test and bigger_train[:len(train)] == train
    assert synthetic_splits(SPEC, 4, 3, seed=2)[0] != train
    assert synthetic_splits(dataclasses.replace(SPEC, seed=3), 4, 3, seed=1)[0] != train


def test_records_round_trip_through_jsonl_and_re_render_the_identical_clip(records, tmp_path):
    path = tmp_path / "events.jsonl"
    write_records(path, records[:10])
    back, errors = read_records(path)
    assert back == records[:10] and errors == []
    r = back[7]
    assert r.synthetic == {**dataclasses.asdict(SPEC), "kind": "events"}
    np.testing.assert_array_equal(synthetic_video_for(r).frames, make_event_video(7 // len(TASKS), SPEC).frames)


def test_benchmarks_are_chosen_by_name():
    assert synthetic_spec("events", num_frames=128, seed=4) == EventVideoSpec(num_frames=128, seed=4)
    assert synthetic_spec("shapes", num_frames=16) == SyntheticVideoSpec(num_frames=16)
    assert synthetic_spec() == SyntheticVideoSpec()
    with pytest.raises(ValueError, match="unknown synthetic benchmark"):
        synthetic_spec("lines")
    with pytest.raises(ValueError, match="num_frames"):
        synthetic_spec("events", num_frames=16)  # too short for the events


@pytest.mark.parametrize("synthetic, word", [({"kind": "lines"}, "kind"), ({"kind": "events", "max_objects": 3},
                                                                           "unknown"),
                                             ({"kind": "events", "num_frames": "128"}, "num_frames"),
                                             ({"kind": 1}, "kind")])
def test_bad_events_spec_dicts_are_rejected(synthetic, word):
    with pytest.raises(ValueError, match=word):
        QARecord(video="synthetic:0:1", question="q?", answer="x", synthetic=synthetic)


def test_pipeline_samples_an_events_record_at_the_teachers_resolution(records):
    from liteframe_jax.data.qa_pipeline import record_frames

    frames = record_frames(records[0], 8, (56, 56))
    assert frames.shape == (8, 56, 56, 3) and frames.dtype == np.uint8
    assert json.loads(records[0].to_json())["synthetic"]["kind"] == "events"


def test_clips_without_the_persistent_object_ask_no_persistent_question_and_round_trip(tmp_path):
    spec = dataclasses.replace(SPEC, show_persistent=False)
    records = build_synthetic_benchmark(spec, 10, seed=3)
    assert {r.task for r in records} == TASKS - {"persistent_color", "persistent_shape"}
    for r in by_task(records, "event_presence"):
        pixels = synthetic_video_for(r).frames.astype(np.int32)
        pixels = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
        seen = {c for c, (red, g, b) in PALETTE.items() if (pixels == (red << 16 | g << 8 | b)).any()}
        assert [color_of(o) in seen for o in r.options].count(True) == 1
    write_records(tmp_path / "r.jsonl", records)
    back, errors = read_records(tmp_path / "r.jsonl")
    assert not errors and back == records and synthetic_video_for(back[0]).persistent is None
    bad = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    bad["synthetic"]["show_persistent"] = 1
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    assert "show_persistent" in read_records(tmp_path / "bad.jsonl")[1][0][1]


def test_a_separated_train_split_asks_about_events_only_where_no_persistent_object_is_drawn():
    train, test = synthetic_splits(SPEC, 6, 3, seed=3, separate_persistent=True)
    plain_train, plain_test = synthetic_splits(SPEC, 6, 3, seed=3)
    assert test == plain_test and len(train) == len(plain_train)
    for r in train:
        drawn = synthetic_video_for(r).persistent is not None
        assert drawn == (r.task in ("persistent_color", "persistent_shape"))
    with pytest.raises(ValueError, match="separate_persistent"):
        synthetic_splits(SyntheticVideoSpec(), 2, 1, separate_persistent=True)
