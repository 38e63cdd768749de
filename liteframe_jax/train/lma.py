"""The LMA training run: config -> validated setup -> tokenizer + QA records -> initial params (teacher, CTD
student, fresh LoRA) -> frame-count curriculum of jitted steps, with eval, async checkpoints, logging, a clean
stop on a non-finite loss, and the adapted model written to DIR/model at the end."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.liteframe_store import (load_liteframe, read_liteframe_metadata, save_liteframe,
                                                       tokenizer_files)
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.data.prompts import DEFAULT_SYSTEM_MESSAGE
from liteframe_jax.data.qa_pipeline import PromptLayout, QADataConfig, build_qa_dataset
from liteframe_jax.data.synthetic import SyntheticVideoSpec
from liteframe_jax.data.tokenizer import load_tokenizer, save_tiny_tokenizer
from liteframe_jax.data.video_qa import read_records, synthetic_splits
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import abstract_params, init_params
from liteframe_jax.models.liteframe import LiteFrameConfig, init_liteframe
from liteframe_jax.models.lora import LoRAConfig, init_lora
from liteframe_jax.sharding import global_batch, make_mesh, rules_from_config
from liteframe_jax.train.checkpointing import (TrainCheckpointer, abstract_with_shardings, iterator_states,
                                              local_iterator_state, to_host)
from liteframe_jax.train.ctd import NonFiniteLossError
from liteframe_jax.train.lma_step import (LMASetup, combine, init_state, make_eval_step, make_train_step,
                                          state_shardings)
from liteframe_jax.train.metrics_log import MetricsLogger
from liteframe_jax.train.optim import OptimConfig, make_optimizer, schedule

MODEL_DIR = "model"
RECORD_ERRORS_SHOWN = 10


def parse_curriculum(text: str) -> list[tuple[int, int]]:
    """"64:2000,256:1000" -> [(64 frames, 2000 steps), (256, 1000)]."""
    stages = []
    for item in filter(None, text.replace(" ", "").split(",")):
        try:
            frames, steps = (int(x) for x in item.split(":"))
        except ValueError:
            raise ValueError(f"curriculum item {item!r} must be FRAMES:STEPS (integers)") from None
        if frames < 1 or steps < 1:
            raise ValueError(f"curriculum item {item!r}: frames and steps must be >= 1")
        stages.append((frames, steps))
    if not stages:
        raise ValueError("curriculum is empty; give FRAMES:STEPS[,FRAMES:STEPS...]")
    return stages


def stage_at(curriculum: list[tuple[int, int]], step: int) -> int:
    """Index of the curriculum stage that runs `step` (1-based steps)."""
    end = 0
    for i, (_, steps) in enumerate(curriculum):
        end += steps
        if step <= end:
            return i
    return len(curriculum) - 1


def parse(config):
    """Validates the whole config before anything compiles -> (setup, optim, curriculum, group lrs)."""
    teacher = _teacher_config(config)
    trainable = tuple(x for x in config.trainable.replace(" ", "").replace(",", "+").split("+") if x)
    lora = LoRAConfig.from_dict(config.lora.to_dict()) if "lora" in trainable else None
    liteframe = _liteframe_config(config, teacher) if config.encoder == "student" else None
    wap = WAPConfig.from_dict(config.wap.to_dict()).validate() if config.encoder == "teacher_wap" else None
    setup = LMASetup(config.encoder, teacher, trainable, liteframe, wap, lora).validate()
    curriculum = parse_curriculum(config.curriculum)
    total = sum(s for _, s in curriculum)
    optim = OptimConfig(**{**config.optim.to_dict(), "total_steps": total,
                           "warmup_steps": min(config.optim.warmup_steps, total - 1)}).validate()
    errors = []
    if config.train.batch_size % jax.process_count():
        errors.append(f"train.batch_size={config.train.batch_size} must divide over {jax.process_count()} processes")
    for name in ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "eval_batches"):
        if config.train[name] < 1:
            errors.append(f"train.{name}={config.train[name]} must be >= 1")
    if config.variant != "tiny" and not config.data.train_file:
        errors.append("data.train_file (JSONL QA records) is required outside the tiny demo")
    if errors:
        raise ValueError("invalid LMA config:\n  - " + "\n  - ".join(errors))
    group_lrs = {k: v for k, v in (("projector", config.optim_projector_lr), ("student", config.optim_student_lr))
                 if v > 0 and k in trainable}
    return setup, optim, curriculum, group_lrs


def _teacher_config(config) -> InternVLConfig:
    if config.teacher.checkpoint:
        meta = store.read_metadata(config.teacher.checkpoint)
        if meta["kind"] != "internvl":
            raise ValueError(f"teacher.checkpoint {config.teacher.checkpoint} holds a {meta['kind']!r} checkpoint; "
                             "expected an imported InternVL3 (converters.import_internvl3)")
        return InternVLConfig.from_dict(meta["model"]).replace(dtype=config.teacher.model.dtype).validate()
    if config.variant != "tiny":
        raise ValueError("teacher.checkpoint is required outside the tiny demo")
    return InternVLConfig.from_dict(config.teacher.model.to_dict()).validate()


def _liteframe_config(config, teacher: InternVLConfig) -> LiteFrameConfig:
    if config.student.checkpoint:
        meta = read_liteframe_metadata(config.student.checkpoint)
        cfg = LiteFrameConfig.from_dict(meta["model"])
        return dataclasses.replace(cfg, teacher=teacher).validate()
    if config.variant != "tiny":
        raise ValueError("student.checkpoint (a CTD run's DIR/student) is required for encoder=student")
    from configs import ctd
    c = ctd.get_config("variant=tiny")
    from liteframe_jax.models.config import StudentConfig
    return LiteFrameConfig(StudentConfig.from_dict(c.student.to_dict()), teacher, c.wap.location).validate()


def _tokenizer(config, workdir: Path):
    src = config.data.tokenizer or (config.teacher.checkpoint if tokenizer_files(config.teacher.checkpoint) else "")
    if not src:
        if config.variant != "tiny":
            raise ValueError("no tokenizer: set data.tokenizer or use a teacher checkpoint with tokenizer files")
        src = workdir / "tokenizer"
        if not (src / "tokenizer.json").exists():
            save_tiny_tokenizer(src, config.teacher.model.text.vocab_size)
    return load_tokenizer(src), Path(src)


def load_qa_records(config, log=print):
    """(train records, eval records) from the configured files or the embedded synthetic benchmark; malformed
    lines are skipped and reported with line numbers."""
    d = config.data
    if not d.train_file:
        spec = SyntheticVideoSpec(num_frames=d.synthetic_video_frames, size=d.synthetic_video_size,
                                  seed=d.synthetic_seed)
        return synthetic_splits(spec, d.synthetic_train_videos, d.synthetic_test_videos, seed=d.synthetic_seed)
    out = []
    for path in (d.train_file, d.eval_file or d.train_file):
        records, errors = read_records(path)
        for line, reason in errors[:RECORD_ERRORS_SHOWN]:
            log(f"{path}:{line}: skipped malformed record: {reason}")
        if len(errors) > RECORD_ERRORS_SHOWN:
            log(f"{path}: {len(errors) - RECORD_ERRORS_SHOWN} more malformed records skipped")
        out.append(records)
    return out[0], out[1]


def _initial_params(config, setup: LMASetup) -> dict:
    """Full pipeline params (unboxed, host): teacher parts from its checkpoint (or random for the tiny demo),
    the student from the CTD checkpoint."""
    teacher_abstract = nn.unbox(abstract_params(setup.teacher))
    if config.teacher.checkpoint:
        teacher = store.restore_params(config.teacher.checkpoint, teacher_abstract)
    else:
        teacher = nn.unbox(init_params(setup.teacher, seed=config.seed))
    if setup.encoder != "student":
        return dict(teacher)
    if config.student.checkpoint:
        _, enc, _ = load_liteframe(config.student.checkpoint)
        student = enc["student"]
    else:
        student = nn.unbox(init_liteframe(setup.liteframe, seed=config.seed, with_llm=False))["student"]
    return {"student": student, **{k: teacher[k] for k in ("projector", "llm")}}


def run(config, workdir: str | Path) -> dict:
    """Runs (or resumes) LMA in `workdir`. Returns the last logged metrics."""
    setup, optim, curriculum, group_lrs = parse(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    main = jax.process_index() == 0
    if main:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
    rules = rules_from_config(config.sharding_rules)
    mesh = make_mesh(dict(config.mesh))
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.train.batch_size % shards:
        raise ValueError(f"train.batch_size={config.train.batch_size} must be a multiple of the batch shards "
                         f"data x fsdp = {shards} of mesh {dict(mesh.shape)}")
    tx = make_optimizer(optim, group_lrs)
    total = optim.total_steps
    local_batch = config.train.batch_size // jax.process_count()
    ckpt = TrainCheckpointer(workdir / "checkpoints", config.train.keep_checkpoints, config.train.async_checkpoints)
    log = MetricsLogger(workdir, total, ckpt.latest_step() or 0, enabled=main)
    tokenizer, tokenizer_dir = _tokenizer(config, workdir)
    train_records, eval_records = load_qa_records(config, log.message)
    layout = PromptLayout(setup.tokens_per_group(), setup.frames_per_group)

    abstract, st_sh, fr_sh = state_shardings(setup, tx, mesh, rules)
    full = _initial_params(config, setup)
    frozen = jax.device_put({k: v for k, v in full.items() if k not in setup.trainable}, fr_sh)
    start, data_state, meta = 0, None, {}
    if ckpt.latest_step() is not None:
        start, state, data_state, meta = ckpt.restore(abstract_with_shardings(abstract, st_sh))
    else:
        trainable = {k: v for k, v in full.items() if k in setup.trainable}
        if setup.lora is not None:
            trainable["lora"] = init_lora(full["llm"], setup.lora, jax.random.key(config.seed + 1))
        state = init_state(tx, jax.device_put(trainable, st_sh["params"]), st_sh)
    del full
    lr = schedule(optim)
    log.message(f"LMA: encoder {setup.encoder}, training {'+'.join(setup.trainable)}, curriculum "
                f"{' -> '.join(f'{f} frames x {s}' for f, s in curriculum)}, {len(train_records)} train / "
                f"{len(eval_records)} eval records, mesh {dict(mesh.shape)}, "
                f"{'resuming at step %d' % start if start else 'fresh start'}")
    last: dict = {}
    skipped_before = meta.get("skipped", 0)
    t0 = time.time()
    stage, it, skips, step_fn, eval_fn, qa_cfg = None, None, None, None, None, None
    try:
        for step in range(start + 1, total + 1):
            if stage != stage_at(curriculum, step):  # (re)build data and steps for this stage's frame count
                stage = stage_at(curriculum, step)
                qa_cfg = _qa_config(config, curriculum[stage][0])
                ds, skips = build_qa_dataset(train_records, tokenizer, qa_cfg, layout, local_batch,
                                             process_index=jax.process_index(), process_count=jax.process_count())
                it = iter(ds)
                if data_state is not None and data_state.get("stage") == stage:
                    it.set_state(local_iterator_state(data_state))
                example = _example_batch(qa_cfg, local_batch)
                step_fn = make_train_step(setup, tx, mesh, example, rules)
                eval_fn = make_eval_step(setup, tx, mesh, example, rules)
                log.message(f"stage {stage + 1}/{len(curriculum)}: {qa_cfg.num_frames} frames "
                            f"({layout.tokens_per_group * -(-qa_cfg.num_frames // layout.frames_per_group)} "
                            "visual tokens)")
            batch = global_batch(_inputs(next(it)), mesh, rules)
            state, metrics = step_fn(state, frozen, batch)
            if not bool(metrics["finite"]):
                raise NonFiniteLossError(
                    f"non-finite loss at step {step}: the update was not applied; the last good checkpoint "
                    f"(step {ckpt.latest_step()}) in {ckpt.directory} is intact. Lower optim.peak_lr or check the data.")
            if step % config.train.log_every == 0 or step == total:
                last = log.log(step, {**{k: v for k, v in metrics.items() if k != "finite"}, "lr": float(lr(step)),
                                      "frames": qa_cfg.num_frames, "skipped_examples": skipped_before + skips.count,
                                      "steps_per_second": (step - start) / max(time.time() - t0, 1e-9)})
            if step % config.train.eval_every == 0 or step == total:
                last.update(log.log(step, evaluate(eval_fn, state, frozen, eval_records, tokenizer, qa_cfg, layout,
                                                   config, mesh, rules, local_batch), prefix="eval/"))
            log.advance(step)
            stopping = step == config.train.stop_at_step
            if step % config.train.checkpoint_every == 0 or step == total or stopping:
                ckpt.save(step, state, iterator_states(it.get_state(), stage=stage),
                          {"skipped": skipped_before + skips.count})
            if stopping:
                log.message(f"stopping at step {step} as configured (train.stop_at_step)")
                break
        else:
            out = save_model(config, setup, state, frozen, workdir / MODEL_DIR, tokenizer_dir)
            if main:
                log.message(f"adapted model written to {out}")
    finally:
        ckpt.close()
        log.close()
    if skips is not None and (skips.count or skipped_before):
        print(f"skipped {skipped_before + skips.count} unusable examples in total; e.g. {skips.examples[:3]}",
              file=sys.stderr)
    return last


def _qa_config(config, num_frames: int) -> QADataConfig:
    d = config.data
    return QADataConfig(num_frames=num_frames, image_size=tuple(d.image_size), max_length=d.max_length,
                        sampling=d.sampling, fps=d.fps, decode_threads=d.decode_threads, seed=config.seed,
                        system_message=system_message(d.system_message)).validate()


def system_message(setting: str) -> str | None:
    """Config value -> system message: "default" = InternVL's, "" = none, anything else verbatim."""
    return DEFAULT_SYSTEM_MESSAGE if setting == "default" else (setting or None)


def _example_batch(qa: QADataConfig, b: int) -> dict:
    return {"pixels": np.zeros((b, qa.num_frames, *qa.image_size, 3), np.float32),
            "input_ids": np.zeros((b, qa.max_length), np.int32), "loss_mask": np.zeros((b, qa.max_length), np.float32),
            "attention_mask": np.zeros((b, qa.max_length), np.int32)}


def _inputs(batch: dict) -> dict:
    return {k: batch[k] for k in ("pixels", "input_ids", "loss_mask", "attention_mask")}


def evaluate(eval_fn, state, frozen, records, tokenizer, qa_cfg, layout, config, mesh, rules, local_batch) -> dict:
    """Teacher-forced answer loss / token accuracy over the first `train.eval_batches` eval batches."""
    ds, _ = build_qa_dataset(records, tokenizer, qa_cfg, layout, local_batch, train=False,
                             process_index=jax.process_index(), process_count=jax.process_count())
    totals, n = {}, 0
    for batch in ds:
        if n == config.train.eval_batches or len(batch["index"]) < local_batch:
            break
        m = eval_fn(state["params"], frozen, global_batch(_inputs(batch), mesh, rules))
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        n += 1
    return {k: v / max(n, 1) for k, v in totals.items()}


def save_model(config, setup: LMASetup, state, frozen, dst: Path, tokenizer_dir: Path) -> Path:
    """The adapted pipeline as a loadable checkpoint: LiteFrame (LoRA kept unmerged, merged on load/export) for
    encoder=student; an InternVL checkpoint (LoRA merged; post-hoc WAP recorded) for the teacher encoders."""
    trainable, frozen = to_host((state["params"], frozen))
    if jax.process_index() != 0:
        return dst
    provenance = {"stage": "lma", "encoder": setup.encoder, "trainable": list(setup.trainable),
                  "curriculum": config.curriculum, "teacher_checkpoint": config.teacher.checkpoint,
                  "student_checkpoint": config.student.checkpoint}
    if setup.encoder == "student":
        params = {**frozen, **trainable}
        return save_liteframe(dst, setup.liteframe, params, lora=setup.lora, stage="lma",
                              tokenizer_dir=tokenizer_dir, provenance=provenance, overwrite=True)
    params = combine(setup, trainable, frozen)
    extra = {"provenance": provenance}
    if setup.encoder == "teacher_wap":
        extra["post_hoc_wap"] = setup.wap.to_dict()
    return store.save_checkpoint(dst, "internvl", setup.teacher.to_dict(), params,
                                 extra_files=tokenizer_files(tokenizer_dir), metadata=extra, overwrite=True)
