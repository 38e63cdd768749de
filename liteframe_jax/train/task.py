"""What a training task gives the loop (liteframe_jax.train.loop): the pieces that differ between CTD, LMA and
future tasks. Everything else (mesh, restore/resume, stepping, eval, logging, checkpoints, the non-finite stop,
stop_at_step) is the loop's.

A task is built from a config (its constructor validates the whole config and raises ValueError before anything
compiles), then the loop calls, in order: `setup(run)` once, `state_target()` (resume) or `init_state()` (fresh
start), `banner(start)`, `phase(step)` whenever the current phase has ended, `inputs(batch)` on every host batch,
and `export(state, workdir)` after the last step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Protocol

from jax.sharding import Mesh

from liteframe_jax.config_base import ConfigBase
from liteframe_jax.data.pipeline import SkipStats
from liteframe_jax.sharding import Rules
from liteframe_jax.train.optim import OptimConfig

LOOP_FIELDS = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "eval_batches")


@dataclasses.dataclass(frozen=True)
class LoopConfig(ConfigBase):
    """The loop's own settings (config.train): global batch size, cadences, checkpoint retention, and
    `stop_at_step` >= 0 to stop after that step as if interrupted (for resume tests)."""

    config_name: ClassVar[str] = "train config"
    batch_size: int
    log_every: int
    eval_every: int
    eval_batches: int
    checkpoint_every: int
    keep_checkpoints: int
    async_checkpoints: bool = True
    stop_at_step: int = -1

    @classmethod
    def from_config(cls, train) -> "LoopConfig":
        """From config.train (a ConfigDict that may hold task-specific fields too)."""
        return cls(**{f.name: train[f.name] for f in dataclasses.fields(cls)})

    def problems(self, process_count: int = 1) -> list[str]:
        """Problems with these settings as "train.FIELD=..." lines (empty when fine), for a run of
        `process_count` processes."""
        e = [] if self.batch_size % process_count == 0 else [
            f"train.batch_size={self.batch_size} must divide over {process_count} processes"]
        return e + [f"train.{n}={getattr(self, n)} must be >= 1" for n in LOOP_FIELDS if getattr(self, n) < 1]

    errors = problems


@dataclasses.dataclass(frozen=True)
class Run:
    """What the loop hands a task in `setup`: the device mesh and sharding rules, the run directory, this
    process's share of every global batch, and `log(text)` (process 0 prints, the others stay quiet)."""

    mesh: Mesh
    rules: Rules
    workdir: Path
    local_batch: int
    log: Callable[[str], None]


@dataclasses.dataclass
class Phase:
    """A stretch of steps, up to `last_step` (inclusive), that share one data stream and one compiled step (the
    whole run for CTD; one curriculum stage of LMA).

    batches: this process's host batches (a grain iterator: get_state/set_state are checkpointed).
    skips: the SkipStats of `batches`' dataset (examples it dropped).
    train_step: jitted (state, *frozen, inputs) -> (state, metrics with a boolean "finite"); the state is
        {"step", "params", "opt"}, `frozen` the task's `frozen` arguments, `inputs` the sharded `inputs(batch)`.
    eval_step: jitted (state["params"], *frozen, inputs) -> metrics.
    eval_batches: () -> a fresh iterable of held-out host batches (the loop takes up to train.eval_batches full
        ones and averages the metrics).
    data_tag: saved with the iterator state; a resumed run restores the iterator only into a phase with the same
        tag (LMA: the stage index).
    log_extra: constant values logged with every train record (LMA: the frame count).
    message: logged when the phase starts.
    """

    last_step: int
    batches: Iterator[dict]
    skips: SkipStats
    train_step: Callable
    eval_step: Callable
    eval_batches: Callable[[], Iterable[dict]]
    data_tag: dict = dataclasses.field(default_factory=dict)
    log_extra: dict = dataclasses.field(default_factory=dict)
    message: str | None = None


class Task(Protocol):
    """The few things that differ between training tasks (see the module doc for the call order)."""

    config: Any  # the run's ConfigDict: the loop reads mesh and sharding_rules and writes it to DIR/config.json
    optim: OptimConfig  # optim.total_steps is the run's length; the logged "lr" follows its schedule
    loop: LoopConfig
    skipped_what: str  # how skipped examples are called in messages ("unreadable", "unusable")
    frozen: tuple  # arguments every step gets after the state (frozen teacher, statistics); set by setup

    def setup(self, run: Run) -> None:
        """Loads what the steps need besides the train state (frozen params, tokenizer, statistics)."""

    def state_target(self) -> Any:
        """The train state as jax.ShapeDtypeStructs carrying their shardings (what a resume restores into)."""

    def init_state(self) -> Any:
        """The fresh train state {"step", "params", "opt"}, placed in its shardings."""

    def banner(self, start: int) -> str:
        """The start-up line; `start` is the resumed step (0 = fresh start)."""

    def phase(self, step: int) -> Phase:
        """The phase that runs `step` (called at the first step and after each phase's last step)."""

    def inputs(self, batch: dict) -> dict:
        """A host batch -> the numpy arrays the steps take (the loop shards them over the mesh)."""

    def export(self, state, workdir: Path) -> str:
        """Writes the trained model after the last step (every process calls it); returns a line for the log."""
