"""`python -m liteframe_jax.train --config configs/ctd.py` end to end: logging, exact resume after a process
exit, a clean stop on a non-finite loss, and config errors before anything compiles."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.train.ctd_cli import ROOT, STEPS, env, train


def records(workdir):
    return [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]


def final_params(workdir):
    import orbax.checkpoint as ocp
    step_dir = max((Path(workdir) / "checkpoints").iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1)
    restored = ocp.StandardCheckpointer().restore(step_dir / "state")
    return int(step_dir.name), restored["params"]


@pytest.fixture(scope="module")
def straight(ctd_straight_run):
    return ctd_straight_run


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run stopped as if interrupted after step 3 (a checkpoint step): (workdir, process). Tests that continue
    it work on copies."""
    work = tmp_path_factory.mktemp("stopped") / "run"
    return work, train(work, "--config.train.stop_at_step=3")


def copy_of(stopped, dst):
    shutil.copytree(stopped[0], dst)
    return dst


def test_a_run_logs_metrics_evaluates_and_checkpoints(straight):
    recs = records(straight)
    train_recs = [r for r in recs if "loss" in r]
    assert [r["step"] for r in train_recs] == list(range(1, 7))
    assert train_recs[-1]["loss"] < train_recs[0]["loss"]
    evals = [r for r in recs if "eval/cosine" in r]
    assert evals and {"eval/cka", "eval/normalized_mse"} <= set(evals[-1])
    assert list((straight / "tensorboard").iterdir())
    assert (straight / "target_stats.json").is_file() and (straight / "config.json").is_file()
    assert sorted(int(p.name) for p in (straight / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6]


def test_interrupted_and_resumed_run_reproduces_the_straight_run(straight, stopped, tmp_path):
    first = stopped[1]
    assert "stopping at step 3" in first.stderr
    assert max(r["step"] for r in records(stopped[0])) == 3
    work = copy_of(stopped, tmp_path / "resumed")
    second = train(work)  # the same command again: resumes from step 3, data iterator included
    assert "resuming at step 3" in second.stderr
    a = [r["loss"] for r in records(straight) if "loss" in r]
    b = [r["loss"] for r in records(work) if "loss" in r]
    assert b == a  # identical, step for step
    step_a, params_a = final_params(straight)
    step_b, params_b = final_params(work)
    assert step_a == step_b == 6
    import jax
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(stopped, tmp_path):
    work = copy_of(stopped, tmp_path / "nan")
    # a NaN in the run's saved target statistics makes the next loss non-finite; the statistics are an argument of
    # the compiled step, so (unlike e.g. a huge learning rate) this needs no new compilation
    stats = json.loads((work / "target_stats.json").read_text())
    stats["mean"][0] = float("nan")
    (work / "target_stats.json").write_text(json.dumps(stats))
    proc = train(work, expect_ok=False)
    assert proc.returncode == 1
    assert "non-finite loss at step" in proc.stderr and "last good checkpoint (step 3)" in proc.stderr
    steps = sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3]
    assert final_params(work)[0] == 3


def test_impossible_config_is_rejected_before_compiling(tmp_path):
    proc = train(tmp_path / "bad", "--config.student.num_heads=5", expect_ok=False)
    assert proc.returncode == 1 and "student.num_heads=5 does not divide" in proc.stderr
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_help_explains_the_entry_point():
    proc = subprocess.run([sys.executable, "-m", "liteframe_jax.train", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "--workdir" in proc.stdout and "resumes" in proc.stdout


def test_training_from_a_precomputed_teacher_cache_equals_online_training(tmp_path):
    # 64 videos: the 6 steps' 48 training clips without repeats (the teacher pass covers every video)
    no_aug = ["--config.data.random_resized_crop_scale=None", "--config.data.hflip=False",
              "--config.data.synthetic_videos=64"]
    proc = subprocess.run([sys.executable, "-m", "experiments.precompute_teacher", "--config", "configs/ctd.py",
                           "--out", str(tmp_path / "cache"), *no_aug], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "cache").is_dir() and not list(tmp_path.glob("cache.partial*"))
    train(tmp_path / "online", *no_aug)
    train(tmp_path / "cached", *no_aug, f"--config.train.target_cache={tmp_path / 'cache'}")
    online = [r["loss"] for r in records(tmp_path / "online") if "loss" in r]
    cached = [r["loss"] for r in records(tmp_path / "cached") if "loss" in r]
    np.testing.assert_allclose(cached, online, rtol=1e-5)
    # a cache written for other WAP settings is refused with the differing field named
    bad = train(tmp_path / "bad", *no_aug, f"--config.train.target_cache={tmp_path / 'cache'}",
                "--config.wap.weights=uniform", expect_ok=False)
    assert bad.returncode == 1 and "wap.weights" in bad.stderr


def test_uint8_batches_normalized_in_the_step_train_like_host_normalized_ones(straight, tmp_path):
    train(tmp_path / "uint8", "--config.data.normalize_on_host=False")
    ours = [r["loss"] for r in records(tmp_path / "uint8") if "loss" in r]
    host = [r["loss"] for r in records(straight) if "loss" in r]
    np.testing.assert_allclose(ours, host, rtol=1e-4)  # the same clips; normalization rounds a little differently


def test_unreadable_videos_are_skipped_counted_and_reported_while_training_continues(tmp_path):
    from liteframe_jax.data.synthetic import SyntheticVideoSpec, make_synthetic_video
    from liteframe_jax.data.video import write_video
    lines = []
    for i in range(16):
        path = tmp_path / f"clip{i}.mp4"
        write_video(path, make_synthetic_video(i, SyntheticVideoSpec(num_frames=8, size=56)).frames, fps=8.0)
        lines.append({"video": path.name})
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty.mp4").write_bytes(b"")
    lines += [{"video": "missing.mp4"}, {"video": "notes.mp4"}, {"video": "empty.mp4"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    work = tmp_path / "run"
    proc = train(work, "--config.data.source=manifest", f"--config.data.path={tmp_path / 'manifest.jsonl'}",
                 "--config.data.eval_fraction=0.25")
    from liteframe_jax.data.pipeline import DataConfig, split_indices
    data_cfg = DataConfig(source="manifest", path=str(tmp_path / "manifest.jsonl"), num_frames=4,
                          image_size=(56, 56), eval_fraction=0.25)
    train_ids = set(split_indices(data_cfg, "train").tolist())
    bad_in_train = [n for i, n in enumerate(entry["video"] for entry in lines) if i in train_ids and i >= 16]
    assert bad_in_train, "the split should leave at least one bad file in training"
    recs = [r for r in records(work) if "loss" in r]
    assert recs[-1]["step"] == 6 and recs[-1]["skipped_examples"] >= len(bad_in_train)
    for name in bad_in_train:
        assert f"skipped unreadable example: {tmp_path / name}" in proc.stderr, name
    assert "unreadable examples in total" in proc.stderr


def test_sigterm_checkpoints_the_current_step_and_exits_cleanly(tmp_path):
    """What a scheduler does before killing a job: the run finishes its step, commits a checkpoint, exits 0."""
    import signal
    import time

    long_run = [a for a in STEPS if "total_steps" not in a and "checkpoint_every" not in a] + [
        "--config.train.total_steps=500", "--config.optim.total_steps=500", "--config.train.checkpoint_every=100"]
    proc = subprocess.Popen([sys.executable, "-m", "liteframe_jax.train", "--config", "configs/ctd.py",
                             "--workdir", str(tmp_path), *long_run], cwd=ROOT, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        metrics = tmp_path / "metrics.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and any(json.loads(x)["step"] >= 2 for x in metrics.read_text().splitlines()):
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "received SIGTERM" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    step, _ = final_params(tmp_path)
    assert 2 <= step < 500 and not (tmp_path / "student").exists()
