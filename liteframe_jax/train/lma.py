"""LMA (Language Model Adaptation) as a training task: next-token loss on video-QA answers through a visual path
(LiteFrame student, teacher, or teacher + WAP) into the LLM, training the configured groups (projector, LoRA,
LLM, student) over a frame-count curriculum: each curriculum stage is one phase with its own data and compiled
steps. liteframe_jax.train.loop runs it; the adapted model is written to DIR/model."""

from __future__ import annotations

from pathlib import Path

import jax
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.liteframe_store import load_liteframe, save_liteframe, tokenizer_files
from liteframe_jax.data.qa_pipeline import PromptLayout, QADataConfig, fitted_max_length
from liteframe_jax.models.liteframe import init_liteframe
from liteframe_jax.models.lora import init_lora
from liteframe_jax.train import loop
from liteframe_jax.train.checkpointing import abstract_with_shardings, to_host
from liteframe_jax.train.experiment import parse_curriculum, parse_lma  # noqa: F401 (parse_curriculum re-exported)
from liteframe_jax.train.lma_step import LMASetup, combine, init_state, make_eval_step, make_train_step, state_shardings
from liteframe_jax.train.optim import make_optimizer
from liteframe_jax.train.qa_data import (BATCH_KEYS, example_batch, load_qa_records, qa_batches, qa_config,
                                         qa_stores, qa_tokenizer)
from liteframe_jax.train.task import Phase, Run
from liteframe_jax.train.teacher import teacher_params

MODEL_DIR = "model"


def stage_at(curriculum: list[tuple[int, int]], step: int) -> int:
    """Index of the curriculum stage that runs `step` (1-based steps)."""
    end = 0
    for i, (_, steps) in enumerate(curriculum):
        end += steps
        if step <= end:
            return i
    return len(curriculum) - 1


def stage_end(curriculum: list[tuple[int, int]], stage: int) -> int:
    """The last step (1-based) of curriculum stage `stage`."""
    return sum(steps for _, steps in curriculum[:stage + 1])


def _initial_params(config, setup: LMASetup) -> dict:
    """Full pipeline params (unboxed, host): teacher parts from its checkpoint (or random for the tiny demo),
    the student from the CTD checkpoint. A student whose tokens live after the projector (post_projector) has no
    projector in its pipeline, so none is read."""
    path = setup.visual
    if "student" not in path.param_keys:
        return dict(teacher_params(config, setup.teacher))
    teacher = teacher_params(config, setup.teacher, ("projector", "llm") if path.projector_on_path else ("llm",))
    if config.student.checkpoint:
        _, enc, _ = load_liteframe(config.student.checkpoint)
        student = enc["student"]
    else:
        student = nn.unbox(init_liteframe(setup.liteframe, seed=config.seed, with_llm=False))["student"]
    return {"student": student, **teacher}


class LMATask:
    """Train state: the trainable groups' params (+ fresh LoRA adapters) and their optimizer state. Frozen step
    arguments: (the other groups' params,). One phase per curriculum stage."""

    skipped_what = "unusable"

    def __init__(self, config):
        self.config = config
        exp = parse_lma(config, process_count=jax.process_count())  # with the checks only a run needs
        self.lma, self.optim, self.curriculum, self.loop = exp.setup, exp.optim, exp.curriculum, exp.loop
        self.tx = make_optimizer(self.optim, exp.group_lrs)
        self.run: Run | None = None
        self.frozen: tuple = ()
        self._trainable_init: dict | None = None  # host params of the trainable groups until init_state
        self._fitted: dict[int, int] = {}  # frame count -> max_length, for data.max_length=0

    def setup(self, run: Run) -> None:
        self.run = run
        self.tokenizer, self.tokenizer_dir = qa_tokenizer(self.config, run.workdir)
        self.train_records, self.eval_records = load_qa_records(self.config, run.log)
        # every stage's store is checked here, so a mismatched one stops the run before anything compiles
        self.stores = qa_stores(self.config, self.train_records, self.eval_records, [t for t, _ in self.curriculum])
        self.layout = PromptLayout(self.lma.tokens_per_group(), self.lma.frames_per_group)
        self.abstract, self.shardings, frozen_shardings = state_shardings(self.lma, self.tx, run.mesh, run.rules)
        full = _initial_params(self.config, self.lma)
        self.frozen = (jax.device_put({k: v for k, v in full.items() if k not in self.lma.trainable},
                                      frozen_shardings),)
        self._trainable_init = {k: v for k, v in full.items() if k in self.lma.trainable}
        if self.lma.lora is not None:
            self._trainable_init["lora"] = init_lora(full["llm"], self.lma.lora, jax.random.key(self.config.seed + 1))

    def state_target(self):
        self._trainable_init = None
        return abstract_with_shardings(self.abstract, self.shardings)

    def init_state(self):
        params = jax.device_put(self._trainable_init, self.shardings["params"])
        self._trainable_init = None
        return init_state(self.tx, params, self.shardings)

    def banner(self, start: int) -> str:
        stages = " -> ".join(f"{f} frames x {s}" for f, s in self.curriculum)
        return (f"LMA: encoder {self.lma.encoder}, training {'+'.join(self.lma.trainable)}, curriculum {stages}, "
                f"{len(self.train_records)} train / {len(self.eval_records)} eval records"
                f"{' (frames from ' + self.config.data.frame_store + ')' if self.stores else ''}, mesh "
                f"{dict(self.run.mesh.shape)}, {f'resuming at step {start}' if start else 'fresh start'}")

    def _dataset(self, records, qa: QADataConfig, train: bool):
        store = self.stores[qa.num_frames][0 if train else 1] if self.stores else None
        return qa_batches(records, self.tokenizer, qa, self.layout, self.run.local_batch, train, store)

    def _qa(self, frames: int) -> QADataConfig:
        """The QA data settings at `frames`; data.max_length=0 (fit) becomes the longest train or eval example
        there, rounded up to 8 (the same in every process: each holds all records)."""
        qa = qa_config(self.config, frames)
        if qa.max_length:
            return qa
        if frames not in self._fitted:
            self._fitted[frames] = fitted_max_length(self.train_records + self.eval_records, self.tokenizer, qa,
                                                     self.layout)
        return qa.replace(max_length=self._fitted[frames])

    def phase(self, step: int) -> Phase:
        stage = stage_at(self.curriculum, step)
        qa = self._qa(self.curriculum[stage][0])
        ds, skips = self._dataset(self.train_records, qa, train=True)
        args = (self.lma, self.tx, self.run.mesh, example_batch(qa, self.run.local_batch), self.run.rules)
        tokens = self.layout.tokens_per_group * -(-qa.num_frames // self.layout.frames_per_group)
        return Phase(last_step=stage_end(self.curriculum, stage), batches=iter(ds), skips=skips,
                     train_step=make_train_step(*args), eval_step=make_eval_step(*args),
                     eval_batches=lambda: self._dataset(self.eval_records, qa, train=False)[0],
                     data_tag={"stage": stage}, log_extra={"frames": qa.num_frames},
                     message=f"stage {stage + 1}/{len(self.curriculum)}: {qa.num_frames} frames ({tokens} visual "
                             f"tokens, sequences of {qa.max_length} tokens"
                             f"{', fitted to the records' if qa.num_frames in self._fitted else ''})")

    def inputs(self, batch: dict) -> dict:
        return {k: batch[k] for k in BATCH_KEYS}

    def export(self, state, workdir: Path) -> str:
        out = save_model(self.config, self.lma, state, self.frozen[0], workdir / MODEL_DIR, self.tokenizer_dir)
        return f"adapted model written to {out}"


def save_model(config, setup: LMASetup, state, frozen, dst: Path, tokenizer_dir: Path) -> Path:
    """The adapted pipeline as a loadable checkpoint: LiteFrame (LoRA kept unmerged, merged on load/export) for
    encoder=student; an InternVL checkpoint (LoRA merged; post-hoc WAP recorded) for the teacher encoders."""
    trainable, frozen = to_host((state["params"], frozen))
    if jax.process_index() != 0:
        return dst
    provenance = {"stage": "lma", "encoder": setup.encoder, "trainable": list(setup.trainable),
                  "curriculum": config.curriculum, "teacher_checkpoint": config.teacher.checkpoint,
                  "student_checkpoint": config.student.checkpoint}
    if "student" in setup.visual.param_keys:
        params = {**frozen, **trainable}
        return save_liteframe(dst, setup.liteframe, params, lora=setup.lora, stage="lma",
                              tokenizer_dir=tokenizer_dir, provenance=provenance, overwrite=True)
    params = combine(setup, trainable, frozen)
    extra = {"provenance": provenance}
    if setup.wap is not None:
        extra["post_hoc_wap"] = setup.wap.to_dict()
    return store.save_checkpoint(dst, "internvl", setup.teacher.to_dict(), params,
                                 extra_files=tokenizer_files(tokenizer_dir), metadata=extra, overwrite=True)


def run(config, workdir: str | Path) -> dict:
    """Runs (or resumes) LMA in `workdir`. Returns the last logged metrics."""
    return loop.run(LMATask(config), workdir)
