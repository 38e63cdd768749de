"""CTD (Compressed Token Distillation) as a training task: the student learns to predict the frozen teacher's
WAP-compressed tokens, normalized by channel statistics estimated once per run (DIR/target_stats.json). Targets
come from the teacher online or from a precomputed cache (train.target_cache). liteframe_jax.train.loop runs it;
the distilled encoder is written to DIR/student."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from liteframe_jax.compression.teacher_targets import teacher_targets
from liteframe_jax.files import write_json
from liteframe_jax.data.pipeline import build_dataset
from liteframe_jax.losses.ctd import ChannelStats, ChannelStatsAccumulator
from liteframe_jax.sharding import global_batch
from liteframe_jax.train import loop
from liteframe_jax.train.checkpointing import abstract_with_shardings, to_host
from liteframe_jax.train.ctd_step import (TEACHER_PARTS, CTDSetup, init_state, make_eval_step, make_train_step,
                                          state_shardings, teacher_shardings)
from liteframe_jax.train.optim import make_optimizer
from liteframe_jax.train.task import Phase, Run
from liteframe_jax.train.experiment import parse_ctd
from liteframe_jax.train.teacher import teacher_identity
from liteframe_jax.train.teacher import teacher_params as load_teacher

STATS_FILE = "target_stats.json"
STUDENT_DIR = "student"


def teacher_params(config, setup: CTDSetup, mesh, rules) -> dict:
    """The frozen teacher's vision tower + projector (TEACHER_PARTS) placed in their shardings on `mesh` (never
    checkpointed with the run; the LLM is not loaded)."""
    return load_teacher(config, setup.teacher, TEACHER_PARTS, teacher_shardings(setup, mesh, rules))


class CTDTask:
    """Train state: the student's params and optimizer state. Frozen step arguments: (teacher params, (channel
    mean, channel std)). One phase: the whole run."""

    skipped_what = "unreadable"

    def __init__(self, config):
        self.config = config
        exp = parse_ctd(config, process_count=jax.process_count())  # with the checks only a run needs
        self.ctd, self.optim, self.data, self.loop = exp.setup, exp.optim, exp.data, exp.loop
        self.tx = make_optimizer(self.optim)
        self.run: Run | None = None
        self.frozen: tuple = ()

    def setup(self, run: Run) -> None:
        self.run = run
        teacher = teacher_params(self.config, self.ctd, run.mesh, run.rules)
        stats_path = run.workdir / STATS_FILE
        if stats_path.exists():
            stats = ChannelStats.from_dict(json.loads(stats_path.read_text()))
        else:
            stats = self._estimate_stats(teacher)
            if jax.process_index() == 0:
                write_json(stats_path, stats.to_dict(), indent=None)
        if self.config.train.target_cache:
            from liteframe_jax.data.target_cache import TargetCache
            TargetCache(self.config.train.target_cache).check_compatible(
                {"wap": self.ctd.wap.to_dict(), "teacher": teacher_identity(self.config)})
        self.frozen = (teacher, (np.asarray(stats.mean), np.asarray(stats.std)))

    def _dataset(self, split: str, augment: bool = True):
        """(dataset, skip stats); with a target cache, batches carry "targets" and augmentation is off."""
        cache = self.config.train.target_cache or None
        return build_dataset(self.data, split, self.run.local_batch, jax.process_index(), jax.process_count(),
                             augment=augment and cache is None, cache=cache)

    def _estimate_stats(self, teacher) -> ChannelStats:
        """Per-channel mean/std of the targets over train.stats_batches un-augmented training batches."""
        it = iter(self._dataset("train", augment=False)[0])
        acc = ChannelStatsAccumulator()
        for _ in range(self.config.train.stats_batches):
            batch = global_batch(self.inputs(next(it)), self.run.mesh, self.run.rules)
            t = batch["targets"] if "targets" in batch else teacher_targets(self.ctd.teacher, teacher,
                                                                            batch["pixels"], self.ctd.wap)
            acc.update(np.asarray(multihost_utils.process_allgather(t, tiled=True)))
        return acc.result()

    def _shardings(self):
        return state_shardings(self.ctd, self.tx, self.run.mesh, self.run.rules)

    def state_target(self):
        return abstract_with_shardings(*self._shardings())

    def init_state(self):
        state = init_state(self.ctd, self.tx, self.run.mesh, seed=self.config.seed, rules=self.run.rules)
        if self.config.student_init_checkpoint:
            state = self._init_from_vit(state)
        return state

    def _init_from_vit(self, state):
        """Overwrites the student's spatial part (patch embed, positions, blocks) with an image ViT's weights; the
        optimizer state (zero moments) does not depend on the values, so only the params are replaced."""
        from liteframe_jax.checkpoints.vit_init import init_student_from_vit

        src = self.config.student_init_checkpoint
        params, report = init_student_from_vit(to_host(state["params"]), self.ctd.student, src)
        if jax.process_index() == 0:
            print(f"student initialized from {src} ({report['layout']} layout): {len(report['loaded'])} tensors "
                  f"loaded, {len(report['kept_init'])} kept their init", file=sys.stderr)
            for w in report["warnings"]:
                print(f"warning: {w}", file=sys.stderr)
        return {**state, "params": jax.device_put(params, self._shardings()[1]["params"])}

    def banner(self, start: int) -> str:
        teacher = self.config.teacher.checkpoint or "random (demo)"
        return (f"CTD: student {self.ctd.student.num_layers} blocks, teacher {teacher}, mesh "
                f"{dict(self.run.mesh.shape)}, {f'resuming at step {start}' if start else 'fresh start'}")

    def phase(self, step: int) -> Phase:
        b = self.run.local_batch
        pixel_dtype = np.float32 if self.data.normalize_on_host else np.uint8
        example = {"pixels": np.zeros((b, self.data.num_frames, *self.data.image_size, 3), pixel_dtype)}
        if self.config.train.target_cache:
            example["targets"] = np.zeros((b, *self.ctd.student.output_shape(self.data.num_frames)), np.float32)
        ds, skips = self._dataset("train")
        args = (self.ctd, self.tx, self.run.mesh, example, self.run.rules)
        return Phase(last_step=self.optim.total_steps, batches=iter(ds), skips=skips,
                     train_step=make_train_step(*args), eval_step=make_eval_step(*args),
                     eval_batches=lambda: self._dataset("eval", augment=False)[0])

    def inputs(self, batch: dict) -> dict:
        return {k: batch[k] for k in ("pixels", "targets") if k in batch}

    def export(self, state, workdir: Path) -> str:
        out = save_student(self.config, self.ctd, state, self.frozen[0], workdir / STUDENT_DIR)
        return f"student encoder written to {out} (use it as student.checkpoint in configs/lma.py)"


def save_student(config, setup: CTDSetup, state, teacher, dst: Path) -> Path:
    """The distilled encoder as a LiteFrame checkpoint: student + the teacher's projector (the connector it was
    distilled into), tokenizer files of the teacher checkpoint, and where the student's tokens live."""
    from liteframe_jax.checkpoints.liteframe_store import save_liteframe
    from liteframe_jax.models.liteframe import LiteFrameConfig

    cfg = LiteFrameConfig(setup.student, setup.teacher, setup.wap.location)
    params = to_host({"student": state["params"], "projector": teacher["projector"]})
    if jax.process_index() != 0:
        return dst
    provenance = {"stage": "ctd", "steps": int(state["step"]), "wap": setup.wap.to_dict(),
                  "teacher": teacher_identity(config)}
    return save_liteframe(dst, cfg, params, stage="ctd", tokenizer_dir=config.teacher.checkpoint or None,
                          provenance=provenance, overwrite=True)


def run(config, workdir: str | Path) -> dict:
    """Runs (or resumes) CTD in `workdir`. Returns the last logged metrics."""
    return loop.run(CTDTask(config), workdir)
