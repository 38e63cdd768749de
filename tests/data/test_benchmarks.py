"""liteframe_jax.data.benchmarks: published benchmark files (hand-written in each format) -> QARecords, the
lmms-eval prompts and answer extraction, the aggregates, format detection and missing-video reporting."""

import json

import numpy as np
import pytest

from liteframe_jax.data.benchmarks import (RULES, aggregate, detect_format, egoschema_parse, first_letter_parse,
                                           format_aggregate, load_benchmark, mlvu_parse, mvbench_parse)
from liteframe_jax.data.video import write_video
from liteframe_jax.data.video_qa import QARecord


def _video(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.zeros((6, 32, 32, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(6)[:, None, None] * 40
    write_video(path, frames, fps=2.0)
    return path


def _json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_videomme_rows_letters_prompt_and_missing_video(tmp_path):
    _video(tmp_path / "videos" / "abc.mp4")
    _video(tmp_path / "videos" / "data" / "def.mkv")
    rows = [
        {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
         "videoID": "abc", "question_id": "001-1", "task_type": "Counting Problem", "question": "How many stars?",
         "options": ["A. one", "B. two", "C. three", "D. four"], "answer": "C"},
        {"videoID": "def", "question_id": "002-1", "duration": "long", "domain": "Sports Competition",
         "task_type": "OCR Problems", "question": "Who wins?", "options": ["A. red", "B. blue", "C. x", "D. y"],
         "answer": "B"},
        {"videoID": "gone", "question_id": "003-1", "duration": "medium", "question": "q?",
         "options": ["A. a", "B. b"], "answer": "A"},
        {"videoID": "abc", "question_id": "004-1", "question": "q?", "options": ["one", "two"], "answer": "A"},
    ]
    path = _json(tmp_path / "videomme.json", rows)
    assert detect_format(path) == "videomme"
    bench = load_benchmark(path, video_root=tmp_path / "videos")
    first, second = bench.records
    assert (first.options, first.answer, first.task, first.id) == (("one", "two", "three", "four"), "C", "short",
                                                                   "001-1")
    assert first.video == str(tmp_path / "videos" / "abc.mp4")
    assert second.video == str(tmp_path / "videos" / "data" / "def.mkv")  # lmms-eval's .mkv and data/ fallbacks
    assert bench.meta[0] == {"duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
                             "task_type": "Counting Problem"}
    assert bench.missing_videos == 1
    missing, malformed = bench.skipped
    assert missing["file"] == "videomme.json" and missing["item"] == 2 and missing["id"] == "003-1"
    assert missing["reason"].startswith("video not found: ") and str(tmp_path / "videos" / "gone.mp4") in missing[
        "reason"]
    assert malformed == {"file": "videomme.json", "item": 3, "reason": "option 'one' does not start with 'A. '"}
    assert RULES["videomme"].prompt(first) == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\nHow many stars?\nA. one\nB. two\n"
        "C. three\nD. four\n\nAnswer with the option's letter from the given choices directly.")


def test_videomme_parquet_without_pyarrow_is_a_clear_error(tmp_path):
    path = tmp_path / "test-00000-of-00001.parquet"
    path.write_bytes(b"PAR1")
    assert detect_format(path) == "videomme"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="needs pyarrow"):
            load_benchmark(path)
    else:
        with pytest.raises(Exception):  # a real parquet reader refuses the four-byte file
            load_benchmark(path)


def test_mlvu_folder_text_answers_tasks_and_prompt(tmp_path):
    _video(tmp_path / "video" / "1_plotQA" / "m1.mp4")
    _video(tmp_path / "video" / "4_count" / "c1.mp4")
    json_dir = tmp_path / "json"
    _json(json_dir / "1_plotQA.json", [
        {"video": "m1.mp4", "duration": 246, "question": "What does the man hold?",
         "candidates": ["a cup", "a pen", "a book", "a key"], "answer": "a book", "question_type": "plotQA"},
        {"video": "m1.mp4", "question": "Bad?", "candidates": ["x", "y"], "answer": "z", "question_type": "plotQA"},
    ])
    _json(json_dir / "4_count.json", [
        {"video": "c1.mp4", "question": "How many?", "candidates": [1, 2, 3], "answer": 2, "question_type": "count"},
    ])
    assert detect_format(json_dir) == "mlvu"
    bench = load_benchmark(json_dir, video_root=tmp_path / "video")
    plot, count = bench.records
    assert (plot.answer, plot.task, count.answer, count.options) == ("C", "plotQA", "B", ("1", "2", "3"))
    assert plot.video == str(tmp_path / "video" / "1_plotQA" / "m1.mp4")  # the task's own folder
    assert bench.skipped == [{"file": "1_plotQA.json", "item": 1, "reason": "answer 'z' is not one of the candidates"}]
    assert RULES["mlvu"].prompt(plot) == ("\nQuestion: What does the man hold?\nOptions:\n(A) a cup\n(B) a pen\n"
                                          "(C) a book\n(D) a key\nOnly give the best option.\n\nBest option: (")


def test_longvideobench_correct_choice_and_prompt(tmp_path):
    _video(tmp_path / "videos" / "v1.mp4")
    path = _json(tmp_path / "lvb_val.json", [
        {"id": "q1", "video_path": "v1.mp4", "question": "What happens?", "candidates": ["a", "b", "c", "d", "e"],
         "correct_choice": 4, "duration_group": 600, "question_category": "TOS"},
        {"id": "q2", "video_path": "v1.mp4", "question": "Bad", "candidates": ["a", "b"], "correct_choice": 2},
    ])
    assert detect_format(path) == "longvideobench"
    bench = load_benchmark(path)  # video root defaults to the file's folder; videos/ is tried
    (record,) = bench.records
    assert (record.answer, record.id, bench.meta[0]) == ("E", "q1", {"duration_group": 600,
                                                                     "question_category": "TOS"})
    assert "not an index" in bench.skipped[0]["reason"]
    assert RULES["longvideobench"].prompt(record) == (
        "What happens?\nA. a\nB. b\nC. c\nD. d\nE. e\nAnswer with the option's letter from the given choices "
        "directly.\n")


def test_mvbench_bounds_source_folder_and_prompt(tmp_path):
    _video(tmp_path / "video" / "star" / "Charades_segment" / "s1.mp4")
    path = _json(tmp_path / "json" / "action_sequence.json", [
        {"video": "s1.mp4", "question": "What did the person do first?", "candidates": ["sat", "stood", "ran"],
         "answer": "stood", "start": 1.0, "end": 2.5},
    ])
    assert detect_format(path) == "mvbench"
    bench = load_benchmark(path, "mvbench", tmp_path)
    (record,) = bench.records
    assert (record.answer, record.start, record.end, record.task) == ("B", 1.0, 2.5, "action_sequence")
    assert record.video == str(tmp_path / "video" / "star" / "Charades_segment" / "s1.mp4")
    assert RULES["mvbench"].prompt(record) == (
        "Question:What did the person do first?\nOption:\nA. sat\nB. stood\nC. ran\nAnswer with the option's letter "
        "from the given choices directly.")


def test_egoschema_questions_with_subset_answers(tmp_path):
    _video(tmp_path / "videos" / "u1.mp4")
    _video(tmp_path / "videos" / "u2.mp4")
    options = {f"option {k}": f"c does thing {k}" for k in range(5)}
    path = _json(tmp_path / "questions.json", [{"q_uid": "u1", "question": "What is c doing?", **options},
                                               {"q_uid": "u2", "question": "Why?", **options}])
    _json(tmp_path / "subset_answers.json", {"u1": 3})
    assert detect_format(path) == "egoschema"
    bench = load_benchmark(path)
    (record,) = bench.records
    assert (record.answer, record.id, len(record.options)) == ("D", "u1", 5)
    assert bench.skipped == [{"file": "questions.json", "item": 1,
                              "reason": "no public answer for u2 in subset_answers.json"}]
    assert RULES["egoschema"].prompt(record).splitlines() == [
        "What is c doing?", "A. c does thing 0", "B. c does thing 1", "C. c does thing 2", "D. c does thing 3",
        "E. c does thing 4", "Answer with the option's letter from the given choices directly."]
    (tmp_path / "subset_answers.json").unlink()
    with pytest.raises(ValueError, match="subset_answers.json"):
        load_benchmark(path)


def test_jsonl_keeps_line_numbers_and_resolves_under_video_root(tmp_path):
    _video(tmp_path / "clips" / "a.mp4")
    record = QARecord(video="a.mp4", question="q?", options=("x", "y"), answer="B", id="r1")
    path = tmp_path / "b.jsonl"
    path.write_text("{broken\n" + record.to_json() + "\n")
    bench = load_benchmark(path, video_root=tmp_path / "clips")
    assert bench.format == "jsonl" and bench.locations == [{"line": 2}]
    assert bench.records[0].video == str(tmp_path / "clips" / "a.mp4") and bench.skipped[0]["line"] == 1


def test_a_jsonl_line_that_is_not_utf8_is_skipped_with_its_number_and_the_rest_kept(tmp_path):
    record = QARecord(video="synthetic:0:1", question="q?", options=("x", "y"), answer="A", id="r1")
    path = tmp_path / "b.jsonl"
    path.write_bytes(b"\xff\xfe not text\n\n" + record.to_json().encode() + b"\n")
    bench = load_benchmark(path)
    assert bench.records == [record] and bench.locations == [{"line": 3}]
    assert bench.skipped[0]["line"] == 1 and "UTF-8" in bench.skipped[0]["reason"]


def test_detection_refuses_unknown_fields(tmp_path):
    path = _json(tmp_path / "x.json", [{"clip": "a", "q": "?"}])
    with pytest.raises(ValueError, match="give --format"):
        detect_format(path)


R4 = QARecord(video="v", question="q", options=("cat", "dog", "red square", "blue"), answer="A")
R5 = QARecord(video="v", question="q", options=("one", "two", "three", "four", "five"), answer="A")


@pytest.mark.parametrize("reply, letter", [
    ("C", "C"), ("The best answer is D.", "D"), ("(B) dog", "B"), ("Based on it, A", "B"),  # "Based": first capital B
    ("E", None), ("no letter here at all", None), ("", None)])
def test_videomme_extraction(reply, letter):
    assert first_letter_parse("ABCD")(reply, R4) == letter


def test_longvideobench_extraction_knows_e():
    assert first_letter_parse("ABCDE")("The correct answer is E", R5) == "E"


@pytest.mark.parametrize("reply, letter", [("B) dog", "B"), ("C", "C"), ("A)", "A"), (")", None), ("dog", None)])
def test_mlvu_extraction(reply, letter):
    assert mlvu_parse(reply, R4) == letter


@pytest.mark.parametrize("reply, letter", [
    ("B. dog", "B"), ("(C) red square", "C"), ("d", "D"), ("The answer is B", "B"), ("a cat", "A"),
    ("no", None)])
def test_mvbench_extraction(reply, letter):
    assert mvbench_parse(reply, R4) == letter


@pytest.mark.parametrize("reply, letter", [
    ("D. four.", "D"), ("D. four", None), ("three.", "C"), ("B", "B"), ("B.", None), ("three", None)])
def test_egoschema_extraction_is_exact(reply, letter):
    assert egoschema_parse(reply, R5) == letter


def _rows(spec):
    """Predictions (index, correct, response) and a Benchmark-like object holding their meta."""
    class Bench:
        pass
    bench = Bench()
    bench.meta = [m for m, _, _ in spec]
    bench.rule = None
    return bench, [{"index": i, "correct": c, "response": r} for i, (_, c, r) in enumerate(spec)]


def test_mlvu_macro_average_differs_from_micro():
    spec = [({"question_type": "count"}, True, "A)"), ({"question_type": "plotQA"}, True, "B)"),
            ({"question_type": "plotQA"}, False, "C)"), ({"question_type": "plotQA"}, False, "D)")]
    rows = [{**p, "meta": m} for (m, _, _), p in zip(spec, _rows(spec)[1])]
    agg = RULES["mlvu"].aggregate(rows)
    assert agg["value"] == pytest.approx((1.0 + 1 / 3) / 2)  # micro would be 0.5
    assert agg["groups"]["question_type"]["plotQA"] == {"accuracy": pytest.approx(1 / 3), "correct": 1, "total": 3}
    assert "mean accuracy over question_type (2)" in format_aggregate(agg)


def test_videomme_by_duration_and_mvbench_leaves_out_empty_replies():
    spec = [({"duration": "short", "domain": "K", "task_type": "T"}, True, "A"),
            ({"duration": "short", "domain": "K", "task_type": "T"}, False, "B"),
            ({"duration": "long", "domain": "F", "task_type": "T"}, True, "C")]
    bench, preds = _rows(spec)
    bench.rule = RULES["videomme"]
    agg = aggregate(bench, preds)
    assert agg["value"] == pytest.approx(2 / 3)
    assert {k: v["accuracy"] for k, v in agg["groups"]["duration"].items()} == {"long": 1.0, "short": 0.5}
    spec = [({"task": "a"}, True, "A"), ({"task": "a"}, False, ""), ({"task": "b"}, False, "B")]
    bench, preds = _rows(spec)
    bench.rule = RULES["mvbench"]
    agg = aggregate(bench, preds)
    assert agg["groups"]["task"]["a"]["total"] == 1 and agg["value"] == pytest.approx(0.5)
