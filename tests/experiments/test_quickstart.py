"""The README's main job runs end to end (reduced sizes): teacher import + parity, CTD, LMA for three pipelines,
evaluation on the held-out synthetic benchmark, export to PyTorch + parity, table/JSON/PNG outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_every_stage_and_reports_parity(tmp_path):
    work = tmp_path / "qs"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", "--workdir", str(work), "--frames", "4",
                           "--ctd_steps", "6", "--lma_steps", "6", "--train_videos", "20", "--test_videos", "4",
                           "--latency_repeats", "2"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "quickstart: OK" in proc.stdout and "[7/7]" in proc.stdout
    summary = json.loads((work / "summary.json").read_text())
    assert summary["teacher_parity"]["identical_greedy_tokens"] and summary["export_parity"]["identical_greedy_tokens"]
    assert summary["teacher_parity"]["logits_max_rel_err"] <= 1e-5
    assert summary["export_parity"]["logits_max_rel_err"] <= 1e-5
    rows = {r["encoder"]: r for r in summary["pipelines"]}
    assert set(rows) == {"teacher", "teacher_wap", "student"}
    # 56px frames: the teacher gives 4 tokens per frame, WAP (2, 2, 2) and the student 1 token per 2 frames
    assert rows["teacher"]["tokens_per_frame"] == 4 and rows["student"]["tokens_per_frame"] == 0.5
    assert rows["teacher_wap"]["visual_tokens"] == rows["student"]["visual_tokens"] == 2
    for r in rows.values():
        assert 0 <= r["accuracy"] <= 1 and r["encode_prefill_ms"] > 0
    assert (work / "comparison.png").stat().st_size > 1000 and (work / "comparison.txt").is_file()
    assert (work / "liteframe_hf" / "config.json").is_file() and (work / "ctd" / "student" / "liteframe.json").is_file()


def test_quickstart_help_exits_zero_and_bad_flags_fail():
    proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--lma_steps" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", "--lma_steps", "0"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "lma_steps" in proc.stderr
