"""The README's main job runs end to end and reports parity with the PyTorch reference."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_and_matches_pytorch(tmp_path):
    work = tmp_path / "qs"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", "--workdir", str(work), "--frames", "4",
                           "--max_new_tokens", "3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "quickstart: OK" in proc.stdout and "[4/4]" in proc.stdout
    summary = json.loads((work / "summary.json").read_text())
    assert summary["identical_greedy_tokens"] is True
    assert max(summary["max_rel_err"].values()) <= 1e-5
    assert (work / "teacher" / "liteframe.json").is_file() and (work / "hf_teacher" / "config.json").is_file()


def test_quickstart_help_exits_zero():
    proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--workdir" in proc.stdout
