"""`python -m liteframe_jax.train --config configs/lma.py` end to end: a two-stage frame curriculum, exact resume
across a process exit, the adapted model written and loadable, the same run from a QA frame store, config errors
before anything compiles."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--config.curriculum=2:3,4:3", "--config.train.log_every=1", "--config.train.eval_every=6",
         "--config.train.eval_batches=1", "--config.train.checkpoint_every=3", "--config.train.batch_size=4",
         "--config.data.synthetic_train_videos=12", "--config.data.synthetic_test_videos=3",
         "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]


def train(workdir, *overrides, config="configs/lma.py"):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "liteframe_jax.train", "--config", config, "--workdir",
                           str(workdir), *SHORT, *overrides], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def losses(workdir):
    recs = [json.loads(x) for x in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["frames"]) for r in recs if "loss" in r]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    work = tmp_path_factory.mktemp("lma_straight")
    proc = train(work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


def test_curriculum_runs_its_stages_and_writes_a_loadable_model(straight):
    import liteframe_jax as lf
    recs = losses(straight)
    assert [s for s, _, _ in recs] == list(range(1, 7)) and [f for *_, f in recs] == [2, 2, 2, 4, 4, 4]
    model = lf.load(straight / "model")
    assert model.is_liteframe and "lora" not in model.params
    meta = json.loads((straight / "model" / "liteframe.json").read_text())
    assert meta["stage"] == "lma" and meta["lora"]["rank"] == 8
    assert (straight / "model" / "tokenizer.json").is_file()


def test_interrupted_and_resumed_run_reproduces_the_straight_run(straight, tmp_path):
    work = tmp_path / "resumed"
    first = train(work, "--config.train.stop_at_step=4")  # stops inside the second curriculum stage
    assert first.returncode == 0, first.stderr[-4000:]
    assert not (work / "model").exists()
    second = train(work)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "resuming at step 4" in second.stderr
    np.testing.assert_array_equal(np.array(losses(work))[:, 1], np.array(losses(straight))[:, 1])
    from liteframe_jax.checkpoints.liteframe_store import load_liteframe
    _, a, _ = load_liteframe(work / "model", merge=False)
    _, b, _ = load_liteframe(straight / "model", merge=False)
    import jax
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_training_from_a_frame_store_reproduces_the_straight_run(straight, tmp_path):
    store = tmp_path / "store"
    extract = subprocess.run([sys.executable, "-m", "experiments.extract_frames", "--config", "configs/lma.py",
                              *SHORT, "--out", str(store)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert extract.returncode == 0, extract.stderr[-4000:]
    proc = train(tmp_path / "work", f"--config.data.frame_store={store}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"(frames from {store})" in proc.stderr
    assert losses(tmp_path / "work") == losses(straight)  # same batches, so the same losses, bit for bit


def test_sequences_fitted_to_the_records_train_like_padded_ones(straight, tmp_path):
    proc = train(tmp_path / "work", "--config.data.max_length=0")
    assert proc.returncode == 0, proc.stderr[-4000:]
    fitted = [int(n) for n in re.findall(r"sequences of (\d+) tokens, fitted to the records", proc.stderr)]
    assert len(fitted) == 2 and fitted[0] < fitted[1] < 224 and fitted[0] % 8 == fitted[1] % 8 == 0
    # padding is masked out of attention and loss: the same losses as with 224-token sequences
    np.testing.assert_allclose(np.array(losses(tmp_path / "work")), np.array(losses(straight)), rtol=1e-5)


def test_uint8_batches_normalized_in_the_step_train_like_host_normalized_ones(straight, tmp_path):
    proc = train(tmp_path / "work", "--config.data.normalize_on_host=False")
    assert proc.returncode == 0, proc.stderr[-4000:]
    np.testing.assert_allclose(np.array(losses(tmp_path / "work")), np.array(losses(straight)), rtol=1e-4)


@pytest.mark.parametrize("override,message", [
    ("--config.trainable=llm+lora", "either the full LLM"),
    ("--config.encoder=bogus", "encoder='bogus'"),
    ("--config.curriculum=8", "FRAMES:STEPS"),
    ("--config.train.batch_size=6", "multiple of the batch shards"),
    ("--config.data.frame_store=/nonexistent/store", "error: data.frame_store: no frame store at /nonexistent/store"),
    ("--config.data.synthetic_separate_persistent=True", "applies to the embedded events benchmark only"),
    ("--config.data.synthetic_train_clips=sparse", "must be 'benchmark' or 'dense'"),
    ("--config.data.synthetic_train_clips=dense", "synthetic_train_clips='dense' applies to the embedded events"),
    ("--config.data.synthetic_extra_clips=sparse", "synthetic_extra_clips must be 'benchmark' or 'dense'"),
    ("--config.teacher.grow_text_layers=4", "deepens a teacher.checkpoint's LLM; none is set"),
    ("--config.data.max_length=4", "max_length=4 >= 8 (or 0: fit the records)"),
])
def test_bad_configs_fail_before_compiling(tmp_path, override, message):
    proc = train(tmp_path / "bad", override)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]



def post_projector_student(dst):
    """A random tiny student whose tokens live after the projector, written as a CTD run writes one: the
    student plus the teacher's projector (the connector its targets went through)."""
    import dataclasses

    import flax.linen as nn

    from configs import internvl3_tiny
    from liteframe_jax.checkpoints.liteframe_store import save_liteframe
    from liteframe_jax.models.config import DownsampleStage, InternVLConfig
    from liteframe_jax.models.internvl import init_params
    from liteframe_jax.models.liteframe import LiteFrameConfig, init_liteframe
    from liteframe_jax.train.tiny_demo import tiny_student

    teacher = InternVLConfig.from_dict(internvl3_tiny.get_config().model.to_dict())
    student = dataclasses.replace(tiny_student(), out_dim=teacher.text.hidden_size,
                                  downsample=(DownsampleStage(1, (2, 4, 4), (3, 4, 4)),))
    cfg = LiteFrameConfig(student, teacher, "post_projector").validate()
    params = nn.unbox(init_liteframe(cfg, with_llm=False))
    assert "projector" not in params  # nothing on this path runs it
    save_liteframe(dst, cfg, {**params, "projector": nn.unbox(init_params(teacher))["projector"]}, stage="ctd")
    return dst


def test_a_student_after_the_projector_trains_without_one_and_writes_a_loadable_model(tmp_path):
    """post_projector: the student's tokens skip the projector, so the pipeline has none (training it is
    refused; LoRA alone trains) and the written model loads without one."""
    import liteframe_jax as lf
    student = post_projector_student(tmp_path / "student")
    work = tmp_path / "post_projector"
    proc = train(work, f"--config.student.checkpoint={student}", "--config.trainable=lora",
                 "--config.curriculum=2:2", "--config.train.eval_every=2", "--config.train.checkpoint_every=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    model = lf.load(work / "model")
    assert model.config.location == "post_projector"
    assert "projector" not in model.params and {"student", "llm"} <= set(model.params)
    refused = train(tmp_path / "bad", f"--config.student.checkpoint={student}")  # trainable projector+lora
    assert refused.returncode == 1 and "projector is not on the visual path" in refused.stderr, refused.stderr[-2000:]
