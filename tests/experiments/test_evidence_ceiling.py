"""experiments.evidence_ceiling: the command writes ceilings per frame count and a render time."""

import json
import subprocess
import sys
from pathlib import Path

from experiments import evidence_ceiling
from liteframe_jax.data.synthetic_events import EventVideoSpec

ROOT = Path(__file__).resolve().parents[2]


def test_render_seconds_is_a_positive_median():
    assert 0 < evidence_ceiling.render_seconds(EventVideoSpec(size=32), repeats=3) < 1


def test_command_writes_ceilings_per_frame_count(tmp_path):
    out = tmp_path / "c.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.evidence_ceiling", "--videos", "6", "--frames", "8,64",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["questions"] == 42 and [row["frames"] for row in result["rows"]] == [8, 64]
    assert result["rows"][1]["overall"] == 1.0 and result["rows"][0]["overall"] < 1.0
    assert "T=  8" in proc.stdout


def test_command_rejects_a_clip_too_short_for_the_events():
    proc = subprocess.run([sys.executable, "-m", "experiments.evidence_ceiling", "--num_frames", "16"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "num_frames" in proc.stderr
