"""The latency benchmark (experiments/latency.py) at toy sizes: JSON structure, token counts, skipped points,
the Pareto plot from evaluate-style results, config errors and the CLI. No assertions on timing ratios."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from configs import latency as latency_config
from experiments import latency
from liteframe_jax.models.visual_path import for_model

ROOT = Path(__file__).resolve().parents[2]


def _config(**fields) -> dict:
    """The tiny config as a plain mapping (a ConfigDict would refuse wrongly typed test values)."""
    return {**latency_config.get_config("size=tiny").to_dict(), **fields}


def _eval_result(path: Path, frames: int, accuracy: float, visual_tokens=None) -> str:
    """A result file shaped like `python -m liteframe_jax.evaluate --out` writes."""
    path.write_text(json.dumps({
        "checkpoint": f"runs/{path.stem}/model", "benchmark": "bench.jsonl", "method": "generate",
        "num_frames": frames, "frames_per_group": 1, "tokens_per_frame_group": 4, "visual_tokens": visual_tokens,
        "overall": {"accuracy": accuracy, "correct": int(accuracy * 20), "total": 20, "chance": 0.25},
        "per_task": {}, "unparsed": 0, "skipped": [], "seconds": 1.0, "model_ms_per_example": None,
        "system_message": "none", "predictions": []}))
    return str(path)


def test_benchmark_writes_points_plots_skips_and_pareto(tmp_path):
    # teacher at 4 frames needs 16 + 4 * (4 + 2 + 5) = 60 LLM tokens > 50: its prefill is skipped
    plan = latency.validate(_config(max_llm_tokens=50))
    spec = ",".join([f"teacher={_eval_result(tmp_path / 't.json', 2, 0.50, 8)}",
                     f"teacher_wap={_eval_result(tmp_path / 'w.json', 4, 0.45)}",
                     f"student={_eval_result(tmp_path / 's2.json', 2, 0.40)}",
                     f"student={_eval_result(tmp_path / 's4.json', 4, 0.60)}"])
    accuracy = latency.parse_accuracy(spec, plan)
    lines = []
    result = latency.run_benchmark(plan, tmp_path / "out", accuracy, config={"size": "tiny"}, log=lines.append)

    saved = json.loads((tmp_path / "out" / "latency.json").read_text())
    assert saved["points"] == json.loads(json.dumps(result["points"]))
    for name in ("latency.png", "pareto.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    assert saved["device"]["platform"] == "cpu" and saved["dtype"] == "float32" and saved["attention"] == "xla"
    assert saved["matmul_rate"]["flops_per_s"] > 0
    assert saved["plan"]["teacher"]["vision"]["image_size"] == [56, 56]

    points = {(p["pipeline"], p["frames"]): p for p in saved["points"]}
    assert set(points) == {(p, f) for p in ("teacher", "teacher_wap", "student") for f in (2, 4)}
    per_frame = plan.teacher.tokens_per_frame()
    kt, kh, kw = plan.wap.window
    for (name, frames), p in points.items():
        teacher_tokens = frames * per_frame
        expected = teacher_tokens if name == "teacher" else math.ceil(frames / kt) * per_frame // (kh * kw)
        assert p["visual_tokens"] == expected and p["groups"] * p["tokens_per_group"] == expected
        assert p["llm_tokens"] == plan.text_tokens + p["groups"] * (p["tokens_per_group"] + 2 + plan.group_text_tokens)
        assert p["vision_ms"] > 0 and p["vision_flops"] > 0 and p["vision_flops_per_s"] > 0
        assert p["vision_compiled_flops"] >= p["vision_flops"]
        assert p["stages"]["vision"]["repeats"] == plan.repeats and len(p["stages"]["vision"]["times_ms"]) == 2
        assert f"{name} {frames} frames: vision" in "\n".join(lines)
        if (name, frames) == ("teacher", 4):
            assert p["prefill_ms"] is None and p["total_ms"] is None
            assert "max_llm_tokens=50" in p["skipped"] and "max_llm_tokens=50" in p["stages"]["prefill"]["skipped"]
            assert p["prefill_flops"] > 0  # analytic FLOPs are known without running
        else:
            assert p["skipped"] is None and p["prefill_ms"] > 0
            assert p["total_ms"] == pytest.approx(p["vision_ms"] + p["prefill_ms"])
            assert p["total_flops"] == p["vision_flops"] + p["prefill_flops"]
    # 8x fewer visual tokens after WAP (2, 2, 2) / the student's (2, 2, 2) stride
    assert points[("teacher", 2)]["visual_tokens"] == 8 * points[("student", 2)]["visual_tokens"]

    same = {(r["pipeline"], r["frames"]): r for r in saved["speedups"]["same_frames"]}
    assert set(same) == {(p, f) for p in ("teacher_wap", "student") for f in (2, 4)}
    assert same[("student", 2)]["total"] > 0 and same[("student", 4)]["total"] is None
    assert same[("student", 4)]["vision"] > 0
    assert saved["speedups"]["more_frames"] == []  # 8 x 2 frames was not measured

    front = saved["pareto"]
    assert {(r["pipeline"], r["frames"]) for r in front["points"]} == {("teacher", 2), ("teacher_wap", 4),
                                                                        ("student", 2), ("student", 4)}
    by_latency = sorted(front["points"], key=lambda r: r["total_ms"])
    best = -1.0
    for r in by_latency:  # on the frontier exactly when more accurate than every faster point
        assert r["on_frontier"] == (r["accuracy"] > best)
        best = max(best, r["accuracy"])
    assert front["frontier"] == [f"{r['pipeline']}@{r['frames']}" for r in by_latency if r["on_frontier"]]
    assert all(r["note"] is None for r in front["points"])  # teacher's 8 visual tokens match


def test_accuracy_at_a_skipped_point_is_a_clear_error_after_writing_the_latency(tmp_path):
    plan = latency.validate(_config(pipelines=("teacher",), stages=("prefill",), frames=(4,), max_llm_tokens=50))
    accuracy = latency.parse_accuracy(f"teacher={_eval_result(tmp_path / 't.json', 4, 0.5)}", plan)
    with pytest.raises(ValueError, match="no latency for accuracy result.*teacher at 4 frames.*max_llm_tokens"):
        latency.run_benchmark(plan, tmp_path / "out", accuracy, log=lambda _: None)
    saved = json.loads((tmp_path / "out" / "latency.json").read_text())
    assert "teacher at 4 frames" in saved["pareto"]["error"] and not (tmp_path / "out" / "pareto.png").exists()


def test_fused_end_to_end_is_timed_when_asked(tmp_path):
    plan = latency.validate(_config(pipelines=("student",), frames=(2,), fused=True))
    lines = []
    (point,) = latency.run_benchmark(plan, tmp_path, log=lines.append)["points"]
    assert point["end_to_end_ms"] > 0 and point["end_to_end_flops"] == point["total_flops"]
    assert point["end_to_end_compiled_flops"] > 0
    assert any(line.startswith("student 2 frames:") and "end_to_end" in line for line in lines)


def test_accuracy_spec_errors(tmp_path):
    plan = latency.validate(_config())
    good = _eval_result(tmp_path / "a.json", 2, 0.5)
    (tmp_path / "other.json").write_text(json.dumps({"loss": 1.0}))
    cases = {f"student={_eval_result(tmp_path / 'b.json', 16, 0.5)}": "evaluated at 16 frames.*does not measure",
             f"ghost={good}": "'ghost' is not a measured pipeline",
             f"student={tmp_path / 'missing.json'}": "cannot read",
             f"student={tmp_path / 'other.json'}": "not a result of `python -m liteframe_jax.evaluate",
             good: "must look like PIPELINE=EVAL.json"}
    for spec, message in cases.items():
        with pytest.raises(ValueError, match=message):
            latency.parse_accuracy(spec, plan)
    vision_only = latency.validate(_config(stages=("vision",)))
    with pytest.raises(ValueError, match="stages must include prefill"):
        latency.parse_accuracy(f"teacher={good}", vision_only)


def test_validate_lists_every_problem():
    c = _config(frames=(0, 4), pipelines=("teacher", "bogus"), stages=(), repeats=0, warmup=0, text_tokens=-1,
                fused="yes", attention="no_such_kernel")
    with pytest.raises(ValueError) as e:
        latency.validate(c)
    for fragment in ("frames=(0, 4)", "pipelines=", "stages=", "repeats=0", "warmup=0", "text_tokens=-1",
                     "fused='yes'", "attention_impl='no_such_kernel'"):
        assert fragment in str(e.value)
    c = _config()
    c["student"]["image_size"] = (112, 112)
    c["wap"]["window"] = (2, 3, 3)
    with pytest.raises(ValueError) as e:
        latency.validate(c)
    assert "student.image_size=(112, 112) must equal teacher.vision.image_size=(56, 56)" in str(e.value)
    assert "WAP spatial window 3x3" in str(e.value)
    plan = latency.validate(_config(frames="4+2+4", pipelines="student,teacher", dtype="float32"))
    assert plan.frames == (2, 4) and plan.pipelines == ("student", "teacher")
    assert plan.teacher.attention_impl == plan.student.student.attention_impl == "xla"


def test_config_args():
    c = latency_config.get_config("size=small,frames=4+8,pipelines=student,stages=vision,attention=cudnn")
    assert c.frames == (4, 8) and c.pipelines == ("student",) and c.stages == ("vision",)
    assert c.dtype == "float32" and c.teacher.attention_impl == c.student.attention_impl == "cudnn"
    real = latency_config.get_config()
    assert real.dtype == "bfloat16" and real.frames == (8, 16, 32, 64, 128, 256, 512)
    plan = latency.validate(real)
    assert plan.teacher.tokens_per_frame() == 256 and for_model(plan.student).num_visual_tokens(64) == 1024
    assert latency.llm_length(plan, 512, 256) > plan.max_llm_tokens > latency.llm_length(plan, 256, 256)
    with pytest.raises(ValueError, match="size='huge'"):
        latency_config.get_config("size=huge")


def test_out_of_memory_is_recorded_and_larger_frame_counts_are_skipped(monkeypatch):
    plan = latency.validate(_config(pipelines=("teacher",), stages=("vision",)))

    def exhausted(*args, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123 bytes.\nmore detail")

    monkeypatch.setattr(latency, "measure", exhausted)
    oom = {}
    first = latency.measure_point(plan, "teacher", 2, {"teacher": None}, oom)
    second = latency.measure_point(plan, "teacher", 4, {"teacher": None}, oom)
    assert first["skipped"] == "vision: out of memory: RESOURCE_EXHAUSTED: Out of memory while trying to " \
                               "allocate 123 bytes."
    assert second["skipped"] == "vision: out of memory already at 2 frames" and oom == {"vision": 2}
    assert first["vision_ms"] is None and first["vision_flops"] > 0

    def broken(*args, **kwargs):
        raise RuntimeError("INVALID_ARGUMENT: something else")

    monkeypatch.setattr(latency, "measure", broken)
    with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
        latency.measure_point(plan, "teacher", 2, {"teacher": None}, {})


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments.latency", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_help_and_errors(tmp_path):
    proc = _cli("--help")
    assert proc.returncode == 0 and "--accuracy" in proc.stdout and "teacher_wap" in proc.stdout
    proc = _cli("--config", "configs/latency.py:size=tiny", "--config.repeats=0", "--out", str(tmp_path / "o"))
    assert proc.returncode == 1 and "error: invalid latency config" in proc.stderr and "repeats=0" in proc.stderr
    assert not (tmp_path / "o").exists()
    proc = _cli("--config", "configs/latency.py:size=tiny")
    assert proc.returncode == 1 and "error: --out is required" in proc.stderr
