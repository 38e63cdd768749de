"""experiments.extract_frames: the CLI writes a store that training reads with the batches of the videos, reports
skipped videos, refuses to replace a store unasked, and a rerun after a killed extraction works; for an LMA config
it writes a QA store directory for the curriculum's frame counts that the config's data accepts."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from configs import ctd, lma
from liteframe_jax.data.frames import moving_square_clip
from liteframe_jax.data.pipeline import DataConfig, build_dataset
from liteframe_jax.data.video import write_video

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--config", "configs/ctd.py:variant=tiny", "--config.data.synthetic_videos=6"]
LMA = ["--config", "configs/lma.py:variant=tiny", "--config.data.synthetic_train_videos=3",
       "--config.data.synthetic_test_videos=2", "--config.curriculum=2:1,4:1"]


def cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "experiments.extract_frames", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_help_names_the_options():
    proc = cli("--help")
    assert proc.returncode == 0
    for flag in ("--out", "--frame_size", "--encoding", "--jpeg_quality", "--overwrite"):
        assert flag in proc.stdout


def test_extracts_a_store_training_reads_as_the_videos_and_refuses_to_replace_it(tmp_path):
    out = tmp_path / "store"
    proc = cli(*TINY, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote 6 clips (0 skipped) to {out}" in proc.stdout and "clips/s" in proc.stdout
    assert "extracting frames" in proc.stderr  # the progress bar
    cfg = DataConfig.from_dict({**ctd.get_config("variant=tiny").data.to_dict(), "synthetic_videos": 6,
                                "eval_fraction": 0.0})
    a, b = (iter(build_dataset(c, "train", 2)[0]) for c in (cfg, cfg.replace(frame_store=str(out))))
    for _ in range(4):  # two epochs, augmented (the tiny config crops and flips)
        x, y = next(a), next(b)
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    again = cli(*TINY, "--out", str(out))
    assert again.returncode == 1 and "already exists (pass overwrite=True" in again.stderr
    assert cli(*TINY, "--out", str(out), "--overwrite").returncode == 0


def test_skipped_videos_are_counted_and_named_and_bad_input_is_one_line(tmp_path):
    write_video(tmp_path / "good.mp4", moving_square_clip(8, 32), fps=8)
    (tmp_path / "bad.mp4").write_text("not a video")
    (tmp_path / "m.jsonl").write_text('{"video": "good.mp4"}\n{"video": "bad.mp4"}\n')
    args = ["--config", "configs/ctd.py:variant=tiny", "--config.data.source=manifest",
            f"--config.data.path={tmp_path / 'm.jsonl'}"]
    proc = cli(*args, "--out", str(tmp_path / "s"), "--encoding=jpeg")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wrote 1 clips (1 skipped)" in proc.stdout
    assert f"skipped {tmp_path / 'bad.mp4'}: unreadable or corrupt" in proc.stderr
    info = json.loads((tmp_path / "s" / "store.json").read_text())
    assert (info["num_stored"], info["num_skipped"], info["encoding"]) == (1, 1, "jpeg")
    bad = cli("--config", "configs/ctd.py:variant=tiny", "--config.data.source=manifest",
              f"--config.data.path={tmp_path / 'nope.jsonl'}", "--out", str(tmp_path / "t"))
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: manifest")
    assert not (tmp_path / "t").exists()
    bad = cli(*args, "--out", str(tmp_path / "no" / "such" / "dir"))
    assert bad.returncode == 1 and "does not exist" in bad.stderr


def test_a_rerun_after_a_killed_extraction_removes_its_leftover(tmp_path):
    out = tmp_path / "store"
    code = ("from liteframe_jax.data.frame_store import FrameStoreWriter\n"
            f"w = FrameStoreWriter({str(out)!r}, 6, 4)\nprint('ready', flush=True)\nimport time\ntime.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert not out.exists() and len(list(tmp_path.glob("store.partial-*"))) == 1
    rerun = cli(*TINY, "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"removed 1 unfinished write(s) of frame store {out}" in rerun.stderr
    assert out.is_dir() and not list(tmp_path.glob("store.partial-*"))


def test_an_lma_config_is_extracted_for_its_curriculum_and_its_data_accepts_the_store(tmp_path):
    from liteframe_jax.train.qa_data import load_qa_records, qa_stores

    out = tmp_path / "qa"
    proc = cli(*LMA, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = lma.get_config("variant=tiny")
    config.data.synthetic_train_videos, config.data.synthetic_test_videos = 3, 2
    train, evaluate = load_qa_records(config)
    n = len({r.video for r in train + evaluate})  # one stored clip per synthetic video, not per question
    assert n < len(train) + len(evaluate)
    assert f"2 frames: {n} clips (0 skipped)" in proc.stdout and f"4 frames: {n} clips (0 skipped)" in proc.stdout
    assert f"wrote {n} clips of {len(train) + len(evaluate)} records at 2 frame count(s) to {out}" in proc.stdout
    assert "extracting 4 frames" in proc.stderr
    config.data.frame_store = str(out)
    assert sorted(qa_stores(config, train, evaluate, [2, 4])) == [2, 4]  # checked: it matches the config
    only = cli(*LMA, "--frames=4", "--frame_size=config", "--out", str(tmp_path / "only4"))
    assert only.returncode == 0, only.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "only4").iterdir()) == ["frames_4", "qa_stores.json"]
    bad = cli(*LMA, "--frames=4,x", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == "error: --frames must be integers, got 4,x"
    bad = cli(*TINY, "--frames=4", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and "--frames is for LMA configs" in bad.stderr
    assert not (tmp_path / "bad").exists()
