"""Export an InternVL checkpoint of ours (kind "internvl") to a PyTorch InternVL3 directory in either key layout.

    export_internvl3(checkpoint_dir, dst, layout)                      # our checkpoint directory
    export_params(cfg, params, dst, layout, tokenizer_dir=...)         # an InternVLConfig and its params in memory

Layouts (internvl_layouts, read backwards: each of our parameter paths -> its rule -> the PyTorch key):
  "original"  OpenGVLab InternVLChatModel keys (fused `attn.qkv`, `mlp1.N`) + an OpenGVLab config.json
              (architectures ["InternVLChatModel"], `vision_config` / `llm_config`). Loading it in PyTorch needs
              OpenGVLab's remote-code modeling files, which are not part of this repository and are NOT written
              here; our importer (`import_internvl`, `lf.load`) reads the directory as is.
  "hf"        transformers InternVLForConditionalGeneration on-disk keys + its config.json:
              `InternVLForConditionalGeneration.from_pretrained(dst)` loads it (no remote code).

The directory gets config.json, safetensors weights (`model.safetensors`, or `model-0000i-of-0000N.safetensors`
shards of at most `max_shard_bytes` plus `model.safetensors.index.json`) and the checkpoint's tokenizer files.
A fused qkv checkpoint exports to the split "hf" keys and a split one to the fused "original" keys. Shards are
written one at a time from the parameters they hold (read from the checkpoint per shard), one tensor at a time,
so the model is never held twice. The result appears at `dst` only when complete, after two checks on the
written files: config.json (with the tokenizer files) reads back as the exported config, and the safetensors
headers hold exactly the keys and shapes the importer expects for it.

Refused with one `ExportError`: LiteFrame (student) checkpoints (`converters/export_torch.py` exports those),
checkpoints whose metadata records `post_hoc_wap` (PyTorch InternVL has no WAP) and configs a layout cannot
express. Nothing from the input folder is executed: configs are JSON, tokenizer files are copied by name.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import jax
import ml_dtypes
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import internvl_layouts as layouts
from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.hf_config import (TOKENIZER_FILES, config_from_hf, original_config_dict,
                                                 transformers_config_dict)
from liteframe_jax.checkpoints.import_internvl import flat_paths, plan_import, unflatten
from liteframe_jax.checkpoints.safetensors_stream import INDEX_FILE, SafetensorsCheckpoint, write_safetensors
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import abstract_params

LAYOUTS = (layouts.ORIGINAL, layouts.HF)
DTYPE_CHOICES = ("auto", "float32", "bfloat16")
QKV_LAYOUT = {layouts.ORIGINAL: "fused", layouts.HF: "split"}
ARCHITECTURES = {layouts.ORIGINAL: "InternVLChatModel", layouts.HF: "InternVLForConditionalGeneration"}
DEFAULT_SHARD_BYTES = 5 * 10**9
SINGLE_FILE = "model.safetensors"
_NUMPY_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
_VIT_QKV = re.compile(r"(vision/layers_\d+/attn/)(q|k|v|qkv)/(kernel|bias)")

Log = Callable[[str], None]


class ExportError(ValueError):
    """The checkpoint cannot be exported to the requested PyTorch layout (nothing was written)."""


@dataclasses.dataclass(frozen=True)
class Entry:
    """One PyTorch tensor: made from our stored `sources` (one path, or q/k/v to fuse), then `transform`ed.

    index: take this slice of the fused (D, 3, D) kernel / (3, D) bias along `axis` (split q/k/v from fused);
    with three sources they are stacked along `axis` (fuse q/k/v) instead."""
    torch_key: str
    sources: tuple[str, ...]
    transform: str
    torch_shape: tuple[int, ...]
    index: int | None = None
    axis: int = 0

    def make(self, arrays: dict[str, np.ndarray], dtype: np.dtype) -> np.ndarray:
        """-> the PyTorch tensor (torch_shape) in `dtype`, from {our path: array}."""
        xs = [np.asarray(arrays[s]) for s in self.sources]
        if len(xs) == 3:
            x = np.stack(xs, axis=self.axis)
        else:
            x = xs[0] if self.index is None else np.take(xs[0], self.index, axis=self.axis)
        return layouts.to_torch(self.transform, x, self.torch_shape).astype(dtype, copy=False)

    def nbytes(self, dtype: np.dtype) -> int:
        return int(np.prod(self.torch_shape, dtype=np.int64)) * dtype.itemsize


@dataclasses.dataclass(frozen=True)
class ParamSource:
    """Our parameters by slash path: `shapes` (path -> ShapeDtypeStruct) and `read(paths) -> {path: array}`."""
    shapes: dict[str, jax.ShapeDtypeStruct]
    read: Callable[[list[str]], dict[str, np.ndarray]]


# ---------------------------------------------------------------------------------------------- plan
def _sources(path: str, stored_qkv: str, target_qkv: str) -> tuple[tuple[str, ...], int | None, int]:
    """Stored paths that make target parameter `path`: (sources, index, axis); see Entry."""
    m = _VIT_QKV.fullmatch(path)
    if m is None or stored_qkv == target_qkv:
        return (path,), None, 0
    prefix, which, leaf = m.groups()
    axis = 1 if leaf == "kernel" else 0  # fused kernel (D, 3, D), fused bias (3, D)
    if target_qkv == "split":
        return (f"{prefix}qkv/{leaf}",), "qkv".index(which), axis
    return tuple(f"{prefix}{x}/{leaf}" for x in "qkv"), None, axis


def _check_stored(cfg: InternVLConfig, shapes: dict[str, jax.ShapeDtypeStruct]) -> None:
    """The stored arrays must be exactly the model's parameters (else ExportError listing the differences)."""
    want = {p: tuple(s.shape) for p, s in flat_paths(nn.unbox(abstract_params(cfg))).items()}
    missing = sorted(set(want) - set(shapes))
    unexpected = sorted(set(shapes) - set(want))
    misshaped = [f"{p}: stored {tuple(shapes[p].shape)}, model expects {want[p]}"
                 for p in sorted(set(want) & set(shapes)) if tuple(shapes[p].shape) != want[p]]
    if missing or unexpected or misshaped:
        parts = ["the parameters do not match the model their config describes:"]
        for title, items in (("missing", missing), ("not part of the model (would not be written)", unexpected),
                             ("wrong shape", misshaped)):
            if items:
                more = " ..." if len(items) > 20 else ""
                parts.append(f"  {title} ({len(items)}): {', '.join(items[:20])}{more}")
        raise ExportError("\n".join(parts))


def plan_export(cfg: InternVLConfig, shapes: dict[str, jax.ShapeDtypeStruct],
                layout: str) -> tuple[InternVLConfig, list[Entry]]:
    """-> (the config as the layout holds it (its qkv layout), one Entry per PyTorch tensor, sorted by key).
    Every stored parameter feeds some tensor and every tensor has exactly one rule, else ExportError."""
    _check_stored(cfg, shapes)
    target_cfg = cfg.replace(vision=dataclasses.replace(cfg.vision, qkv_layout=QKV_LAYOUT[layout]))
    targets = flat_paths(nn.unbox(abstract_params(target_cfg)))
    entries, used = [], collections.Counter()
    for path, leaf in targets.items():
        try:
            rule, key = layouts.find_torch_key(layouts.RULES[layout], path)
        except ValueError as e:
            raise ExportError(f"layout {layout!r}: {e}") from None
        sources, index, axis = _sources(path, cfg.vision.qkv_layout, target_cfg.vision.qkv_layout)
        shape = tuple(leaf.shape)
        entries.append(Entry(key, sources, rule.transform, layouts.torch_shape(rule.transform, shape), index, axis))
        used.update((s, index) for s in sources)  # a fused qkv feeds three tensors, one slice each
    twice = sorted(k for k, n in collections.Counter(e.torch_key for e in entries).items() if n > 1)
    twice += sorted(f"{s}[{i}]" if i is not None else s for (s, i), n in used.items() if n > 1)
    unused = sorted(set(shapes) - {s for s, _ in used})
    if twice or unused:
        raise ExportError(f"layout {layout!r} does not give every parameter exactly one PyTorch key: "
                          f"written twice {twice}, never written {unused}")
    return target_cfg, sorted(entries, key=lambda e: e.torch_key)


def shard(entries: list[Entry], dtype: np.dtype, max_bytes: int) -> list[list[Entry]]:
    """Consecutive groups of at most `max_bytes` (a larger tensor gets a group of its own)."""
    groups, size = [[]], 0
    for e in entries:
        n = e.nbytes(dtype)
        if groups[-1] and size + n > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(e)
        size += n
    return groups


def resolve_dtype(dtype: str, shapes: dict[str, jax.ShapeDtypeStruct]) -> str:
    """"auto" -> the parameters' one floating dtype ("float32" | "bfloat16")."""
    if dtype not in DTYPE_CHOICES:
        raise ExportError(f"dtype={dtype!r} must be one of {DTYPE_CHOICES}")
    if dtype != "auto":
        return dtype
    stored = sorted({np.dtype(s.dtype).name for s in shapes.values()})
    if len(stored) != 1 or stored[0] not in _NUMPY_DTYPES:
        raise ExportError(f"the parameters are stored as {', '.join(stored)}: pass dtype float32 or bfloat16")
    return stored[0]


# ---------------------------------------------------------------------------------------------- config
def _flat_fields(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat_fields(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _check_config_reads_back(directory: Path, want: InternVLConfig, layout: str) -> None:
    """config.json + tokenizer files in `directory` must import as `want` (runtime fields aside), else ExportError."""
    runtime = dict(dtype="float32", attention_impl="xla", remat=False)  # not part of a PyTorch config
    got = _flat_fields(config_from_hf(directory, want.vision.qkv_layout).replace(**runtime).to_dict())
    ours = _flat_fields(want.replace(**runtime).to_dict())
    # an undeclared eos (None) already means the tokenizer's end token to us, which the import then declares
    same = lambda k: ours[k] == got[k] or (k == "eos_token_id" and ours[k] is None)  # noqa: E731
    diffs = [f"{k}: {ours[k]!r} here, {got[k]!r} as exported" for k in ours if not same(k)]
    if diffs:
        hint = ("\n  (token ids declared in the tokenizer files win over config.json; <img> and </img> ids are read "
                "from the tokenizer files only)" if any("token_id" in d for d in diffs) else "")
        raise ExportError(f"the {layout!r} layout cannot express this model's config:\n  " + "\n  ".join(diffs) + hint)


def _write_config(directory: Path, cfg: InternVLConfig, layout: str, dtype: str) -> None:
    build = original_config_dict if layout == layouts.ORIGINAL else transformers_config_dict
    (directory / "config.json").write_text(json.dumps(build(cfg, dtype), indent=2) + "\n")


# ---------------------------------------------------------------------------------------------- write
def _shard_name(i: int, n: int) -> str:
    return SINGLE_FILE if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"


def _write_shards(directory: Path, groups: list[list[Entry]], source: ParamSource, dtype: np.dtype,
                  log: Log) -> int:
    """Writes every group as one safetensors file (+ the index when sharded). Returns the total bytes."""
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        name = _shard_name(i, len(groups))
        arrays = source.read(sorted({s for e in group for s in e.sources}))
        layout = {e.torch_key: (dtype, e.torch_shape) for e in group}
        size = write_safetensors(directory / name, layout, ((e.torch_key, e.make(arrays, dtype)) for e in group),
                                 metadata={"format": "pt"})
        del arrays
        weight_map.update({e.torch_key: name for e in group})
        total += size
        log(f"  {name}: {len(group)} tensors, {size / 1e6:,.1f} MB")
    if len(groups) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return total


def _verify_weights(directory: Path, entries: list[Entry], dtype: np.dtype) -> None:
    """The written headers must hold exactly the keys, shapes and dtype the importer expects (no data is read)."""
    weights = SafetensorsCheckpoint(directory)
    plan_import(directory, weights)  # CheckpointMismatchError for any missing / unexpected / misshaped key
    wrong = [k for k, info in weights.tensors.items() if np.dtype(info.dtype) != dtype]
    if wrong or len(weights.tensors) != len(entries):
        raise ExportError(f"internal error: wrote {len(weights.tensors)} tensors for {len(entries)} planned, "
                          f"{len(wrong)} not in {dtype.name}")


def _prepare_destination(dst: Path, overwrite: bool) -> bool:
    """-> the `overwrite` to give atomic_directory (an existing empty folder is replaced without asking)."""
    if not dst.exists():
        return overwrite
    if not dst.is_dir():
        raise FileExistsError(f"{dst} exists and is not a folder")
    if any(dst.iterdir()) and not overwrite:
        raise FileExistsError(f"{dst} already exists and is not empty (pass --overwrite to replace it)")
    return True


def _export(source: ParamSource, cfg: InternVLConfig, dst: str | os.PathLike, layout: str, dtype: str,
            tokenizer_files: list[Path], overwrite: bool, max_shard_bytes: int, log: Log | None) -> Path:
    if layout not in LAYOUTS:
        raise ExportError(f"layout={layout!r} must be one of {LAYOUTS}")
    log = log or (lambda msg: None)
    dst = Path(dst)
    overwrite = _prepare_destination(dst, overwrite)
    dtype = resolve_dtype(dtype, source.shapes)
    np_dtype = _NUMPY_DTYPES[dtype]
    target_cfg, entries = plan_export(cfg, source.shapes, layout)
    groups = shard(entries, np_dtype, max_shard_bytes)
    with store.atomic_directory(dst, overwrite) as tmp:
        for f in tokenizer_files:
            shutil.copy2(f, tmp / f.name)
        log(f"  tokenizer files: {', '.join(f.name for f in tokenizer_files) or 'none'}")
        _write_config(tmp, target_cfg, layout, dtype)
        _check_config_reads_back(tmp, target_cfg, layout)
        log(f"  config.json ({ARCHITECTURES[layout]}, reads back as the exported config)")
        total = _write_shards(tmp, groups, source, np_dtype, log)
        _verify_weights(tmp, entries, np_dtype)
        n_params = sum(int(np.prod(e.torch_shape)) for e in entries)
        log(f"  {len(entries)} tensors, {n_params:,} parameters, {total / 1e6:,.1f} MB {dtype} in {len(groups)} "
            f"file(s); keys and shapes checked against the importer")
    return dst


def _tokenizer_files(directory: str | os.PathLike | None) -> list[Path]:
    if directory is None:
        return []
    return [Path(directory) / n for n in TOKENIZER_FILES if (Path(directory) / n).is_file()]


# ---------------------------------------------------------------------------------------------- public
def export_params(cfg: InternVLConfig, params, dst: str | os.PathLike, layout: str, dtype: str = "auto",
                  tokenizer_dir: str | os.PathLike | None = None, overwrite: bool = False,
                  max_shard_bytes: int = DEFAULT_SHARD_BYTES, log: Log | None = None) -> Path:
    """Writes InternVL params (nested dict, boxed or plain, in `cfg.vision.qkv_layout`) as a PyTorch InternVL3
    directory in `layout` ("original" | "hf") at `dst` atomically; tokenizer files are copied from
    `tokenizer_dir`. dtype "auto" keeps the params' dtype. Returns `dst`."""
    flat = flat_paths(nn.unbox(params))
    shapes = {p: jax.ShapeDtypeStruct(tuple(np.shape(x)), np.dtype(x.dtype)) for p, x in flat.items()}
    source = ParamSource(shapes, lambda paths: {p: np.asarray(flat[p]) for p in paths})
    return _export(source, cfg.validate(), dst, layout, dtype, _tokenizer_files(tokenizer_dir), overwrite,
                   max_shard_bytes, log)


def checkpoint_source(checkpoint: Path) -> ParamSource:
    """Reads the arrays a shard needs from our checkpoint's params/ (into host memory), not the whole tree."""
    shapes = store.stored_arrays(checkpoint)
    try:
        device = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # no CPU backend enabled (JAX_PLATFORMS without cpu): the default device
        device = jax.local_devices()[0]
    sharding = jax.sharding.SingleDeviceSharding(device)

    def read(paths: list[str]) -> dict[str, np.ndarray]:
        subset = unflatten({p: shapes[p] for p in paths})
        restored = store.restore_params(checkpoint, subset, jax.tree.map(lambda _: sharding, subset))
        return {p: np.asarray(x) for p, x in flat_paths(restored).items()}

    return ParamSource(shapes, read)


def read_exportable(checkpoint: str | os.PathLike) -> tuple[InternVLConfig, dict]:
    """-> (config, metadata) of our InternVL checkpoint, or ExportError / FileNotFoundError saying why it is not
    one that PyTorch InternVL3 can hold."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{checkpoint} is not a directory")
    if not store.is_checkpoint(checkpoint):
        raise FileNotFoundError(f"{checkpoint} is not a LiteFrame-JAX checkpoint (no {store.CONFIG_FILE} + "
                                f"{store.PARAMS_DIR}/); to convert between PyTorch layouts, import it first with "
                                "converters/import_internvl3.py")
    meta = store.read_metadata(checkpoint)
    if meta["kind"] == "liteframe":
        raise ExportError(f"{checkpoint} is a LiteFrame (student) checkpoint, which PyTorch InternVL3 cannot hold; "
                          "export it with converters/export_torch.py instead")
    if meta["kind"] != "internvl":
        raise ExportError(f"{checkpoint} holds a {meta['kind']!r} checkpoint, not an InternVL model")
    if meta.get("post_hoc_wap"):
        raise ExportError(f"{checkpoint} records post-hoc WAP compression (post_hoc_wap in {store.CONFIG_FILE}: "
                          f"{meta['post_hoc_wap']}); PyTorch InternVL3 has no WAP, so an export would compute "
                          "something other than this model. Use it through lf.load, which applies the WAP")
    return InternVLConfig.from_dict(meta["model"]).validate(), meta


def export_internvl3(checkpoint: str | os.PathLike, dst: str | os.PathLike, layout: str, dtype: str = "auto",
                     overwrite: bool = False, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
                     log: Log | None = None) -> Path:
    """Exports our InternVL checkpoint directory to a PyTorch InternVL3 directory in `layout` at `dst` (see the
    module doc). dtype "auto" keeps the checkpoint's. Returns `dst`."""
    checkpoint, dst = Path(checkpoint), Path(dst)
    if layout not in LAYOUTS:
        raise ExportError(f"layout={layout!r} must be one of {LAYOUTS}")
    cfg, _ = read_exportable(checkpoint)
    if dst.absolute() == checkpoint.absolute():
        raise ExportError("the destination must differ from the checkpoint")
    (log or (lambda m: None))(f"exporting {checkpoint} (InternVL, {cfg.vision.qkv_layout} qkv, "
                              f"{cfg.text.num_layers} LLM layers) to the {layout!r} layout")
    return _export(checkpoint_source(checkpoint), cfg, dst, layout, dtype, _tokenizer_files(checkpoint), overwrite,
                   max_shard_bytes, log)
