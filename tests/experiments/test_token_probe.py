"""experiments.token_probe: quadrant features of a token grid, the ridge probe, and the CLI on the shipped teacher
(brief objects' colours are in their tokens: a probe reading the wrong quadrant would be at chance)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from experiments import token_probe
from experiments.quickstart import SHIPPED_TEACHER

ROOT = Path(__file__).resolve().parents[2]


def test_quadrants_of_boxes_and_of_token_grids():
    assert [token_probe.quadrant(b) for b in [(0, 0, 40, 40), (60, 5, 100, 45), (10, 70, 50, 110),
                                              (70, 70, 110, 110)]] == [0, 1, 2, 3]
    two = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)  # 2 frames, 2 x 2 tokens of 3 dims
    np.testing.assert_array_equal(token_probe.quadrant_features(two, np.array([1, 2])), [two[0, 1], two[1, 2]])
    grid = np.zeros((1, 16, 1), np.float32)  # 4 x 4 tokens: the bottom-right quarter is tokens 10, 11, 14, 15
    grid[0, [10, 11, 14, 15], 0] = [1, 2, 3, 4]
    assert token_probe.quadrant_features(grid, np.array([3]))[0, 0] == 2.5
    assert token_probe.quadrant_features(grid, np.array([0]))[0, 0] == 0


def test_ridge_probe_separates_separable_classes_and_not_random_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 10)) + np.eye(10)[y] * 4
    pred = token_probe.ridge_probe(x[:200], y[:200], x[200:], 3, 1e-2)
    assert np.mean(pred == y[200:]) > 0.95
    noise = rng.integers(0, 3, 300)
    pred = token_probe.ridge_probe(x[:200], noise[:200], x[200:], 3, 1e-2)
    assert np.mean(pred == noise[200:]) < 0.55


def test_the_cli_finds_the_brief_objects_colour_in_the_shipped_teachers_tokens(tmp_path):
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.token_probe", "--checkpoint", str(SHIPPED_TEACHER),
                           "--train_clips", "80", "--test_clips", "40", "--wap", "2,2,2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    probes = json.loads(out.read_text())["probes"]
    pooled = {f"persistent_{k}@{loc}" for k in ("color", "shape") for loc in ("pre_shuffle", "post_shuffle",
                                                                              "post_projector")}
    assert set(probes) == set(token_probe.PROBES) | pooled
    assert all(probes[k]["n"] == probes["persistent_shape"]["n"] for k in pooled)
    # the pooled token still shows the always-visible object's colour (one of 8): 16 or more of 40 right has
    # probability < 1e-4 under guessing
    assert probes["persistent_color@pre_shuffle"]["accuracy"] >= 0.4
    assert probes["persistent_color@post_projector"]["accuracy"] >= 0.4
    assert probes["event_color"]["accuracy"] >= 0.8 and probes["event_color"]["chance"] == 0.125
    assert probes["event_vs_empty"]["n"] == 2 * probes["event_color"]["n"]
    lo, hi = probes["persistent_shape"]["ci95"]
    assert lo <= probes["persistent_shape"]["accuracy"] <= hi


def test_bad_arguments_are_refused_before_loading():
    proc = subprocess.run([sys.executable, "-m", "experiments.token_probe", "--checkpoint", "nowhere"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "not a directory" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "experiments.token_probe", "--checkpoint", str(SHIPPED_TEACHER),
                           "--wap", "2,2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "three positive integers" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "experiments.token_probe", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ridge" in proc.stdout
