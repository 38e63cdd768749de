"""Training checkpoints: an orbax CheckpointManager (async saves, keep K) holding the train state,
the data iterator state and small run metadata; restores go straight into the target shardings, so a run can
resume on a different mesh."""

from __future__ import annotations

import contextlib
import gc
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from liteframe_jax.checkpoints.orbax_reports import closed_loop_reports_dropped


class CheckpointError(RuntimeError):
    """No checkpoint of a run could be restored; the message says why in one line."""


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


def _os_reason(e: Exception) -> str:
    """'No space left on device: ' when an exception carries an OS error code (an OSError, or tensorstore's
    "[os_error_code='28']" text), else ''."""
    code = e.errno if isinstance(e, OSError) else None
    found = re.search(r"os_error_code='(\d+)'", str(e))
    if code is None and found:
        code = int(found.group(1))
    return f"{os.strerror(code)}: " if code else ""


class TrainCheckpointer:
    """`save(step, state, data_state, meta)` / `restore(abstract_state) -> (step, state, data_state, meta)`.

    `abstract_state` is a pytree of jax.ShapeDtypeStruct carrying the target shardings. `data_state` and `meta`
    are JSON-serializable dicts (the data iterator state, counters, ...). The teacher is never saved here.
    """

    def __init__(self, directory: str | Path, keep: int, use_async: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=use_async)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data", "meta"))
        self._writing: int | None = None  # the step of the last save started

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Starts an async save of `step` (the caller decides when a save is due). A failed write (a full disk,
        ...) of this or the previous save raises CheckpointError here or in `wait` / `close`."""
        with self._write_failures_said():
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta)), force=True)
        self._writing = step

    def restore(self, abstract_state, step: int | None = None, log=print):
        """(step, state, data_state, meta) of `step` (default: the newest readable one).

        Without `step`: when the newest checkpoint cannot be read but an older one can, with the same target (so
        the files, not the config, are at fault: truncated, garbled or missing), the unreadable newer ones are moved
        aside to `unreadable_dir` (never deleted), each said in one `log` line, and the run resumes from the older
        one. When no checkpoint can be read, CheckpointError says why in one line (a changed model config is the
        usual cause) and nothing is moved."""
        with closed_loop_reports_dropped():
            if step is not None:
                return self._restore(step, abstract_state)
            return self._restore_newest_readable(abstract_state, log)

    def _restore_newest_readable(self, abstract_state, log):
        """`restore` without a step: newest first, moving unreadable newer steps aside once an older one reads."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        failures = []
        for candidate in steps:
            with warnings.catch_warnings():
                # a failed read can leave orbax coroutines never awaited; finalize them here, where their warning
                # is not news (the one line below says what happened), not later at a random line of stderr
                warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
                try:
                    result = self._restore(candidate, abstract_state)
                except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types for unreadable files
                    failures.append((candidate, _one_line(e)))
                    result = None
                if result is None:
                    gc.collect()
            if result is None:
                continue
            for bad, reason in failures:
                log(f"checkpoint step {bad} cannot be read ({reason}); moved to {self._move_aside(bad)}; "
                    f"resuming from step {candidate}")
            if failures:
                self.manager.reload()
            return result
        bad, reason = failures[0]
        raise CheckpointError(f"no checkpoint in {self.directory} can be restored into this run's state (newest: "
                              f"step {bad}: {reason}); was the model or optimizer config changed?")

    def _restore(self, step: int, abstract_state):
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return step, out["state"], out["data"], out["meta"]

    @property
    def unreadable_dir(self) -> Path:
        return self.directory.with_name(self.directory.name + ".unreadable")

    def _move_aside(self, step: int) -> Path:
        """Moves step `step`'s folder out of the manager's sight (process 0; the others wait for it)."""
        dst = self.unreadable_dir / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        if jax.process_index() == 0:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.directory / str(step), dst)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"checkpoint step {step} moved aside")
        return dst

    def restore_data(self, step: int | None = None) -> dict | None:
        """Only the data-iterator state of `step` (default: the latest), without reading the train state; None when
        it cannot be read (`restore` then deals with the unreadable checkpoint)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        try:
            with closed_loop_reports_dropped():
                return self.manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]
        except Exception:  # noqa: BLE001 - see restore
            return None

    def wait(self) -> None:
        with self._write_failures_said():
            self.manager.wait_until_finished()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()

    @contextlib.contextmanager
    def _write_failures_said(self):
        """An exception of an orbax write (raised by the writing thread, or later by orbax when waiting for it)
        -> CheckpointError naming the step, the folder and the OS's reason, in one line."""
        try:
            yield
        except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise ValueError, OSError, ... for failed writes
            raise CheckpointError(f"writing checkpoint step {self._writing} to {self.directory} failed: "
                                  f"{_os_reason(e)}{_one_line(e)}") from e


def iterator_states(local_state: dict, **extra) -> dict:
    """The `data_state` to save: every process's data-iterator state (processes read different slices of the
    stream, and orbax writes JSON items from process 0 only, so each state is gathered first). All processes must
    call it. -> {"process_count": P, "iterators": [state of process 0, ..., P-1], **extra}."""
    import json

    import numpy as np

    if jax.process_count() == 1:
        return {"process_count": 1, "iterators": [local_state], **extra}
    from jax.experimental import multihost_utils

    raw = np.frombuffer(json.dumps(local_state).encode(), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.array([raw.size], np.int32))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[:raw.size] = raw
    every = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    states = [json.loads(bytes(row[:n]).decode()) for row, n in zip(every, lengths)]
    return {"process_count": len(states), "iterators": states, **extra}


def local_iterator_state(data_state: dict) -> dict:
    """This process's iterator state from a saved `data_state`; a ValueError when the checkpoint was written by a
    different number of processes (each process reads stream[p::P], so positions do not carry over)."""
    if "iterators" not in data_state:  # written before per-process states: a single process
        data_state = {"process_count": 1, "iterators": [data_state["iterator"]]}
    saved = data_state["process_count"]
    if saved != jax.process_count():
        raise ValueError(f"the checkpoint's data-iterator state was written by {saved} process(es) and this run has "
                         f"{jax.process_count()}: the input stream is split per process, so resume with {saved} "
                         "processes (the mesh shape and devices per process may differ)")
    return data_state["iterators"][jax.process_index()]


def abstract_with_shardings(abstract_tree, shardings):
    """ShapeDtypeStructs of `abstract_tree` that carry `shardings` (restore targets)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_tree, shardings)


def to_host(tree):
    """Full numpy copies of (possibly multi-host sharded) arrays; every process must call it."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)
