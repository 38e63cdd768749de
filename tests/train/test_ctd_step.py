"""The CTD train step: sharding-invariant, learns, and never applies a non-finite update."""

import dataclasses
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.losses.ctd import CTDLossConfig
from liteframe_jax.models.config import DownsampleStage, StudentConfig
from liteframe_jax.models.internvl import init_params
from liteframe_jax.sharding import make_mesh
from liteframe_jax.train.ctd_step import (TEACHER_PARTS, CTDSetup, init_state, make_eval_step, make_train_step,
                                          state_shardings)
from liteframe_jax.train.optim import OptimConfig, make_optimizer

TEACHER = model_from_config(internvl3_tiny.get_config())
SETUP = CTDSetup(
    student=StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, out_dim=64,
                          num_frames=4, downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),)),
    teacher=TEACHER, wap=WAPConfig(window=(2, 2, 2)), loss=CTDLossConfig(cosine_weight=0.1)).validate()
TX = make_optimizer(OptimConfig(peak_lr=3e-3, warmup_steps=2, total_steps=40))
STATS = (np.zeros(64, np.float32), np.ones(64, np.float32))


@pytest.fixture(scope="module")
def teacher_params():
    """What CTD holds of the teacher (TEACHER_PARTS: the vision tower and projector)."""
    params = nn.unbox(init_params(TEACHER, seed=0))
    return {k: params[k] for k in TEACHER_PARTS}


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [{"pixels": rng.normal(size=(8, 4, 56, 56, 3)).astype(np.float32)} for _ in range(n)]


# Adam turns reduction-order noise in near-zero gradients into +-lr steps, so the invariance check uses a small lr
SMALL_LR_TX = make_optimizer(OptimConfig(peak_lr=1e-3, warmup_steps=1, total_steps=40))


def run(mesh_axes, teacher_params, steps=4, devices=None):
    mesh = make_mesh(mesh_axes, devices)
    data = batches(steps)
    state = init_state(SETUP, SMALL_LR_TX, mesh, seed=0)
    step = make_train_step(SETUP, SMALL_LR_TX, mesh, data[0])
    losses = []
    for b in data:
        state, m = step(state, teacher_params, STATS, b)
        losses.append(float(m["loss"]))
    return np.array(losses), state


def test_losses_are_the_same_on_one_device_and_on_eight_sharded_devices(teacher_params, record_property):
    one, _ = run({"data": 1}, teacher_params, devices=jax.devices()[:1])
    for axes in ({"data": 2, "fsdp": 4}, {"data": 4, "tensor": 2}):
        eight, state = run(axes, teacher_params)
        record_property(f"ctd-loss-8dev-vs-1dev-{'x'.join(axes)}", float(np.max(np.abs(eight - one) / np.abs(one))))
        np.testing.assert_allclose(eight, one, rtol=1e-5)
        # parameters and optimizer moments really are sharded as the rules say
        _, sh = state_shardings(SETUP, SMALL_LR_TX, make_mesh(axes))
        fc1 = state["params"]["layers_0"]["fc1"]["kernel"]
        assert fc1.sharding.spec == sh["params"]["layers_0"]["fc1"]["kernel"].spec
        assert fc1.sharding.spec == (P("fsdp", None) if "fsdp" in axes else P(None, "tensor"))
        mu = jax.tree.leaves(state["opt"], is_leaf=lambda x: hasattr(x, "sharding"))
        assert any(getattr(x, "sharding", None) is not None and x.sharding.spec == fc1.sharding.spec and
                   x.shape == fc1.shape for x in mu)


@pytest.fixture(scope="module")
def fsdp():
    """A data x fsdp mesh with its train step (without donation, so the initial state stays usable) and eval step,
    compiled once, and the initial state: shared by the tests below."""
    mesh = make_mesh({"data": 2, "fsdp": 4})
    example = batches(1)[0]
    return SimpleNamespace(mesh=mesh, state=init_state(SETUP, TX, mesh, seed=0),
                           step=make_train_step(SETUP, TX, mesh, example, donate=False),
                           evaluate=make_eval_step(SETUP, TX, mesh, example))


def test_training_lowers_the_loss_and_raises_cosine_fidelity(teacher_params, fsdp):
    data = batches(1, seed=1) * 30  # fit one batch: a sanity check that gradients flow to every part
    state, step, evaluate = fsdp.state, fsdp.step, fsdp.evaluate
    before = evaluate(state["params"], teacher_params, STATS, data[0])
    for b in data:
        state, _ = step(state, teacher_params, STATS, b)
    after = evaluate(state["params"], teacher_params, STATS, data[0])
    assert float(after["loss"]) < 0.5 * float(before["loss"])
    assert float(after["cosine"]) > float(before["cosine"]) + 0.1
    assert int(state["step"]) == 30


def test_a_non_finite_loss_leaves_the_state_untouched(teacher_params, fsdp):
    data = batches(1)
    state = fsdp.state
    bad = {"pixels": data[0]["pixels"].copy()}
    bad["pixels"][0, 0, 0, 0, 0] = np.nan
    new, metrics = fsdp.step(state, teacher_params, STATS, bad)
    assert not bool(metrics["finite"])
    assert int(new["step"]) == 0
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), new["params"],
                 state["params"])


def test_precomputed_targets_give_the_online_loss(teacher_params, fsdp):
    from liteframe_jax.compression.teacher_targets import teacher_targets
    b = batches(1)[0]
    cached = {**b, "targets": np.asarray(teacher_targets(TEACHER, teacher_params, b["pixels"], SETUP.wap))}
    params = fsdp.state["params"]
    online = fsdp.evaluate(params, teacher_params, STATS, b)
    offline = make_eval_step(SETUP, TX, fsdp.mesh, cached)(params, teacher_params, STATS, cached)
    np.testing.assert_allclose(float(offline["loss"]), float(online["loss"]), rtol=1e-6)


def test_mismatched_student_and_wap_target_shapes_are_rejected():
    with pytest.raises(ValueError, match="does not match the WAP target"):
        dataclasses.replace(SETUP, wap=WAPConfig(window=(4, 2, 2))).validate()
