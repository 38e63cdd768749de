"""`python -m liteframe_jax.generate`: one answer about one video; its helpers and its user errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liteframe_jax.generate import answer, clip_pixels, load_model, video_record

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "What colour is the square?"


def build_tiny_checkpoints(root: Path) -> tuple[Path, Path]:
    """A random tiny LiteFrame Video LLM (LMA-shaped, with the tiny tokenizer) and its encoder-only (CTD-shaped)
    twin under root; built once per test session (the second caller reuses them)."""
    model_dir, encoder_dir = root / "model", root / "encoder"
    if model_dir.exists() and encoder_dir.exists():
        return model_dir, encoder_dir
    from flax import linen as nn

    from configs import ctd, internvl3_tiny
    from configs.common import model_from_config
    from liteframe_jax.checkpoints.liteframe_store import save_liteframe
    from liteframe_jax.data.tokenizer import save_tiny_tokenizer
    from liteframe_jax.models.config import StudentConfig
    from liteframe_jax.models.liteframe import LiteFrameConfig, init_liteframe

    save_tiny_tokenizer(root / "tokenizer", 512)
    c = ctd.get_config("variant=tiny")
    cfg = LiteFrameConfig(StudentConfig.from_dict(c.student.to_dict()), model_from_config(internvl3_tiny.get_config()),
                          c.wap.location).validate()
    params = nn.unbox(init_liteframe(cfg, seed=0, with_llm=True))
    save_liteframe(model_dir, cfg, params, tokenizer_dir=root / "tokenizer", overwrite=True)
    save_liteframe(encoder_dir, cfg, {k: v for k, v in params.items() if k != "llm"}, stage="ctd",
                   tokenizer_dir=root / "tokenizer", overwrite=True)
    return model_dir, encoder_dir


def cli_env(root: Path) -> dict:
    """Subprocess environment sharing a persistent XLA compilation cache (the CLIs compile the same functions as
    the tests in this process): the session's (tests/conftest.py) when there is one, else one under root."""
    env = dict(os.environ)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(root / "jax_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return env


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return build_tiny_checkpoints(tmp_path_factory.getbasetemp() / "tiny_video_llm")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return cli_env(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def model(checkpoints):
    return load_model(checkpoints[0])


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "liteframe_jax.generate", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def test_help_explains_the_tool_and_frame_repetition():
    out = cli("--help")
    assert out.returncode == 0
    assert "--checkpoint" in out.stdout and "synthetic:<seed>:<index>" in out.stdout
    assert "repeats frames" in out.stdout.replace("\n", " ")


def test_cli_answers_about_a_synthetic_video(checkpoints, model, env):
    out = cli("--checkpoint", checkpoints[0], "--video", "synthetic:0:3", "--question", QUESTION, "--frames", 4,
              "--max_new_tokens", 6, env=env)
    assert out.returncode == 0, out.stderr
    expected = answer(model, clip_pixels(model, video_record("synthetic:0:3"), 4), QUESTION, 6)
    assert out.stdout == expected + "\n" and expected  # a non-empty answer from the random tiny model
    assert "visual tokens" in out.stderr and "answered in" in out.stderr


def test_cli_answers_about_a_video_file_within_bounds(checkpoints, model, env, tmp_path):
    from liteframe_jax.data.synthetic import make_synthetic_video
    from liteframe_jax.data.video import write_video
    path = tmp_path / "clip.mp4"
    write_video(path, make_synthetic_video(5).frames, fps=8.0)
    out = cli("--checkpoint", checkpoints[0], "--video", path, "--question", QUESTION, "--frames", 4,
              "--max_new_tokens", 6, "--start", 0.25, "--end", 1.5, "--system_message", "none", env=env)
    assert out.returncode == 0, out.stderr
    pixels = clip_pixels(model, video_record(str(path), start=0.25, end=1.5), 4)
    assert out.stdout == answer(model, pixels, QUESTION, 6, system_message="none") + "\n"


def test_cli_user_errors(checkpoints, tmp_path):
    model_dir, encoder_dir = checkpoints
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    cases = [
        (["--video", tmp_path / "missing.mp4", "--question", QUESTION], "does not exist"),
        (["--video", broken, "--question", QUESTION], "cannot decode video"),
        (["--video", "synthetic:0:1", "--question", "   "], "the question is empty"),
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "liteframe_jax.generate", "--checkpoint", str(model_dir),
                               *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args, _ in cases]
    procs += [subprocess.Popen([sys.executable, "-m", "liteframe_jax.generate", "--checkpoint", str(ckpt), "--video",
                                "synthetic:0:1", "--question", QUESTION], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for ckpt in (encoder_dir, tmp_path)]
    messages = [m for _, m in cases] + ["encoder-only LiteFrame checkpoint", "is not a LiteFrame-JAX checkpoint"]
    for proc, message in zip(procs, messages):
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, (message, stderr)
        assert stderr.startswith("error: ") and message in stderr, stderr
        assert stdout == ""


def test_more_frames_than_the_video_has_repeat_frames(model):
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.data.pipeline import crop_resize
    from liteframe_jax.data.synthetic import SyntheticVideoSpec, make_synthetic_video
    from liteframe_jax.data.video_qa import QARecord
    spec = {"num_frames": 4, "seed": 0}
    record = QARecord(video="synthetic:0:2", question="q", answer="a", synthetic=spec)
    pixels = clip_pixels(model, record, 8)
    # InternVL's segment rule for 8 of 4 frames: [0, 0, 1, 1, 2, 2, 2, 3]
    frames = make_synthetic_video(2, SyntheticVideoSpec(**spec)).frames[[0, 0, 1, 1, 2, 2, 2, 3]]
    np.testing.assert_array_equal(pixels, normalize_frames(crop_resize(frames, model.image_size)))


def test_answer_rejects_an_empty_question(model):
    pixels = clip_pixels(model, video_record("synthetic:0:1"), 2)
    with pytest.raises(ValueError, match="the question is empty"):
        answer(model, pixels, " ")
