"""Video-QA records and the synthetic benchmark: every answer is checked against the rendered pixels, options
hold the answer exactly once, JSONL reading skips and reports bad lines, splits are disjoint and stable."""

import json
import os

import numpy as np
import pytest

from liteframe_jax.data.synthetic import PALETTE, SHAPES, SyntheticVideoSpec, make_synthetic_video, shape_mask
from liteframe_jax.data.video_qa import (LETTERS, MC_INSTRUCTION, MOTION_ANSWERS, QARecord,
                                         build_synthetic_benchmark, chance_level, format_multiple_choice,
                                         read_records, synthetic_questions, synthetic_splits, synthetic_video_for,
                                         write_records)

SPEC = SyntheticVideoSpec(num_frames=12, size=64, max_objects=4)
NUM_VIDEOS = 30


@pytest.fixture(scope="module")
def records():
    return build_synthetic_benchmark(SPEC, NUM_VIDEOS, seed=3)


@pytest.fixture(scope="module")
def videos():
    return {make_synthetic_video(i, SPEC).video_id: make_synthetic_video(i, SPEC) for i in range(NUM_VIDEOS)}


def by_task(records, task):
    out = [r for r in records if r.task == task]
    assert out, f"no {task} questions in the benchmark"
    return out


def answer_text(record):
    return record.options[LETTERS.index(record.answer)]


def color_pixels(frames, color):
    """bool (T, H, W): where the frames show exactly the palette colour."""
    return np.all(frames == np.array(PALETTE[color], np.uint8), axis=-1)


def pixel_box(mask):
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def drawn_shape(frames, color):
    """The shape whose mask matches the colour's pixels in its first visible frame."""
    masks = color_pixels(frames, color)
    t = int(np.flatnonzero(masks.any(axis=(1, 2)))[0])
    x0, y0, x1, y1 = pixel_box(masks[t])
    matches = [s for s in SHAPES if np.array_equal(masks[t, y0:y1, x0:x1], shape_mask(s, x1 - x0))]
    assert len(matches) == 1
    return matches[0]


# ----------------------------------------------------------------------------------------- answers vs pixels

def test_all_tasks_are_generated(records):
    assert {r.task for r in records} == {"color", "shape", "motion", "count", "order"}


def test_color_answer_is_the_colour_of_the_asked_shape_in_the_pixels(records, videos):
    for r in by_task(records, "color"):
        frames = videos[r.video].frames
        shape = r.question.removeprefix("What colour is the ").removesuffix("?")
        answer = answer_text(r)
        assert color_pixels(frames, answer).any(), r.id
        assert drawn_shape(frames, answer) == shape, r.id
        # the question is unambiguous: no other colour in the video is drawn with that shape
        others = [c for c in PALETTE if c != answer and color_pixels(frames, c).any()]
        assert all(drawn_shape(frames, c) != shape for c in others), r.id


def test_shape_answer_matches_the_drawn_mask(records, videos):
    for r in by_task(records, "shape"):
        color = r.question.removeprefix("What shape is the ").removesuffix(" object?")
        assert drawn_shape(videos[r.video].frames, color) == answer_text(r), r.id


def test_motion_answer_matches_the_pixel_trajectory(records, videos):
    seen = set()
    for r in by_task(records, "motion"):
        color = r.question.removeprefix("In which direction does the ").split()[0]
        masks = color_pixels(videos[r.video].frames, color)
        boxes = [pixel_box(m) for m in masks if m.any()]
        dx, dy = boxes[-1][0] - boxes[0][0], boxes[-1][1] - boxes[0][1]
        expected = {(True, False): "right" if dx > 0 else "left", (False, True): "down" if dy > 0 else "up",
                    (False, False): "not moving"}[(dx != 0, dy != 0)]
        assert answer_text(r) == expected, r.id
        seen.add(expected)
    assert len(seen) >= 3  # the benchmark exercises several directions


def test_count_answer_is_the_number_of_colours_drawn(records, videos):
    for r in by_task(records, "count"):
        frames = videos[r.video].frames
        assert int(answer_text(r)) == sum(color_pixels(frames, c).any() for c in PALETTE), r.id
        numbers = sorted(int(o) for o in r.options)
        assert numbers == list(range(numbers[0], numbers[0] + 4)) and numbers[0] >= 1


def test_order_answer_is_the_colour_that_shows_up_first(records, videos):
    for r in by_task(records, "order"):
        frames = videos[r.video].frames
        first_frame = {}
        for option in r.options:
            color = option.split()[1]
            visible = np.flatnonzero(color_pixels(frames, color).any(axis=(1, 2)))
            first_frame[option] = int(visible[0]) if visible.size else None
        answer = answer_text(r)
        assert first_frame[answer] is not None
        shown = [f for o, f in first_frame.items() if o != answer and f is not None]
        assert all(first_frame[answer] < f for f in shown), r.id
        assert drawn_shape(frames, answer.split()[1]) == answer.split()[2]


# ----------------------------------------------------------------------------------------------- options

def test_options_hold_the_answer_exactly_once(records):
    for r in records:
        assert len(set(r.options)) == len(r.options), r.id
        assert r.options.count(answer_text(r)) == 1
        assert len(r.options) == (3 if r.task == "shape" else 4), r.id


def test_answer_letters_are_spread_over_positions(records):
    letters = [r.answer for r in records if len(r.options) == 4]
    counts = [letters.count(x) for x in "ABCD"]
    assert min(counts) >= len(letters) / 10  # shuffled, not always in one slot


def test_motion_options_come_from_the_motion_vocabulary(records):
    for r in by_task(records, "motion"):
        assert set(r.options) <= set(MOTION_ANSWERS.values())


def test_records_point_back_to_their_video(records, videos):
    for r in records:
        assert r.id == f"{r.video}:{r.task}"
        assert r.synthetic == {"num_frames": 12, "size": 64, "min_objects": 1, "max_objects": 4, "seed": 0,
                               "background_noise": 6, "fps": 8.0}
    r = records[-1]
    np.testing.assert_array_equal(synthetic_video_for(r).frames, videos[r.video].frames)


def test_one_object_video_gets_no_order_question():
    video = make_synthetic_video(0, SyntheticVideoSpec(max_objects=1))
    tasks = [r.task for r in synthetic_questions(video, np.random.default_rng(0))]
    assert "order" not in tasks and {"shape", "count"} <= set(tasks)


def test_no_motion_question_when_motion_cannot_be_seen():
    # with one frame nothing can be seen moving (or staying still), whatever the recorded label says
    spec = SyntheticVideoSpec(num_frames=1, max_objects=3)
    records = build_synthetic_benchmark(spec, 20)
    assert records and "motion" not in {r.task for r in records}


def test_format_multiple_choice():
    assert format_multiple_choice("Which?", ["red", "blue"]) == f"Which?\nA. red\nB. blue\n{MC_INSTRUCTION}"
    assert MC_INSTRUCTION == "Answer with the option's letter from the given choices directly."
    with pytest.raises(ValueError):
        format_multiple_choice("Which?", ["only one"])


# ---------------------------------------------------------------------------------------------- chance level

def _mc(task, n, answer="A"):
    return QARecord(video="v.mp4", question="q?", options=[f"o{i}" for i in range(n)], answer=answer, task=task)


def test_chance_level_is_mean_inverse_option_count():
    records = [_mc("a", 2), _mc("a", 4), _mc("b", 5), QARecord(video="v.mp4", question="open?", answer="x",
                                                                 task="open")]
    levels = chance_level(records)
    assert levels == pytest.approx({"a": (1 / 2 + 1 / 4) / 2, "b": 1 / 5, "overall": (1 / 2 + 1 / 4 + 1 / 5) / 3})
    assert chance_level([]) == {}


def test_benchmark_chance_level(records):
    levels = chance_level(records)
    assert levels["color"] == pytest.approx(0.25) and levels["shape"] == pytest.approx(1 / 3)
    assert 0.25 < levels["overall"] < 1 / 3


# ---------------------------------------------------------------------------------------------- determinism

def test_benchmark_is_deterministic_and_ranges_concatenate():
    a = build_synthetic_benchmark(SPEC, 6, seed=1)
    assert a == build_synthetic_benchmark(SPEC, 6, seed=1)
    assert a == build_synthetic_benchmark(SPEC, 2, seed=1) + build_synthetic_benchmark(SPEC, 4, seed=1, first_index=2)
    assert a != build_synthetic_benchmark(SPEC, 6, seed=2)


def test_splits_are_disjoint_deterministic_and_independent_of_each_others_size():
    train, test = synthetic_splits(SPEC, train_videos=5, test_videos=3)
    assert {r.video for r in train}.isdisjoint({r.video for r in test})
    assert len({r.video for r in train}) == 5 and len({r.video for r in test}) == 3
    assert (train, test) == synthetic_splits(SPEC, 5, 3)
    bigger_train, same_test = synthetic_splits(SPEC, 8, 3)
    assert same_test == test and bigger_train[:len(train)] == train


# ------------------------------------------------------------------------------------------------ records

def test_record_json_round_trip():
    records = [
        _mc("color", 4, "C"),
        QARecord(video="clips/a.mp4", start=1.5, end=9.0, question="Was passiert?", answer="Ein Hund läuft.",
                 task="open", id="x1"),
        QARecord(video="clips/b.mp4", task="chat", id="x2",
                 conversations=[{"from": "human", "value": "Describe."}, {"from": "gpt", "value": "A cat."}]),
    ]
    for r in records:
        assert QARecord.from_json(r.to_json()) == r
    assert records[2].turns() == [("Describe.", "A cat.")]
    assert records[0].turns() == [(format_multiple_choice("q?", ["o0", "o1", "o2", "o3"]), "C")]
    assert "start" not in json.loads(records[0].to_json())


def test_synthetic_video_for_rejects_non_synthetic_records():
    with pytest.raises(ValueError, match="synthetic"):
        synthetic_video_for(_mc("a", 2))


def test_synthetic_spec_must_match_the_video_id_seed():
    with pytest.raises(ValueError, match="seed"):
        QARecord(video="synthetic:1:4", question="q?", answer="x", synthetic={"seed": 2})


GOOD = {"id": "g1", "video": "a.mp4", "question": "Which?", "options": ["x", "y"], "answer": "B", "task": "t"}
BAD_LINES = {  # line content -> a word the reason must contain
    '{"id": "b0", "video": "a.mp4", "question": "Which?", ': "json",
    json.dumps({**GOOD, "id": "b1", "question": ""}): "question",
    json.dumps({k: v for k, v in {**GOOD, "id": "b2"}.items() if k != "answer"}): "answer",
    json.dumps({**GOOD, "id": "b3", "answer": "C"}): "letter",
    json.dumps({**GOOD, "id": "b4", "start": 5.0, "end": 2.0}): "start",
    json.dumps({**GOOD, "id": "b5", "start": 5.0}): "end",
    json.dumps({**GOOD, "id": "b7", "options": "x, y"}): "options",
    json.dumps({**GOOD, "id": "b8", "options": ["only"], "answer": "A"}): "options",
    json.dumps({**GOOD, "id": "b9", "video": 3}): "video",
    json.dumps(["not", "an", "object"]): "object",
    json.dumps({**GOOD, "id": "b10", "synthetic": {"num_frames": "16"}}): "num_frames",
    json.dumps({**GOOD}): "duplicate",
}


def test_read_records_skips_and_reports_malformed_lines(tmp_path):
    lines = [json.dumps(GOOD), ""]
    expected_errors = {}
    for i, (line, reason_word) in enumerate(BAD_LINES.items()):
        lines.append(line)
        expected_errors[len(lines)] = reason_word
        if i % 4 == 0:
            lines.append("   ")  # blank lines are ignored but still counted
        if i == 5:
            lines.append(json.dumps({**GOOD, "id": "g2", "options": [], "answer": "free text"}))
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, errors = read_records(path)
    assert [r.id for r in records] == ["g1", "g2"]
    assert [n for n, _ in errors] == sorted(expected_errors)
    for number, reason in errors:
        assert expected_errors[number] in reason.lower(), (number, reason)


def test_write_then_read_round_trip_is_atomic(tmp_path):
    records = build_synthetic_benchmark(SPEC, 2) + [
        QARecord(video="视频/a.mp4", question="这是什么颜色？", options=["红", "蓝"], answer="A", task="color",
                 id="zh")]
    path = tmp_path / "out" / "qa.jsonl"
    write_records(path, records)
    assert read_records(path) == (records, [])
    assert os.listdir(path.parent) == ["qa.jsonl"]  # no temporary file left behind
    assert "这是什么颜色" in path.read_text(encoding="utf-8")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    write_records(path, [_mc("a", 2)])
    before = path.read_bytes()

    class Broken:
        def to_json(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_records(path, [_mc("a", 3), Broken()])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["qa.jsonl"]


def test_a_line_that_is_not_utf8_is_reported_with_its_number_and_the_rest_kept(tmp_path):
    good = QARecord(video="a.mp4", question="What colour?", options=("red", "blue"), answer="A", task="color", id="1")
    path = tmp_path / "qa.jsonl"
    path.write_bytes(good.to_json().encode() + b'\n{"video": "caf\xe9.mp4"}\n')
    records, errors = read_records(path)
    assert records == [good]
    assert errors[0][0] == 2 and "not valid UTF-8" in errors[0][1]


# ------------------------------------------------------------------------------------------------ evidence

def visible_frames(frames, color):
    return np.flatnonzero(color_pixels(frames, color).any(axis=(1, 2))).tolist()


def test_every_shapes_question_records_evidence_inside_its_clip(records):
    for r in records:
        assert r.evidence and all(g and list(g) == sorted(set(g)) for g in r.evidence), r.id
        assert all(0 <= t < SPEC.num_frames for g in r.evidence for t in g)


def test_color_and_shape_evidence_is_where_the_object_is_visible(records, videos):
    for r in by_task(records, "color") + by_task(records, "shape"):
        frames = videos[r.video].frames
        color = answer_text(r) if r.task == "color" else r.question.split()[4]
        assert r.evidence == (tuple(visible_frames(frames, color)),), r.id


def test_count_evidence_is_one_group_per_object(records, videos):
    for r in by_task(records, "count"):
        frames = videos[r.video].frames
        expected = {tuple(visible_frames(frames, c)) for c in PALETTE if color_pixels(frames, c).any()}
        assert set(r.evidence) == expected and len(r.evidence) == int(answer_text(r)), r.id


def test_order_evidence_is_where_the_first_object_shows_before_the_other_options(records, videos):
    for r in by_task(records, "order"):
        frames = videos[r.video].frames
        others = [t for o in r.options if o != answer_text(r) for t in visible_frames(frames, o.split()[1])]
        expected = [t for t in visible_frames(frames, answer_text(r).split()[1]) if t < min(others, default=99)]
        assert r.evidence == (tuple(expected),), r.id


def test_motion_evidence_splits_the_visible_frames_between_two_positions(records, videos):
    for r in by_task(records, "motion"):
        masks = color_pixels(videos[r.video].frames, r.question.split()[5])
        early, late = r.evidence
        assert list(early + late) == [t for t in range(len(masks)) if masks[t].any()], r.id
        moving = answer_text(r) != "not moving"
        assert (pixel_box(masks[early[-1]]) != pixel_box(masks[late[0]])) == moving, r.id


def test_record_evidence_is_validated_and_stored_as_tuples():
    r = _mc("a", 4)
    with_evidence = QARecord(**{**r.to_dict(), "evidence": [[3, 4], [np.int64(9)]]})
    assert with_evidence.evidence == ((3, 4), (9,))
    assert QARecord(**{**r.to_dict(), "evidence": []}).evidence == ()
    for bad in ("3, 4", [[]], [[4, 3]], [[3, 3]], [[-1]], [[True]], [[1.0]], [3]):
        with pytest.raises(ValueError, match="evidence"):
            QARecord(**{**r.to_dict(), "evidence": bad})


def test_evidence_frames_must_lie_inside_a_synthetic_clip():
    synthetic = {"num_frames": 12, "seed": 0}
    QARecord(video="synthetic:0:1", question="q?", answer="x", synthetic=synthetic, evidence=[[0, 11]])
    with pytest.raises(ValueError, match="12 frames"):
        QARecord(video="synthetic:0:1", question="q?", answer="x", synthetic=synthetic, evidence=[[12]])
    QARecord(video="a.mp4", question="q?", answer="x", evidence=[[5000]])  # length unknown: not checked


def test_evidence_round_trips_and_records_without_it_still_load(tmp_path):
    r = QARecord(video="a.mp4", question="q?", options=("x", "y"), answer="B", evidence=[[1, 2], [7]])
    assert json.loads(r.to_json())["evidence"] == [[1, 2], [7]]
    assert QARecord.from_json(r.to_json()) == r
    old = json.dumps(GOOD)
    assert QARecord.from_json(old).evidence is None and "evidence" not in QARecord.from_json(old).to_dict()
    path = tmp_path / "qa.jsonl"
    path.write_text(old + "\n" + json.dumps({**GOOD, "id": "g2", "evidence": [[3, 2]]}) + "\n", encoding="utf-8")
    records, errors = read_records(path)
    assert [x.id for x in records] == ["g1"] and errors[0][0] == 2 and "evidence" in errors[0][1]


def test_fields_a_record_does_not_know_are_ignored(tmp_path):
    """Benchmark files as distributed carry more (Video-MME: duration, domain, ...): not a reason to skip."""
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({**GOOD, "duration": "short", "domain": "Knowledge", "videoID": "x"}) + "\n",
                    encoding="utf-8")
    records, errors = read_records(path)
    assert errors == [] and records == [QARecord.from_dict(GOOD)]
