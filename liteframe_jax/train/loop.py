"""The training loop every task runs: mesh -> task setup -> fresh or resumed train state -> steps with periodic
logging, eval and async checkpoints -> the task's export. The task (liteframe_jax.train.task.Task) supplies the
parts that differ; this module owns the rest:

- resume: re-running in the same workdir restores the latest checkpoint (train state, this process's data-iterator
  position, skip counters) and continues exactly where it stopped;
- the non-finite stop: a step whose loss is not finite is not applied (train.optim.guarded_update) and the run
  stops with NonFiniteLossError, leaving the last good checkpoint intact;
- `train.stop_at_step`: stop after that step as if interrupted (checkpoint written, no export);
- SIGTERM / SIGINT (a scheduler preempting the job, Ctrl-C): the current step finishes, a checkpoint is written
  and committed, and the run returns normally saying how to resume (exit code 0 from the CLI). With several
  processes the stop is agreed after every step, so all of them checkpoint the same step. A second signal acts
  as usual (terminate / KeyboardInterrupt).

Adding a task (e.g. teacher pre-training): write a module with a class that follows the Task protocol (parse and
validate its config in the constructor; `setup` loads frozen arguments, `phase` builds the dataset and the jitted
steps, `export` writes the model), a `run(config, workdir)` that calls `loop.run(TheTask(config), workdir)`, and
add its config.kind to the `tasks` table in liteframe_jax/train/__main__.py. A task with a single phase returns one
Phase whose last_step is optim.total_steps; a task without frozen arguments sets `frozen = ()`.
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from liteframe_jax.files import atomic_write_text
from liteframe_jax.sharding import global_batch, make_mesh, rules_from_config
from liteframe_jax.train.checkpointing import TrainCheckpointer, iterator_states, local_iterator_state
from liteframe_jax.train.metrics_log import MetricsLogger
from liteframe_jax.train.optim import schedule
from liteframe_jax.train.task import Phase, Run, Task


class NonFiniteLossError(RuntimeError):
    """A step's loss was not finite (NaN/inf); that update was not applied."""


def run(task: Task, workdir: str | Path) -> dict:
    """Runs (or resumes) `task` in `workdir`. Returns the last logged metrics."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        atomic_write_text(workdir / "config.json", task.config.to_json_best_effort(indent=2) + "\n")
    rules = rules_from_config(task.config.sharding_rules)
    mesh = make_mesh(dict(task.config.mesh))
    shards = mesh.shape.get("data", 1) * mesh.shape.get("fsdp", 1)
    if task.loop.batch_size % shards:
        raise ValueError(f"train.batch_size={task.loop.batch_size} must be a multiple of the batch shards "
                         f"data x fsdp = {shards} of mesh {dict(mesh.shape)}")
    ckpt = TrainCheckpointer(workdir / "checkpoints", task.loop.keep_checkpoints, task.loop.async_checkpoints)
    if ckpt.latest_step() is not None:  # refuse a resume with another process count before loading anything
        data_state = ckpt.restore_data()
        if data_state is not None:
            local_iterator_state(data_state)
    log = MetricsLogger(workdir, task.optim.total_steps, ckpt.latest_step() or 0, enabled=jax.process_index() == 0)
    ctx = Run(mesh, rules, workdir, task.loop.batch_size // jax.process_count(), log.message)
    try:
        with StopRequest() as stop:
            task.setup(ctx)
            return _train(task, ctx, ckpt, log, stop)
    finally:
        ckpt.close()  # waits until the last checkpoint is committed
        log.close()


class StopRequest:
    """While active (a context manager), SIGTERM and SIGINT only record that the run should stop; the loop asks
    `requested()` after each step. A second signal restores the previous handlers and is delivered again to them.
    Handlers can only be installed from the main thread; elsewhere this does nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None:  # asked twice: stop now, as without us
            self._restore()
            signal.raise_signal(signum)
            return
        self.signal_name = signal.Signals(signum).name
        print(f"received {self.signal_name}: finishing this step, then writing a checkpoint (send it again to "
              "stop at once)", file=sys.stderr, flush=True)

    def requested(self) -> bool:
        """Whether this process, or any process of the run, received a stop signal."""
        asked = self.signal_name is not None
        if jax.process_count() > 1:
            asked = bool(np.max(multihost_utils.process_allgather(np.int32(asked))))
        return asked


class _Skips:
    """Examples skipped over the whole run: the count and first examples saved with the last checkpoint, plus
    those of the phases run since (each phase's dataset counts its own)."""

    def __init__(self, meta: dict):
        self.before, self.examples = meta.get("skipped", 0), list(meta.get("skipped_examples", []))
        self.done, self.reported = [], 0

    def count(self, phase: Phase | None) -> int:
        return self.before + sum(s.count for s in self.done) + (phase.skips.count if phase else 0)

    def new_examples(self, phase: Phase) -> list[str]:
        """The current phase's skipped examples not reported yet."""
        new = phase.skips.examples[self.reported:]
        self.reported = max(self.reported, phase.skips.count)
        return new

    def end_phase(self, phase: Phase) -> None:
        self.done.append(phase.skips)
        self.examples += phase.skips.examples
        self.reported = 0

    def first(self, phase: Phase | None, n: int) -> list[str]:
        return (self.examples + (phase.skips.examples if phase else []))[:n]


def _train(task: Task, ctx: Run, ckpt: TrainCheckpointer, log: MetricsLogger, stop: StopRequest) -> dict:
    loop, total = task.loop, task.optim.total_steps
    start, data_state, meta = 0, None, {}
    if ckpt.latest_step() is not None:
        start, state, data_state, meta = ckpt.restore(task.state_target(), log=log.message)
    else:
        state = task.init_state()
    log.message(task.banner(start))
    lr = schedule(task.optim)
    skips, phase, last = _Skips(meta), None, {}

    def save(step):
        ckpt.save(step, state, iterator_states(phase.batches.get_state(), **phase.data_tag),
                  {"skipped": skips.count(phase), "skipped_examples": skips.first(phase, 20)})

    t0 = time.time()
    for step in range(start + 1, total + 1):
        if phase is None or step > phase.last_step:
            if phase is not None:
                skips.end_phase(phase)
            phase = _start_phase(task, step, data_state, log)
            if step == start + 1:
                _check_eval_data(phase)
            data_state = None
        batch = global_batch(task.inputs(next(phase.batches)), ctx.mesh, ctx.rules)
        state, metrics = phase.train_step(state, *task.frozen, batch)
        if not bool(metrics["finite"]):
            raise NonFiniteLossError(
                f"non-finite loss at step {step}: the update was not applied; the last good checkpoint "
                f"(step {ckpt.latest_step()}) in {ckpt.directory} is intact. Lower optim.peak_lr or check the data.")
        if step % loop.log_every == 0 or step == total:
            last = log.log(step, {**{k: v for k, v in metrics.items() if k != "finite"}, "lr": float(lr(step)),
                                  **phase.log_extra, "skipped_examples": skips.count(phase),
                                  "steps_per_second": (step - start) / max(time.time() - t0, 1e-9)})
        if step % loop.eval_every == 0 or step == total:
            try:
                last.update(log.log(step, evaluate(task, ctx, phase, state), prefix="eval/"))
            except Exception:  # keep the finished step: a re-run after fixing the data resumes here
                save(step)
                ckpt.wait()
                log.message(f"evaluation failed at step {step}; checkpoint of step {step} written")
                raise
        log.advance(step)
        for example in skips.new_examples(phase):  # report unusable inputs as they are met
            log.message(f"skipped {task.skipped_what} example: {example}")
        signalled = step < total and stop.requested()
        stopping = step == loop.stop_at_step or signalled
        if step % loop.checkpoint_every == 0 or step == total or stopping:
            save(step)
        if signalled:
            ckpt.wait()
            log.message(f"stopped at step {step} on {stop.signal_name or 'a stop signal of another process'}: "
                        f"checkpoint written to {ckpt.directory}; run the same command again to resume")
            break
        if stopping:
            log.message(f"stopping at step {step} as configured (train.stop_at_step)")
            break
    else:
        written = task.export(state, ctx.workdir)
        log.message(written)
    if skips.count(phase):
        print(f"skipped {skips.count(phase)} {task.skipped_what} examples in total; e.g. {skips.first(phase, 3)}",
              file=sys.stderr)
    return last


def _start_phase(task: Task, step: int, data_state: dict | None, log: MetricsLogger) -> Phase:
    """The task's phase for `step`, its data iterator moved to the saved position when resuming into it."""
    phase = task.phase(step)
    if data_state is not None and all(data_state.get(k) == v for k, v in phase.data_tag.items()):
        phase.batches.set_state(local_iterator_state(data_state))
    if phase.message:
        log.message(phase.message)
    return phase


def _check_eval_data(phase: Phase) -> None:
    """Reads one held-out batch before the first step of a run, so that an unreadable eval split stops the run
    before training rather than at the first evaluation (an empty split is allowed: nothing is evaluated)."""
    next(iter(phase.eval_batches()), None)


def evaluate(task: Task, ctx: Run, phase: Phase, state) -> dict:
    """Mean eval metrics over the first train.eval_batches full held-out batches (the same batches every time)."""
    totals, n = {}, 0
    for batch in itertools.islice(phase.eval_batches(), task.loop.eval_batches):
        inputs = task.inputs(batch)
        if min(len(v) for v in inputs.values()) < ctx.local_batch:
            break
        m = phase.eval_step(state["params"], *task.frozen, global_batch(inputs, ctx.mesh, ctx.rules))
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        n += 1
    return {k: v / max(n, 1) for k, v in totals.items()}
