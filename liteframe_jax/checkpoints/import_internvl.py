"""Import a PyTorch InternVL3 checkpoint directory (OpenGVLab or transformers layout) into our params.

Every key and shape is checked against the model built from the checkpoint's own config using the safetensors
headers alone, before any tensor data is read; problems are reported together in one `CheckpointMismatchError`.

`convert_internvl3` (and the CLI) then converts and writes the tensors one at a time: each is read from the
safetensors shards, converted to our layout and written into the orbax checkpoint before the next is read, so
peak host memory is about a small multiple of the largest tensor (the source read, its transposed copy, the
writer's buffers) plus the interpreter, whatever the model's size. `import_internvl3` returns every tensor in
memory (for `lf.load` of an HF directory); legacy pickle weights are always loaded whole (torch.load).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import jax
import ml_dtypes
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import internvl_layouts as layouts
from liteframe_jax.checkpoints.hf_config import TOKENIZER_FILES, config_from_hf
from liteframe_jax.checkpoints.safetensors_stream import (CheckpointFormatError, PickleCheckpoint,
                                                          SafetensorsCheckpoint, find_pickle_weights)
from liteframe_jax.checkpoints.store import LazyArray, save_checkpoint
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import abstract_params

DTYPE_CHOICES = ("auto", "float32", "bfloat16")
KIND = "internvl"


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not match the model its config describes."""


def open_weights(src: Path, allow_pickle: bool):
    if list(src.glob("*.safetensors")) or (src / "model.safetensors.index.json").exists():
        return SafetensorsCheckpoint(src)
    pickles = find_pickle_weights(src)
    if pickles and not allow_pickle:
        raise CheckpointFormatError(
            f"{src} holds only pickle weights ({', '.join(p.name for p in pickles)}). Pickle files can execute "
            "code when loaded, so they are refused by default; convert them to safetensors, or pass "
            "--allow_pickle to load them with torch.load(weights_only=True).")
    if pickles:
        return PickleCheckpoint(src)
    raise CheckpointFormatError(f"no model weights (*.safetensors) found in {src}")


def flat_paths(tree) -> dict[str, jax.ShapeDtypeStruct]:
    return {"/".join(str(k.key) for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    out: dict = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def plan_import(src: Path, weights, image_token_id: int | None = None):
    """Validates keys and shapes. Returns (config, layout, [(torch_key, our_path, transform, our_shape)])."""
    layout, runtime = layouts.detect_layout(weights.tensors)
    cfg = config_from_hf(src, "fused" if layout == layouts.ORIGINAL else "split", image_token_id)
    targets = flat_paths(nn.unbox(abstract_params(cfg)))
    rules = layouts.RULES[layout]
    plan, unexpected, misshaped, misshaped_targets, seen = [], [], [], [], {}
    for key, info in weights.tensors.items():
        if any(re.fullmatch(p, key) for p in layouts.IGNORED):
            continue
        name = layouts.normalize_key(key, runtime)
        hit = next(((r, t) for r in rules if (t := r.match(name)) is not None), None)
        if hit is None or hit[1] not in targets:
            unexpected.append(key)
            continue
        rule, path = hit
        want = layouts.source_shape(rule.transform, targets[path].shape, info.shape)
        if tuple(info.shape) != tuple(want):
            misshaped.append(f"{key}: checkpoint {tuple(info.shape)}, model expects {tuple(want)}")
            misshaped_targets.append((path, key))
            continue
        if path in seen:
            unexpected.append(f"{key} (duplicates {seen[path]})")
            continue
        seen[path] = key
        plan.append((key, path, rule.transform, tuple(targets[path].shape)))
    misshaped_paths = {p for p, _ in misshaped_targets}
    missing = sorted(p for p in targets if p not in seen and p not in misshaped_paths)
    if unexpected or missing or misshaped:
        parts = [f"checkpoint {src} ({layout} layout) does not match the model described by its config.json:"]
        for title, items in (("missing", [_describe_missing(p, rules, runtime) for p in missing]),
                             ("unexpected", sorted(unexpected)), ("wrong shape", misshaped)):
            if items:
                shown = "\n    ".join(items[:40]) + (f"\n    ... and {len(items) - 40} more" if len(items) > 40 else "")
                parts.append(f"  {title} ({len(items)}):\n    {shown}")
        raise CheckpointMismatchError("\n".join(parts))
    return cfg, layout, plan


def _describe_missing(path: str, rules, runtime: bool = False) -> str:
    for r in rules:  # show the torch key that would fill this parameter, in the checkpoint's own naming
        m = re.fullmatch(re.escape(r.target).replace(r"\{0\}", r"(\d+)"), path)
        if m:
            name = r.pattern.replace(r"(\d+)", m.group(1) if m.groups() else "").replace("\\", "")
            if runtime:  # on-disk name -> transformers in-memory name
                name = next((a + name[len(b):] for a, b in layouts.HF_RUNTIME_PREFIXES if name.startswith(b)), name)
            return f"{name} (-> {path})"
    return path


def _open_and_plan(src, dtype: str, allow_pickle: bool, image_token_id: int | None):
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a directory")
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype={dtype!r} must be one of {DTYPE_CHOICES}")
    weights = open_weights(src, allow_pickle)
    return (src, weights, *plan_import(src, weights, image_token_id))


def _out_dtype(src_dtype, dtype: str) -> np.dtype:
    """The stored dtype of a tensor of `src_dtype` under --dtype `dtype` (fp16 computes in fp32 here)."""
    if dtype != "auto":
        return np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float32)
    return np.dtype(np.float32) if np.dtype(src_dtype) == np.float16 else np.dtype(src_dtype)


def _convert(weights, key: str, transform: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    x = weights.read(key)
    want = _out_dtype(x.dtype, dtype)
    if x.dtype != want:
        x = x.astype(want)
    return layouts.to_ours(transform, x, shape)


def import_internvl3(src: str | Path, dtype: str = "auto", allow_pickle: bool = False,
                     image_token_id: int | None = None,
                     progress: Callable[[int, int, str], None] | None = None) -> tuple[InternVLConfig, dict, str]:
    """Reads a PyTorch InternVL3 directory. Returns (config, params as a nested dict of numpy arrays, layout).
    Holds the whole model in host memory; `convert_internvl3` writes it to disk holding one tensor at a time."""
    src, weights, cfg, layout, plan = _open_and_plan(src, dtype, allow_pickle, image_token_id)
    flat = {}
    for i, (key, path, transform, shape) in enumerate(plan):
        flat[path] = _convert(weights, key, transform, shape, dtype)
        if progress:
            progress(i + 1, len(plan), key)
    return cfg, unflatten(flat), layout


def convert_internvl3(src: str | Path, dst: str | Path, dtype: str = "auto", allow_pickle: bool = False,
                      image_token_id: int | None = None, overwrite: bool = False,
                      progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Imports `src` and writes our checkpoint at `dst` atomically (nothing is left at `dst` on failure). Every
    key and shape is checked before anything is written; tensors are then converted and written one at a time
    (LazyArray leaves), so host memory stays bounded by the largest tensor, not the model."""
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists (pass --overwrite to replace it)")
    src, weights, cfg, layout, plan = _open_and_plan(src, dtype, allow_pickle, image_token_id)
    done = 0

    def loader(key, transform, shape):
        def load():
            nonlocal done
            x = _convert(weights, key, transform, shape, dtype)
            done += 1
            if progress:
                progress(done, len(plan), key)
            return x
        return load

    params = unflatten({path: LazyArray(shape, _out_dtype(weights.tensors[key].dtype, dtype),
                                        loader(key, transform, shape))
                        for key, path, transform, shape in plan})
    extra = [src / n for n in TOKENIZER_FILES if (src / n).is_file()]
    return save_checkpoint(dst, KIND, cfg.to_dict(), params, extra_files=extra,
                           metadata={"source": {"path": str(src.absolute()), "layout": layout}},
                           overwrite=overwrite)
