"""The CTD train step: one pure jitted function with explicit input/output shardings on a device mesh.

The teacher is frozen, passed as an argument (sharded by the same rules) and never part of the train state;
targets come either from running it online (teacher + WAP) or precomputed in the batch ("targets").
Train state: {"step": int32 scalar, "params": student params, "opt": optimizer state}.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from liteframe_jax.compression.teacher_targets import teacher_targets
from liteframe_jax.compression.wap import WAPConfig, compressed_grid_shape
from liteframe_jax.config_base import ConfigBase
from liteframe_jax.losses.ctd import ChannelStats, CTDLossConfig, ctd_loss, fidelity_metrics
from liteframe_jax.models.config import InternVLConfig, StudentConfig
from liteframe_jax.models.internvl import abstract_params
from liteframe_jax.models.student import LiteFrameStudent, abstract_student, init_student
from liteframe_jax.train.optim import guarded_update
from liteframe_jax.sharding import DEFAULT_RULES, Rules, batch_shardings, param_shardings


@dataclasses.dataclass(frozen=True)
class CTDSetup(ConfigBase):
    """What the CTD step is built from; validate() checks each part, then that they fit together."""

    config_name: ClassVar[str] = "CTD setup"
    parts: ClassVar[tuple[str, ...]] = ("student", "teacher", "wap", "loss")
    student: StudentConfig
    teacher: InternVLConfig
    wap: WAPConfig
    loss: CTDLossConfig

    def problems(self) -> list[str]:
        t = self.student.num_frames
        want = tuple(compressed_grid_shape(self.wap, self.teacher, t, self.student.image_size))
        got = self.student.output_shape(t)
        if got != want:
            return [f"student output {got} for {t} frames does not match the WAP target {want} "
                    f"(window {self.wap.window} at {self.wap.location}); adjust student.downsample/out_dim"]
        if self.student.image_size != self.teacher.vision.image_size:
            return [f"student image_size {self.student.image_size} != teacher image_size "
                    f"{self.teacher.vision.image_size}: teacher and student must see the same frames"]
        return []


def state_shardings(setup: CTDSetup, tx: optax.GradientTransformation, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """(abstract train state, matching tree of NamedShardings). Optimizer moments follow their parameters."""
    boxed = abstract_student(setup.student)
    p_sh = param_shardings(boxed, mesh, rules)
    abstract = jax.eval_shape(lambda: _fresh_state(setup, tx, 0))
    replicated = NamedSharding(mesh, P())
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract["opt"], p_sh,
                                   transform_non_params=lambda _: replicated)
    return abstract, {"step": replicated, "params": p_sh, "opt": opt_sh}


TEACHER_PARTS = ("vision", "projector")  # what CTD reads of the teacher (targets; the projector for DIR/student)


def abstract_teacher(setup: CTDSetup):
    """Boxed abstract teacher params CTD keeps on the devices: the vision tower and projector, not the LLM."""
    return {k: v for k, v in abstract_params(setup.teacher).items() if k in TEACHER_PARTS}


def teacher_shardings(setup: CTDSetup, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    return param_shardings(abstract_teacher(setup), mesh, rules)


def _fresh_state(setup: CTDSetup, tx, seed: int):
    params = nn.unbox(init_student(setup.student, seed))
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt": tx.init(params)}


def init_state(setup: CTDSetup, tx, mesh: Mesh, seed: int = 0, rules: Rules = DEFAULT_RULES):
    """Creates the train state directly in its shardings (no full copy on one device)."""
    _, sh = state_shardings(setup, tx, mesh, rules)
    return jax.jit(functools.partial(_fresh_state, setup, tx, seed), out_shardings=sh)()


def _targets(setup: CTDSetup, teacher_params, batch):
    if "targets" in batch:
        return batch["targets"]
    return teacher_targets(setup.teacher, teacher_params, batch["pixels"], setup.wap)


def _step(setup: CTDSetup, tx, state, teacher_params, stats_arrays, batch):
    stats = ChannelStats(*stats_arrays)
    targets = jax.lax.stop_gradient(_targets(setup, teacher_params, batch))

    def loss_fn(params):
        pred = LiteFrameStudent(setup.student).apply({"params": params}, batch["pixels"])
        return ctd_loss(pred, targets, stats, setup.loss)

    return guarded_update(tx, state, loss_fn)


def _eval(setup: CTDSetup, params, teacher_params, stats_arrays, batch):
    stats = ChannelStats(*stats_arrays)
    targets = _targets(setup, teacher_params, batch)
    pred = LiteFrameStudent(setup.student).apply({"params": params}, batch["pixels"])
    loss, terms = ctd_loss(pred, targets, stats, setup.loss)
    return {**terms, **fidelity_metrics(pred, targets, stats)}


def make_train_step(setup: CTDSetup, tx, mesh: Mesh, example_batch, rules: Rules = DEFAULT_RULES, donate=True):
    """jitted (state, teacher_params, (mean, std), batch) -> (state, metrics) with explicit shardings."""
    _, st_sh = state_shardings(setup, tx, mesh, rules)
    replicated = NamedSharding(mesh, P())
    return jax.jit(functools.partial(_step, setup, tx),
                   in_shardings=(st_sh, teacher_shardings(setup, mesh, rules), (replicated, replicated),
                                 batch_shardings(mesh, example_batch, rules)),
                   out_shardings=(st_sh, replicated), donate_argnums=(0,) if donate else ())


def make_eval_step(setup: CTDSetup, tx, mesh: Mesh, example_batch, rules: Rules = DEFAULT_RULES):
    """jitted (params, teacher_params, (mean, std), batch) -> fidelity metrics."""
    _, st_sh = state_shardings(setup, tx, mesh, rules)
    replicated = NamedSharding(mesh, P())
    return jax.jit(functools.partial(_eval, setup),
                   in_shardings=(st_sh["params"], teacher_shardings(setup, mesh, rules), (replicated, replicated),
                                 batch_shardings(mesh, example_batch, rules)),
                   out_shardings=replicated)
