"""Import a PyTorch InternVL3 checkpoint directory (OpenGVLab or transformers layout) into our params.

Every key and shape is checked against the model built from the checkpoint's own config using the safetensors
headers alone, before any tensor data is read; problems are reported together in one `ImportError_`.
Tensors are then streamed one at a time (peak host memory: one tensor plus the output).
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
from liteframe_jax.checkpoints.store import save_checkpoint
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


def import_internvl3(src: str | Path, dtype: str = "auto", allow_pickle: bool = False,
                     image_token_id: int | None = None,
                     progress: Callable[[int, int, str], None] | None = None) -> tuple[InternVLConfig, dict, str]:
    """Reads a PyTorch InternVL3 directory. Returns (config, params as a nested dict of numpy arrays, layout)."""
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a directory")
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype={dtype!r} must be one of {DTYPE_CHOICES}")
    weights = open_weights(src, allow_pickle)
    cfg, layout, plan = plan_import(src, weights, image_token_id)
    flat = {}
    for i, (key, path, transform, shape) in enumerate(plan):
        x = weights.read(key)
        if dtype != "auto":
            x = x.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.float32)
        if x.dtype == np.float16:  # fp16 checkpoints compute in fp32/bf16 here
            x = x.astype(np.float32)
        flat[path] = layouts.to_ours(transform, x, shape)
        if progress:
            progress(i + 1, len(plan), key)
    return cfg, unflatten(flat), layout


def convert_internvl3(src: str | Path, dst: str | Path, dtype: str = "auto", allow_pickle: bool = False,
                      image_token_id: int | None = None, overwrite: bool = False,
                      progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Imports `src` and writes our checkpoint at `dst` atomically (nothing is left at `dst` on failure)."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists (pass --overwrite to replace it)")
    cfg, params, layout = import_internvl3(src, dtype, allow_pickle, image_token_id, progress)
    extra = [src / n for n in TOKENIZER_FILES if (src / n).is_file()]
    return save_checkpoint(dst, KIND, cfg.to_dict(), params, extra_files=extra,
                           metadata={"source": {"path": str(src.absolute()), "layout": layout}},
                           overwrite=overwrite)
