"""Teacher pre-training: the shipped tiny teacher is what configs/teacher_pretrain.py's five documented commands
make, and each command runs (reduced); the first learns the colour task from random init."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import liteframe_jax as lf
from configs import teacher_pretrain
from experiments.quickstart import SHIPPED_TEACHER

ROOT = Path(__file__).resolve().parents[2]


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _json_roundtrip(config) -> dict:
    return json.loads(json.dumps(config.to_dict(), default=list))


# fields added to the config after the first (second) command ran, at values that change nothing
ADDED_SINCE_SECOND = {"data.synthetic_extra_clips": "benchmark", "teacher.grow_text_layers": 0}
ADDED_SINCE_FIRST = {"data.synthetic_extra_videos": 0, "data.synthetic_extra_tasks": "", **ADDED_SINCE_SECOND}


def _recorded_equals_documented(recorded: str, documented: str | None, added: dict) -> None:
    """The run config the asset recorded is the documented command's, less fields added since at no-op values."""
    then = _flat(json.loads((SHIPPED_TEACHER / recorded).read_text()))
    now = _flat(_json_roundtrip(teacher_pretrain.get_config(documented)))
    assert {k: now.pop(k) for k in added} == added and then == now


def test_the_shipped_teacher_was_made_by_the_five_documented_commands():
    _recorded_equals_documented("pretrain_config.json", None, ADDED_SINCE_FIRST)
    _recorded_equals_documented("shape_stage_config.json", teacher_pretrain.SHAPE_STAGE, ADDED_SINCE_SECOND)
    _recorded_equals_documented("grow_stage_config.json", teacher_pretrain.GROW_STAGE, {})
    _recorded_equals_documented("count_stage_config.json", teacher_pretrain.COUNT_STAGE, {})
    _recorded_equals_documented("presence_stage_config.json", teacher_pretrain.PRESENCE_STAGE, {})
    model = lf.load(SHIPPED_TEACHER)
    assert model.llm_config.vision.image_size == (56, 56) and "vision" in model.params
    assert model.llm_config.text.num_layers == 4  # grown from 2 by GROW_STAGE
    size = sum(f.stat().st_size for f in SHIPPED_TEACHER.rglob("*") if f.is_file())
    assert size < 4e6  # a few MB in the repository


def test_config_arguments_are_checked():
    with pytest.raises(ValueError, match="need steps >= 2"):
        teacher_pretrain.get_config("steps=1")
    c = teacher_pretrain.get_config("steps=30,frames=4,videos=10,benchmark=shapes")
    assert c.curriculum == "4:30" and c.trainable == "vision+projector+llm" and c.data.answer_format == "text"
    assert c.data.synthetic_train_clips == "benchmark" and not c.data.synthetic_separate_persistent
    assert teacher_pretrain.get_config("frames=2").curriculum == "2:3000"
    assert teacher_pretrain.get_config("steps=40").curriculum == "12:40"
    with pytest.raises(ValueError, match="FRAMES:STEPS/FRAMES:STEPS"):
        teacher_pretrain.get_config("stages=12:600+20:400")
    with pytest.raises(ValueError, match="per stage"):
        teacher_pretrain.get_config("stages=12:600/0:400")
    with pytest.raises(ValueError, match="multiple of 56"):
        teacher_pretrain.get_config("image_size=84")
    with pytest.raises(ValueError, match="benchmark=events only"):
        teacher_pretrain.get_config("benchmark=shapes,clips=dense")
    with pytest.raises(ValueError, match="shape_videos and extra_videos must be >= 0, got -1, 0"):
        teacher_pretrain.get_config("shape_videos=-1")
    c = teacher_pretrain.get_config("init=runs/teacher/model,shape_videos=12000,frames=12,steps=1000")
    assert c.teacher.checkpoint == "runs/teacher/model" and c.curriculum == "12:1000"
    assert (c.data.synthetic_extra_videos, c.data.synthetic_extra_tasks) == (12000, "persistent_shape")
    assert teacher_pretrain.get_config("benchmark=shapes,shape_videos=10").data.synthetic_extra_tasks == "shape"
    with pytest.raises(ValueError, match="not both"):
        teacher_pretrain.get_config("shape_videos=10,extra_videos=10,extra_tasks=event_count")
    with pytest.raises(ValueError, match="must be >= 0, got 0, -1"):
        teacher_pretrain.get_config("extra_videos=-1")
    c = teacher_pretrain.get_config(teacher_pretrain.GROW_STAGE)
    assert (c.teacher.checkpoint, c.teacher.grow_text_layers, c.curriculum) == ("runs/teacher_shape/model", 4,
                                                                               "12:2500")
    assert (c.data.synthetic_extra_videos, c.data.synthetic_extra_tasks, c.data.synthetic_extra_clips) == \
        (12000, "persistent_shape,event_count", "dense")
    c = teacher_pretrain.get_config(teacher_pretrain.COUNT_STAGE)
    assert (c.teacher.checkpoint, c.teacher.grow_text_layers) == ("runs/teacher_count/model", 0)  # stays 4 deep
    assert (c.data.synthetic_extra_videos, c.data.synthetic_extra_tasks, c.curriculum) == \
        (24000, "persistent_shape,event_count", "12:3000")
    c = teacher_pretrain.get_config(teacher_pretrain.PRESENCE_STAGE)
    assert (c.teacher.checkpoint, c.teacher.grow_text_layers) == ("runs/teacher_count2/model", 0)
    assert (c.data.synthetic_extra_videos, c.data.synthetic_extra_tasks, c.curriculum) == \
        (24000, "persistent_shape,event_count,event_presence", "12:3000")
    # without init, text_layers is the random LLM's depth (2 unless given) and nothing grows
    assert teacher_pretrain.get_config().teacher.model.text.num_layers == 2
    c = teacher_pretrain.get_config("text_layers=3")
    assert c.teacher.model.text.num_layers == 3 and c.teacher.grow_text_layers == 0
    c = teacher_pretrain.get_config("frames=12,image_size=112")
    assert c.teacher.model.vision.image_size == (112, 112) and c.data.image_size == (112, 112)
    assert c.data.synthetic_train_clips == "dense" and c.data.synthetic_separate_persistent
    assert c.data.max_length == 160 + 28 * 12  # 16 visual + about 12 text tokens per frame


def test_the_default_recipe_alternates_12_and_20_frames_on_dense_separated_clips():
    c = teacher_pretrain.get_config()
    assert c.curriculum == "12:600,20:400,12:600,20:400,12:500,20:500"
    assert c.data.synthetic_train_clips == "dense" and c.data.synthetic_separate_persistent
    assert c.data.synthetic_train_videos == 3000 and c.data.synthetic_benchmark == "events"
    # room for the longer stage's prompt; evaluation and checkpoints spread over the 3000 steps
    assert c.data.max_length == 160 + 16 * 20
    assert (c.train.eval_every, c.train.checkpoint_every, c.optim.warmup_steps) == (1000, 600, 50)


def _train(args: list[str], cwd=ROOT) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-m", "liteframe_jax.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
    """Reduced first command: 200 steps at 2 frames on the persistent-colour questions of benchmark clips only
    (the static task the full run learns first; a train file takes the place of the dense, separated synthetic
    split). Returns (workdir, held-out records)."""
    from liteframe_jax.data.video_qa import synthetic_spec, synthetic_splits, write_records

    tmp = tmp_path_factory.mktemp("pretrain")
    train, test = synthetic_splits(synthetic_spec("events", num_frames=128), 300, 40)
    write_records(tmp / "train.jsonl", [r for r in train if r.task == "persistent_color"])
    write_records(tmp / "eval.jsonl", [r for r in test if r.task == "persistent_color"][:8])
    work = tmp / "pretrain"
    _train(["--config", "configs/teacher_pretrain.py:steps=200,frames=2,clips=benchmark,separate=false",
            "--workdir", str(work), f"--config.data.train_file={tmp / 'train.jsonl'}",
            f"--config.data.eval_file={tmp / 'eval.jsonl'}", "--config.train.eval_every=200",
            "--config.train.eval_batches=1", "--config.train.checkpoint_every=200", "--config.train.log_every=1"])
    return work, test


def test_the_command_pretrains_from_random_init_and_learns_the_persistent_colour(first_stage):
    from liteframe_jax.evaluate import evaluate_benchmark

    work, test = first_stage
    model = lf.load(work / "model")
    shipped = lf.load(SHIPPED_TEACHER).params
    # the first command's teacher has the shipped one's parts, less the two LLM layers GROW_STAGE adds
    shipped = {**shipped, "llm": {k: v for k, v in shipped["llm"].items() if k not in ("layers_2", "layers_3")}}
    assert jax.tree.structure(model.params) == jax.tree.structure(shipped)
    assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(shipped)))

    colour = [r for r in test if r.task == "persistent_color"]
    result = evaluate_benchmark(model, colour, 2, method="loglik_text", system_message=None, batch_size=8)
    # chance is 0.25 (4 options); with 40 questions, 0.6 or more has probability < 1e-5 under guessing
    assert result["overall"]["total"] == 40 and result["overall"]["accuracy"] >= 0.6, result["overall"]


def test_the_shape_stage_continues_from_the_first_stages_teacher(first_stage, tmp_path):
    """Reduced second command: init= the first stage's teacher, dense separated clips plus the persistent-shape
    questions of shape_videos more clips. It starts from the first stage's weights and trains every group."""
    work, _ = first_stage
    shape = tmp_path / "shape"
    _train(["--config", f"configs/teacher_pretrain.py:init={work / 'model'},shape_videos=24,videos=4,frames=2,"
            "steps=4", "--workdir", str(shape), "--config.train.eval_every=4", "--config.train.eval_batches=1",
            "--config.train.checkpoint_every=4", "--config.train.log_every=1",
            "--config.data.synthetic_test_videos=2"])
    recorded = json.loads((shape / "config.json").read_text())
    assert recorded["teacher"]["checkpoint"] == str(work / "model")
    assert (recorded["data"]["synthetic_extra_videos"], recorded["data"]["synthetic_extra_tasks"]) == \
        (24, "persistent_shape")
    before, after = lf.load(work / "model"), lf.load(shape / "model")
    moved = [np.asarray(a) - np.asarray(b)
             for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(before.params))]
    assert all(np.any(m != 0) for m in moved)  # every group trains
    norm = lambda leaves: np.sqrt(sum(float(np.sum(np.square(x))) for x in leaves))  # noqa: E731
    # 4 small steps from the first stage's weights (a fresh init would be as far away as the weights are long)
    assert norm(moved) < 0.05 * norm(jax.tree.leaves(before.params))


def test_the_count_stages_deepen_the_llm_and_train_on_dense_count_questions(first_stage, tmp_path):
    """Reduced GROW_STAGE: init= a teacher, its LLM grown from 2 to 4 layers, plus the event-count and
    persistent-shape questions of extra_videos more dense clips. The old weights move a little, the new layers'
    zeroed output projections start to move. Reduced COUNT_STAGE / PRESENCE_STAGE (the same command with one more
    task): from that teacher, the shape, count and presence questions of more dense clips, the LLM staying 4
    layers deep."""
    work, _ = first_stage
    count = tmp_path / "count"
    _train(["--config", f"configs/teacher_pretrain.py:init={work / 'model'},text_layers=4,extra_videos=12,"
            "extra_tasks=persistent_shape+event_count,extra_clips=dense,videos=4,frames=2,steps=4",
            "--workdir", str(count), "--config.train.eval_every=4", "--config.train.eval_batches=1",
            "--config.train.checkpoint_every=4", "--config.train.log_every=1",
            "--config.data.synthetic_test_videos=2"])
    recorded = json.loads((count / "config.json").read_text())
    assert recorded["teacher"]["grow_text_layers"] == 4 and recorded["data"]["synthetic_extra_clips"] == "dense"
    before, after = lf.load(work / "model"), lf.load(count / "model")
    assert (before.llm_config.text.num_layers, after.llm_config.text.num_layers) == (2, 4)
    new = after.params["llm"]["layers_3"]
    assert np.any(np.asarray(new["attn"]["o"]["kernel"]) != 0) and np.any(np.asarray(new["down"]["kernel"]) != 0)
    old = np.asarray(before.params["llm"]["layers_1"]["up"]["kernel"])
    moved = np.asarray(after.params["llm"]["layers_1"]["up"]["kernel"]) - old
    assert np.any(moved != 0) and np.linalg.norm(moved) < 0.05 * np.linalg.norm(old)
    fourth = tmp_path / "count2"
    _train(["--config", f"configs/teacher_pretrain.py:init={count / 'model'},extra_videos=16,"
            "extra_tasks=persistent_shape+event_count+event_presence,extra_clips=dense,videos=4,frames=2,steps=2",
            "--workdir", str(fourth), "--config.train.eval_every=2", "--config.train.eval_batches=1",
            "--config.train.checkpoint_every=2", "--config.data.synthetic_test_videos=2"])
    recorded = json.loads((fourth / "config.json").read_text())
    assert recorded["teacher"]["grow_text_layers"] == 0
    assert recorded["data"]["synthetic_extra_tasks"] == "persistent_shape,event_count,event_presence"
    assert lf.load(fourth / "model").llm_config.text.num_layers == 4
