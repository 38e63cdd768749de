"""Our checkpoint directory: `liteframe.json` (kind + model config) + `params/` (orbax) + tokenizer files.

Writes are atomic: everything goes to a hidden sibling directory that is renamed into place only when complete,
so an interrupted or failed write never leaves a half-written checkpoint at the destination.

Params may hold `LazyArray` leaves (shape + dtype + a function that makes the array): each is made only when
orbax writes it and dropped once written, one at a time, so writing a model converted on the fly needs host
memory for one tensor, not the model (the importer's bounded-memory path). The files are the same as for plain
arrays.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import type_handlers

from liteframe_jax.partial_writes import new_partial, remove_stale_partials

CONFIG_FILE = "liteframe.json"
PARAMS_DIR = "params"
FORMAT_VERSION = 1


def is_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / PARAMS_DIR).is_dir()


@contextlib.contextmanager
def atomic_directory(dst: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary directory that becomes `dst` on success and is deleted on any failure. Unfinished
    writes of `dst` that killed processes left (kill -9 allows no clean-up) are removed first (partial_writes)."""
    dst = Path(dst).absolute()
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists (pass overwrite to replace it)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    prefix = str(dst.parent / f".{dst.name}.partial-")
    remove_stale_partials(prefix, str(dst))
    tmp = Path(new_partial(prefix))
    tmp.mkdir()
    try:
        yield tmp
        if dst.exists():
            old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old)
        else:
            tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class LazyArray:
    """A host array made only when it is written: `load()` returns a numpy array of exactly `shape` and `dtype`."""

    __slots__ = ("shape", "dtype", "load")

    def __init__(self, shape: tuple[int, ...], dtype, load: Callable[[], np.ndarray]):
        self.shape, self.dtype, self.load = tuple(int(d) for d in shape), np.dtype(dtype), load

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"LazyArray({self.dtype}{self.shape})"


class _LazyNumpyHandler(type_handlers.NumpyHandler):
    """Writes LazyArray leaves as orbax writes numpy arrays (same typestr, same tensorstore spec, same files), but
    one at a time: each is loaded, written, committed and dropped before the next is loaded."""

    def __init__(self):
        super().__init__(deepcopy_host_arrays=False)  # each array is made for this write alone

    async def _background_serialize(self, values, infos, args=None):
        for lazy, info, arg in zip(values, infos, args):
            x = lazy.load()
            if tuple(x.shape) != lazy.shape or np.dtype(x.dtype) != lazy.dtype:
                raise ValueError(f"{info.name}: made {x.dtype}{tuple(x.shape)} where {lazy!r} was declared")
            await super()._background_serialize([x], [info], [arg])
            del x


def _lazy_params_handler(alone) -> ocp.StandardCheckpointHandler:
    """StandardCheckpointHandler (what StandardCheckpointer saves with: same files, same metadata, the same handler
    name in _CHECKPOINT_METADATA) whose pytree writer also takes LazyArray leaves."""
    handler = ocp.StandardCheckpointHandler(multiprocessing_options=alone)
    for attr in ("_impl", "_supported_types"):  # orbax internals this relies on: fail loudly if they change
        if not hasattr(handler, attr):
            raise RuntimeError(f"orbax {ocp.__version__}: StandardCheckpointHandler has no {attr}; update store.py")
    registry = type_handlers.create_type_handler_registry(
        (np.ndarray, type_handlers.NumpyHandler()), (LazyArray, _LazyNumpyHandler()))
    handler._supported_types = (*handler._supported_types, LazyArray)
    handler._impl = ocp.PyTreeCheckpointHandler(multiprocessing_options=alone, type_handler_registry=registry,
                                                use_ocdbt=True)
    return handler


def _save_params(path: Path, params, alone) -> None:
    if any(isinstance(x, LazyArray) for x in jax.tree.leaves(params)):
        ckptr = ocp.Checkpointer(_lazy_params_handler(alone), multiprocessing_options=alone)
        try:
            ckptr.save(path, args=ocp.args.StandardSave(params))
        finally:
            ckptr.close()
        return
    ckptr = ocp.StandardCheckpointer(multiprocessing_options=alone)
    ckptr.save(path, params)
    ckptr.wait_until_finished()
    ckptr.close()


def save_checkpoint(dst: str | os.PathLike, kind: str, model_config: dict[str, Any], params,
                    extra_files: list[Path] = (), metadata: dict[str, Any] | None = None,
                    overwrite: bool = False) -> Path:
    """Writes params (nested dict of host arrays, or of LazyArray leaves written one at a time) and config
    atomically, from the calling process alone (in a multi-process run the others do not take part). Returns the
    checkpoint path."""
    me = jax.process_index()
    alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    with atomic_directory(dst, overwrite) as tmp:
        _save_params(tmp / PARAMS_DIR, params, alone)
        for f in extra_files:
            shutil.copy2(f, tmp / Path(f).name)
        meta = {"format_version": FORMAT_VERSION, "kind": kind, "model": model_config, **(metadata or {})}
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return Path(dst)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not is_checkpoint(path):
        raise FileNotFoundError(f"{path} is not a LiteFrame-JAX checkpoint (no {CONFIG_FILE} + {PARAMS_DIR}/)")
    meta = json.loads((path / CONFIG_FILE).read_text())
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer LiteFrame-JAX (format {meta['format_version']})")
    return meta


def stored_arrays(path: str | os.PathLike) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape and dtype of every array in `params/`, by slash-separated path ("llm/layers_0/up/kernel"), read from
    the orbax metadata alone."""
    ckptr = ocp.StandardCheckpointer()
    try:
        stored = ckptr.metadata(Path(path).absolute() / PARAMS_DIR)
    finally:
        ckptr.close()
    stored = getattr(stored, "item_metadata", stored)
    return {"/".join(str(getattr(k, "key", k)) for k in p): jax.ShapeDtypeStruct(tuple(m.shape), np.dtype(m.dtype))
            for p, m in jax.tree_util.tree_flatten_with_path(stored)[0]}


def restore_params(path: str | os.PathLike, abstract_params, shardings=None):
    """Restores `params/` into the structure of `abstract_params` (ShapeDtypeStructs), which may be a subtree
    selection of what is stored (only those arrays are read). `shardings`: matching pytree of
    jax.sharding.Sharding (default: the first local device). Stored dtypes are kept."""
    path = Path(path).absolute() / PARAMS_DIR
    ckptr = ocp.StandardCheckpointer()
    stored = ckptr.metadata(path)
    stored = getattr(stored, "item_metadata", stored)
    if shardings is None:
        dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shardings = jax.tree.map(lambda _: dev, abstract_params)
    stored_flat = dict(jax.tree_util.tree_flatten_with_path(stored)[0])
    target = jax.tree_util.tree_map_with_path(
        lambda p, a, s: jax.ShapeDtypeStruct(a.shape, np.dtype(stored_flat[p].dtype) if p in stored_flat else a.dtype,
                                             sharding=s), abstract_params, shardings)
    ckptr.close()
    # partial: `abstract_params` may name a part of what is stored (e.g. CTD reads the teacher's vision tower)
    restorer = ocp.PyTreeCheckpointer()
    try:
        return restorer.restore(path, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
    finally:
        restorer.close()
