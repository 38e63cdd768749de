"""Training checkpoints: an orbax CheckpointManager (async saves, keep K) holding the train state,
the data iterator state and small run metadata; restores go straight into the target shardings, so a run can
resume on a different mesh."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


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

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, data_state: dict[str, Any], meta: dict[str, Any]) -> None:
        """Starts an async save of `step` (the caller decides when a save is due)."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state), meta=ocp.args.JsonSave(meta)),
            force=True)

    def restore(self, abstract_state, step: int | None = None):
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return step, out["state"], out["data"], out["meta"]

    def restore_data(self, step: int | None = None) -> dict:
        """Only the data-iterator state of `step` (default: the latest), without reading the train state."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return self.manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


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
