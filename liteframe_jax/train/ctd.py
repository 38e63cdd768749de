"""The CTD training run: config -> validated setup -> mesh -> data -> (resumed) state -> jitted steps, with
periodic eval, async checkpoints, logging and a clean stop on a non-finite loss."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.compression.teacher_targets import teacher_targets
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.data.pipeline import DataConfig, build_dataset
from liteframe_jax.losses.ctd import ChannelStats, ChannelStatsAccumulator, CTDLossConfig
from liteframe_jax.models.config import InternVLConfig, StudentConfig
from liteframe_jax.models.internvl import init_params
from liteframe_jax.sharding import global_batch, make_mesh, rules_from_config
from liteframe_jax.train.checkpointing import (TrainCheckpointer, abstract_with_shardings, iterator_states,
                                              local_iterator_state, to_host)
from liteframe_jax.train.ctd_step import (TEACHER_PARTS, CTDSetup, abstract_teacher, init_state, make_eval_step,
                                          make_train_step, state_shardings, teacher_shardings)
from liteframe_jax.train.metrics_log import MetricsLogger
from liteframe_jax.train.optim import OptimConfig, make_optimizer, schedule

STATS_FILE = "target_stats.json"
STUDENT_DIR = "student"


class NonFiniteLossError(RuntimeError):
    pass


def parse(config):
    """Validates every part of the config before anything compiles. Returns the typed pieces."""
    teacher_cfg = _teacher_config(config)
    student = StudentConfig.from_dict(config.student.to_dict())
    setup = CTDSetup(student, teacher_cfg, WAPConfig.from_dict(config.wap.to_dict()),
                     CTDLossConfig(**config.loss.to_dict())).validate()
    optim = OptimConfig(**config.optim.to_dict()).validate()
    data = DataConfig.from_dict(config.data.to_dict()).validate()
    t = config.train
    errors = []
    if t.total_steps != optim.total_steps:
        errors.append(f"train.total_steps={t.total_steps} != optim.total_steps={optim.total_steps}")
    if t.batch_size % jax.process_count():
        errors.append(f"train.batch_size={t.batch_size} must divide over {jax.process_count()} processes")
    if data.num_frames != student.num_frames or tuple(data.image_size) != tuple(student.image_size):
        errors.append(f"data clips ({data.num_frames} x {tuple(data.image_size)}) must match the student "
                      f"({student.num_frames} x {student.image_size})")
    for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "stats_batches", "eval_batches"):
        if t[name] < 1:
            errors.append(f"train.{name}={t[name]} must be >= 1")
    if errors:
        raise ValueError("invalid CTD config:\n  - " + "\n  - ".join(errors))
    return setup, optim, data


def _teacher_config(config) -> InternVLConfig:
    if config.teacher.checkpoint:
        meta = store.read_metadata(config.teacher.checkpoint)
        return InternVLConfig.from_dict(meta["model"]).replace(dtype=config.teacher.model.dtype).validate()
    if config.variant != "tiny":
        raise ValueError("teacher.checkpoint is required (import one with converters.import_internvl3); random "
                         "teachers are only allowed for the tiny demo variant")
    return InternVLConfig.from_dict(config.teacher.model.to_dict()).validate()


def teacher_identity(config) -> dict:
    """What a target cache records about the teacher that produced it."""
    if config.teacher.checkpoint:
        return {"checkpoint": str(Path(config.teacher.checkpoint).absolute())}
    return {"random_init_seed": int(config.seed), "model": config.teacher.model.to_dict()}


def _teacher_params(config, setup: CTDSetup, mesh, rules):
    """The frozen teacher's vision tower + projector (TEACHER_PARTS), placed in their shardings (never
    checkpointed with the run; the LLM is not loaded)."""
    shardings = teacher_shardings(setup, mesh, rules)
    if config.teacher.checkpoint:
        return store.restore_params(config.teacher.checkpoint, nn.unbox(abstract_teacher(setup)), shardings)
    params = nn.unbox(init_params(setup.teacher, seed=config.seed))
    return jax.device_put({k: params[k] for k in TEACHER_PARTS}, shardings)


def _dataset(data_cfg, split, config, local_batch, augment=True):
    """(dataset, skip stats); with a target cache, batches carry "targets" and augmentation is off."""
    cache = config.train.target_cache or None
    return build_dataset(data_cfg, split, local_batch, jax.process_index(), jax.process_count(),
                         augment=augment and cache is None, cache=cache)


def _model_inputs(batch: dict) -> dict:
    return {k: batch[k] for k in ("pixels", "targets") if k in batch}


def _estimate_stats(setup, teacher_params, data_cfg, config, mesh, rules, local_batch) -> ChannelStats:
    it = iter(_dataset(data_cfg, "train", config, local_batch, augment=False)[0])
    acc = ChannelStatsAccumulator()
    for _ in range(config.train.stats_batches):
        batch = global_batch(_model_inputs(next(it)), mesh, rules)
        t = batch["targets"] if "targets" in batch else teacher_targets(setup.teacher, teacher_params,
                                                                        batch["pixels"], setup.wap)
        acc.update(np.asarray(jax.experimental.multihost_utils.process_allgather(t, tiled=True)))
    return acc.result()


def run(config, workdir: str | Path) -> dict:
    """Runs (or resumes) CTD in `workdir`. Returns the last logged metrics."""
    import jax.experimental.multihost_utils  # noqa: F401

    setup, optim, data_cfg = parse(config)
    workdir = Path(workdir)
    main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)
    rules = rules_from_config(config.sharding_rules)
    mesh = make_mesh(dict(config.mesh))
    tx = make_optimizer(optim)
    local_batch = config.train.batch_size // jax.process_count()
    if main:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

    teacher = _teacher_params(config, setup, mesh, rules)
    stats_path = workdir / STATS_FILE
    if stats_path.exists():
        stats = ChannelStats.from_dict(json.loads(stats_path.read_text()))
    else:
        stats = _estimate_stats(setup, teacher, data_cfg, config, mesh, rules, local_batch)
        if main:
            stats_path.write_text(json.dumps(stats.to_dict()) + "\n")
    stats_arrays = (np.asarray(stats.mean), np.asarray(stats.std))

    if config.train.target_cache:
        from liteframe_jax.data.target_cache import TargetCache
        TargetCache(config.train.target_cache).check_compatible(
            {"wap": setup.wap.to_dict(), "teacher": teacher_identity(config)})
    train_ds, skips = _dataset(data_cfg, "train", config, local_batch)
    train_it = iter(train_ds)
    ckpt = TrainCheckpointer(workdir / "checkpoints", config.train.keep_checkpoints, config.train.async_checkpoints)
    abstract, sh = state_shardings(setup, tx, mesh, rules)
    start, meta = 0, {}
    if ckpt.latest_step() is not None:
        start, state, data_state, meta = ckpt.restore(abstract_with_shardings(abstract, sh))
        train_it.set_state(local_iterator_state(data_state))
    else:
        state = init_state(setup, tx, mesh, seed=config.seed, rules=rules)
        if config.student_init_checkpoint:
            state = _init_from_vit(config, setup, state, sh)
    example = {"pixels": np.zeros((local_batch, *next_shape(data_cfg)), np.float32)}
    if config.train.target_cache:
        example["targets"] = np.zeros((local_batch, *setup.student.output_shape(data_cfg.num_frames)), np.float32)
    step_fn = make_train_step(setup, tx, mesh, example, rules)
    lr_schedule = schedule(optim)
    eval_fn = make_eval_step(setup, tx, mesh, example, rules)
    log = MetricsLogger(workdir, config.train.total_steps, start, enabled=main)
    log.message(f"CTD: student {setup.student.num_layers} blocks, teacher "
                f"{'random (demo)' if not config.teacher.checkpoint else config.teacher.checkpoint}, mesh "
                f"{dict(mesh.shape)}, {'resuming at step %d' % start if start else 'fresh start'}")
    last: dict = {}
    skipped_before = meta.get("skipped", 0)
    reported = 0
    t0 = time.time()
    try:
        for step in range(start + 1, config.train.total_steps + 1):
            batch = global_batch(_model_inputs(next(train_it)), mesh, rules)
            state, metrics = step_fn(state, teacher, stats_arrays, batch)
            if step % config.train.log_every == 0 or step == config.train.total_steps:
                if not bool(metrics["finite"]):
                    raise NonFiniteLossError(
                        f"non-finite loss at step {step}: the update was not applied; the last good checkpoint "
                        f"(step {ckpt.latest_step()}) in {ckpt.directory} is intact. Lower optim.peak_lr or check "
                        "the data.")
                last = log.log(step, {**{k: v for k, v in metrics.items() if k != "finite"},
                                      "lr": float(lr_schedule(step)),
                                      "skipped_examples": skipped_before + skips.count,
                                      "steps_per_second": (step - start) / max(time.time() - t0, 1e-9)})
            elif not bool(metrics["finite"]):
                raise NonFiniteLossError(f"non-finite loss at step {step}: the update was not applied; the last "
                                         f"good checkpoint (step {ckpt.latest_step()}) in {ckpt.directory} is intact")
            if step % config.train.eval_every == 0 or step == config.train.total_steps:
                last.update(log.log(step, evaluate(eval_fn, state, teacher, stats_arrays, data_cfg, config, mesh,
                                                   rules, local_batch), prefix="eval/"))
            log.advance(step)
            if skips.count > reported:  # report unreadable inputs as they are met
                for example in skips.examples[reported:]:
                    log.message(f"skipped unreadable example: {example}")
                reported = max(skips.count, reported)
            stopping = step == config.train.stop_at_step
            if step % config.train.checkpoint_every == 0 or step == config.train.total_steps or stopping:
                ckpt.save(step, state, iterator_states(train_it.get_state()),
                          {"skipped": skipped_before + skips.count, "skipped_examples": skips.examples[:20]})
            if stopping:
                log.message(f"stopping at step {step} as configured (train.stop_at_step)")
                break
        else:
            out = save_student(config, setup, state, teacher, workdir / STUDENT_DIR)
            if main:
                log.message(f"student encoder written to {out} (use it as student.checkpoint in configs/lma.py)")
    finally:
        ckpt.close()
        log.close()
    if skips.count or skipped_before:
        print(f"skipped {skipped_before + skips.count} unreadable examples in total", file=sys.stderr)
    return last


def _init_from_vit(config, setup: CTDSetup, state, shardings):
    """Overwrites the student's spatial part (patch embed, positions, blocks) with an image ViT's weights; the
    optimizer state (zero moments) does not depend on the values, so only the params are replaced."""
    from liteframe_jax.checkpoints.vit_init import init_student_from_vit

    params, report = init_student_from_vit(to_host(state["params"]), setup.student, config.student_init_checkpoint)
    if jax.process_index() == 0:
        print(f"student initialized from {config.student_init_checkpoint} ({report['layout']} layout): "
              f"{len(report['loaded'])} tensors loaded, {len(report['kept_init'])} kept their init", file=sys.stderr)
        for w in report["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
    return {**state, "params": jax.device_put(params, shardings["params"])}


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


def evaluate(eval_fn, state, teacher, stats_arrays, data_cfg, config, mesh, rules, local_batch) -> dict:
    """Mean fidelity metrics over `train.eval_batches` held-out batches (same batches every time)."""
    it = iter(_dataset(data_cfg, "eval", config, local_batch, augment=False)[0])
    totals: dict = {}
    for _ in range(config.train.eval_batches):
        m = eval_fn(state["params"], teacher, stats_arrays, global_batch(_model_inputs(next(it)), mesh, rules))
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + float(v) / config.train.eval_batches
    return totals


def next_shape(data_cfg) -> tuple:
    return (data_cfg.num_frames, *data_cfg.image_size, 3)
