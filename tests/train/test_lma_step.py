"""The LMA step: answer-only cross-entropy, frozen parts without optimizer state, LoRA-only updates, sharding."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models.config import ConfigError
from liteframe_jax.models.internvl import init_params
from liteframe_jax.models.lora import LoRAConfig, init_lora
from liteframe_jax.models.liteframe import LiteFrameConfig
from liteframe_jax.train.lma import parse_curriculum, stage_at
from liteframe_jax.train.tiny_demo import tiny_student, tiny_wap
from liteframe_jax.sharding import batch_shardings, make_mesh
from liteframe_jax.train.lma_step import LMASetup, init_state, make_train_step, state_shardings
from liteframe_jax.train.optim import OptimConfig, make_optimizer


def _teacher():
    return model_from_config(internvl3_tiny.get_config())


def test_curriculum_is_parsed_and_stages_follow_the_steps():
    cur = parse_curriculum("4:10, 8:5")
    assert cur == [(4, 10), (8, 5)]
    assert [stage_at(cur, s) for s in (1, 10, 11, 15)] == [0, 0, 1, 1]
    for bad in ("", "4", "4:0", "a:b"):
        with pytest.raises(ValueError):
            parse_curriculum(bad)


def test_setup_validation_names_the_problem():
    t = _teacher()
    with pytest.raises(ConfigError, match="either the full LLM"):
        LMASetup("teacher", t, ("llm", "lora"), lora=LoRAConfig(rank=2)).validate()
    with pytest.raises(ConfigError, match="lora config is needed"):
        LMASetup("teacher", t, ("projector", "lora")).validate()
    with pytest.raises(ConfigError, match="'student' is trainable only"):
        LMASetup("teacher", t, ("student",)).validate()
    with pytest.raises(ConfigError, match="needs a WAP config"):
        LMASetup("teacher_wap", t, ("projector",)).validate()
    with pytest.raises(ConfigError, match="'vision' .* is trainable only with encoder='teacher'"):
        student = LiteFrameConfig(tiny_student(), t, tiny_wap().location)
        LMASetup("student", t, ("vision",), liteframe=student).validate()


def _batch(t, b=4, frames=2, length=24, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 200, (b, length)).astype(np.int32)
    ids[:, 2:2 + frames * t.tokens_per_frame()] = t.image_token_id
    loss_mask = np.zeros((b, length), np.float32)
    loss_mask[:, -4:] = 1
    return {"pixels": rng.normal(size=(b, frames, 56, 56, 3)).astype(np.float32), "input_ids": ids,
            "loss_mask": loss_mask, "attention_mask": np.ones((b, length), np.int32)}


def _run(setup, mesh_axes, steps=3):
    t = setup.teacher
    tx = make_optimizer(OptimConfig(peak_lr=1e-2, warmup_steps=0, total_steps=10))
    n = int(np.prod(list(mesh_axes.values())))
    mesh = make_mesh(mesh_axes, jax.devices()[:n])
    _, st_sh, fr_sh = state_shardings(setup, tx, mesh)
    full = nn.unbox(init_params(t, seed=0))
    trainable = {k: full[k] for k in setup.trainable if k in full}
    if setup.lora:
        trainable["lora"] = init_lora(full["llm"], setup.lora, jax.random.key(1))
    frozen = jax.device_put({k: v for k, v in full.items() if k not in setup.trainable}, fr_sh)
    state = init_state(tx, jax.device_put(trainable, st_sh["params"]), st_sh)
    batch = _batch(t)
    step = make_train_step(setup, tx, mesh, batch)
    losses = []
    for _ in range(steps):
        state, m = step(state, frozen, jax.device_put(batch, batch_shardings(mesh, batch)))
        losses.append(float(m["loss"]))
    return state, frozen, full, losses


def test_lora_training_updates_only_adapters_and_projector_and_lowers_the_loss():
    setup = LMASetup("teacher", _teacher(), ("projector", "lora"), lora=LoRAConfig(rank=2, alpha=4)).validate()
    state, frozen, full, losses = _run(setup, {"data": 1, "fsdp": 1, "tensor": 1}, steps=5)
    assert losses[-1] < losses[0]
    assert set(state["params"]) == {"projector", "lora"}
    opt_leaves = jax.tree.leaves(state["opt"])
    n_trainable = sum(x.size for x in jax.tree.leaves(state["params"]))
    assert sum(x.size for x in opt_leaves) <= 2 * n_trainable + 16  # moments for trainable params only
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(frozen["llm"]), full["llm"])
    assert not np.allclose(state["params"]["lora"]["layers_0"]["attn"]["q"]["b"], 0)


def test_teacher_pretraining_trains_every_group_of_the_teacher():
    setup = LMASetup("teacher", _teacher(), ("vision", "projector", "llm")).validate()
    state, frozen, _, losses = _run(setup, {"data": 1, "fsdp": 1, "tensor": 1}, steps=4)
    assert losses[-1] < losses[0] and set(state["params"]) == {"vision", "projector", "llm"} and not frozen
    full = nn.unbox(init_params(setup.teacher, seed=0))  # _run's initial params were donated to the step
    for part in ("vision", "projector", "llm"):
        moved = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(jax.device_get(state["params"][part])),
                                                       jax.tree.leaves(full[part]))]
        assert sum(moved) > len(moved) // 2, part


def test_teacher_wap_path_trains_on_8_devices_like_on_1():
    setup = LMASetup("teacher_wap", _teacher(), ("projector", "lora"), wap=WAPConfig(window=(2, 2, 2)),
                     lora=LoRAConfig(rank=2, alpha=4)).validate()
    assert setup.frames_per_group == 2 and setup.tokens_per_group() == 1
    *_, one = _run(setup, {"data": 1, "fsdp": 1, "tensor": 1})
    *_, many = _run(setup, {"data": 2, "fsdp": 2, "tensor": 2})
    np.testing.assert_allclose(many, one, rtol=1e-5)
