"""Device meshes and the single table mapping logical axis names to mesh axes.

Model code names only logical axes (embed, mlp, heads, kv_heads, vocab, batch, ...). A rule maps a logical name to
one mesh axis or a tuple of mesh axes; a dimension is sharded over the longest prefix of those axes whose total
size divides it and that the same array does not already use, otherwise it is replicated. Changing the
parallelism therefore never touches model code.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("vocab", "tensor"),
)


def make_mesh(axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Mesh with named axes in the given order (Auto axis types). One size may be -1: it takes the remaining
    devices. Raises ValueError when the sizes do not multiply to the device count."""
    devices = list(devices if devices is not None else jax.devices())
    names, sizes = list(axes), [int(v) for v in axes.values()]
    unknown = [n for n in names if n not in MESH_AXES]
    if unknown:
        raise ValueError(f"unknown mesh axes {unknown}; known: {MESH_AXES}")
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh sizes {dict(axes)} must be positive, with at most one -1")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"mesh {dict(axes)} cannot be filled from {len(devices)} devices")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(names, sizes))} needs {int(np.prod(sizes))} devices, "
                         f"but {len(devices)} are available")
    return jax.make_mesh(tuple(sizes), tuple(names), axis_types=(AxisType.Auto,) * len(names), devices=devices)


def resolve_spec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Rules = DEFAULT_RULES) -> P:
    """PartitionSpec for an array with logical axis `names` and `shape` on `mesh`."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for name, dim in zip(names, shape):
        target = table.get(name)
        axes = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
        axes = tuple(a for a in axes if a in mesh.shape and a not in used)
        while axes and dim % int(np.prod([mesh.shape[a] for a in axes])):
            axes = axes[:-1]
        axes = tuple(a for a in axes if mesh.shape[a] > 1)
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return P(*out)


def param_shardings(boxed_params, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """Tree of NamedShardings for a boxed parameter tree (from `init` or `jax.eval_shape(init)`)."""
    def one(box):
        if isinstance(box, nn.LogicallyPartitioned):
            return NamedSharding(mesh, resolve_spec(box.names, box.value.shape, mesh, rules))
        return NamedSharding(mesh, P())
    return jax.tree.map(one, boxed_params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


def batch_sharding(mesh: Mesh, ndim: int, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    """Sharding of a batch-major input array: dimension 0 over the `batch` rule's mesh axes."""
    target = dict(rules).get("batch")
    axes = tuple(a for a in ((target,) if isinstance(target, str) else tuple(target or ())) if a in mesh.shape)
    return NamedSharding(mesh, P(axes if axes else None, *([None] * (ndim - 1))))


def rules_from_config(rules) -> Rules:
    """Rules from a config value: a sequence of (logical name, mesh axis | [mesh axes] | None)."""
    out = []
    for name, target in rules:
        out.append((str(name), tuple(target) if isinstance(target, (list, tuple)) else target))
    return tuple(out)


def batch_shardings(mesh: Mesh, batch, rules: Rules = DEFAULT_RULES):
    """Batch-dimension shardings for every array of a batch pytree."""
    return jax.tree.map(lambda x: batch_sharding(mesh, x.ndim, rules), batch)


def global_batch(local: dict, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> dict:
    """This process's batch (numpy) -> global arrays sharded over the batch axes (multi-host safe)."""
    import numpy as np
    shardings = batch_shardings(mesh, local, rules)
    return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v)) for k, v in local.items()}
