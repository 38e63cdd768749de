"""experiments.count_binding asks the events benchmark's count question about the repeated object, a one-off object
(answer 1) and an absent object (answer 0) of the same clips, drawn with and without the always-visible object,
and measures whether the answers depend on the named object."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments.count_binding import (COUNTS, answer_counts, binding_benchmark, count_questions,
                                       total_variation)
from liteframe_jax.data.synthetic import PALETTE
from liteframe_jax.data.synthetic_events import DENSE_FIELDS
from liteframe_jax.data.video_qa import (LETTERS, synthetic_spec, synthetic_splits, synthetic_video_for)

ROOT = Path(__file__).resolve().parents[2]


def _count_record(show_persistent=True):
    spec = synthetic_spec("events", show_persistent=show_persistent, **DENSE_FIELDS)
    record = next(r for r in synthetic_splits(spec, 0, 1)[1] if r.task == "event_count")
    return record, synthetic_video_for(record)


def _answer(record) -> str:
    return record.options[LETTERS.index(record.answer)]


def test_the_three_questions_name_the_repeated_a_one_off_and_an_absent_object_with_their_true_counts():
    record, video = _count_record()
    repeated, one_off, absent = count_questions(record, video, np.random.default_rng(0))
    assert (repeated.question, repeated.answer, repeated.options) == (record.question, record.answer, record.options)
    assert [r.task for r in (repeated, one_off, absent)] == \
        ["count_repeated@drawn", "count_one_off@drawn", "count_absent@drawn"]
    assert _answer(one_off) == "1" and _answer(absent) == "0"
    assert one_off.options == absent.options == record.options and sorted(record.options) == list(COUNTS)
    singles = {f"{e.color} {e.shape}" for e in video.singles}
    assert any(s in one_off.question for s in singles)
    in_clip = {video.repeated[0], video.persistent.color, *(e.color for e in video.singles),
               *(f.color for f in video.flashes)}
    named = [c for c in PALETTE if f" {c} " in absent.question]
    assert len(named) == 1 and named[0] not in in_clip


def test_the_benchmark_asks_each_clip_drawn_and_hidden_with_unique_ids():
    records = binding_benchmark(3)
    assert len(records) == 3 * 3 * 2 and len({r.id for r in records}) == len(records)
    tasks = {r.task for r in records}
    assert tasks == {f"count_{t}@{w}" for t in ("repeated", "one_off", "absent") for w in ("drawn", "hidden")}
    hidden = [r for r in records if r.task.endswith("@hidden")]
    assert all(not synthetic_video_for(r).spec.show_persistent for r in hidden)


def test_total_variation_is_zero_for_the_same_answers_and_one_for_disjoint_ones():
    same = {"0": 3, "1": 1, "2": 0, "3": 4}
    assert total_variation(same, {k: 2 * v for k, v in same.items()}) == 0
    assert total_variation({"0": 5, "1": 0, "2": 0, "3": 0}, {"0": 0, "1": 7, "2": 0, "3": 0}) == 1


def test_answer_counts_maps_each_predicted_letter_to_its_options_count():
    record, video = _count_record()
    records = count_questions(record, video, np.random.default_rng(0))
    result = {"predictions": [{"id": r.id, "task": r.task, "prediction": r.answer} for r in records]}
    counts = answer_counts(result, records)
    assert counts["count_one_off@drawn"] == {"0": 0, "1": 1, "2": 0, "3": 0}
    assert counts["count_absent@drawn"] == {"0": 1, "1": 0, "2": 0, "3": 0}


def test_the_cli_scores_the_shipped_teacher_and_writes_every_cell(tmp_path):
    out = tmp_path / "binding.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.count_binding", "--clips", "2", "--batch_size", "4",
                           "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert len(result["cells"]) == 6 and len(result["predictions"]) == 12
    for cell in result["cells"].values():
        assert cell["n"] == 2 and sum(cell["answered"].values()) == 2
        assert cell["ci95"][0] <= cell["accuracy"] <= cell["ci95"][1]
    assert all(0 <= v <= 1 for v in result["binding_tv"].values())
    assert "total-variation distance" in proc.stdout
    assert all(f"[count_binding] {k}/12 questions" in proc.stdout for k in (4, 8, 12))  # progress per tenth
    bad = subprocess.run([sys.executable, "-m", "experiments.count_binding", "--clips", "0"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--clips >= 1" in bad.stderr
