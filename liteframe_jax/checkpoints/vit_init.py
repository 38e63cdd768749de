"""Initialize the LiteFrame student's spatial part from a Hugging Face image ViT checkpoint.

Supported source layouts (detected from the tensor names, with any leading prefix such as `vit.`, `deit.` or
`vision_model.`):

* "vit":  transformers ViTModel / ViTForImageClassification (`embeddings.patch_embeddings.projection`,
  `embeddings.position_embeddings` (1, 1+N, D), `encoder.layer.{i}.attention.attention.{query,key,value}`, ...);
* "clip": transformers CLIPVisionModel / CLIPModel's vision tower (`embeddings.patch_embedding`,
  `embeddings.position_embedding.weight` (1+N, D), `encoder.layers.{i}.self_attn.{q,k,v,out}_proj`, ...).
  A CLIP-style tower without `embeddings.class_embedding` (SigLIP) is read with N prefix-free positions.

Copied: the patch embedding, the spatial position table and the first min(student, source) blocks (attention,
MLP, both LayerNorms). Temporal convs, downsampling stages, the temporal position table, `head_norm` and `head`
keep their values. Source tensors are streamed one at a time; every key and shape is checked before any
tensor data is read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints.import_internvl import unflatten
from liteframe_jax.checkpoints.safetensors_stream import (INDEX_FILE, PICKLE_SUFFIXES, CheckpointFormatError,
                                                          PickleCheckpoint, SafetensorsCheckpoint,
                                                          find_pickle_weights, read_header)
from liteframe_jax.models.config import StudentConfig
from liteframe_jax.models.resize import resize_bicubic

__all__ = ["init_student_from_vit", "pi_resize_patch_kernel"]


@dataclasses.dataclass(frozen=True)
class _Layout:
    name: str
    patch: str  # patch-embedding conv module, relative to the prefix (".weight" / ".bias" appended)
    pos: str  # position table tensor
    tokens: tuple[str, ...]  # prefix-token tensors; each present one occupies one leading row of `pos`
    block: str  # block module with "{}" for the index
    modules: dict[str, str]  # our block module -> source module inside the block
    default_act: str  # transformers' default hidden_act for this architecture


_VIT = _Layout(
    "vit", "embeddings.patch_embeddings.projection", "embeddings.position_embeddings",
    ("embeddings.cls_token", "embeddings.distillation_token"), "encoder.layer.{}",
    {"norm1": "layernorm_before", "q": "attention.attention.query", "k": "attention.attention.key",
     "v": "attention.attention.value", "out": "attention.output.dense", "norm2": "layernorm_after",
     "fc1": "intermediate.dense", "fc2": "output.dense"},
    "gelu")
_CLIP = _Layout(
    "clip", "embeddings.patch_embedding", "embeddings.position_embedding.weight", ("embeddings.class_embedding",),
    "encoder.layers.{}",
    {"norm1": "layer_norm1", "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
     "out": "self_attn.out_proj", "norm2": "layer_norm2", "fc1": "mlp.fc1", "fc2": "mlp.fc2"},
    "quick_gelu")
LAYOUTS = (_VIT, _CLIP)
_NORMS = ("norm1", "norm2")


# ------------------------------------------------------------------------------------------------ public API
def init_student_from_vit(params: dict, cfg: StudentConfig, path, *, allow_pickle: bool = False
                          ) -> tuple[dict, dict]:
    """Copies an image ViT's spatial weights into unboxed student params.

    Args:
      params: unboxed student params (`flax.linen.unbox(init_student(cfg))`), a nested dict of arrays.
      cfg: the student config the params were built from.
      path: checkpoint directory (`model.safetensors`, sharded `model.safetensors.index.json`, or with
        allow_pickle `*.bin`/`*.pt`) or one `.safetensors` file. A `config.json` beside the weights (for
        CLIPModel, its `vision_config`) is used to check heads, activation and LayerNorm eps.
      allow_pickle: read torch pickle weights with `torch.load(weights_only=True)`; refused otherwise.

    Mapping (torch -> ours):
      * conv weight (D, C, ph, pw) -> `patch_embed/kernel` (p, p, C, D); a different source patch size is
        resampled with FlexiViT's PI-resize over bilinear interpolation (`pi_resize_patch_kernel`): exact for
        a larger student patch (token of the bilinearly upsampled patch == source token), least squares for
        a smaller one. A source without a conv bias gives a zero `patch_embed/bias`.
      * position table: prefix-token rows (CLS, DeiT distillation) dropped, the N rows reshaped to the source
        grid (rows, cols) and, if it differs from `cfg.grid`, resized with torch-exact bicubic interpolation
        (`resize_bicubic`, as transformers' `interpolate_pos_encoding` and our InternViT) -> `pos_spatial`.
      * block i < min(cfg.num_layers, source blocks): Linear weight (out, in) -> kernel (in, out) for q, k, v,
        out, fc1, fc2; LayerNorm weight/bias -> scale/bias for norm1, norm2. A missing q/k/v/... bias -> zeros.

    Returns:
      (new params, report). New params share the untouched leaves with `params` and keep each leaf's dtype
      (and sharding). The report holds `layout`, `source_layers`, `source_grid`, `source_patch_size`,
      `loaded` / `kept_init` (our param paths), `ignored_source_keys` and `warnings` (behavioural differences
      between the source model and the initialized student).

    Raises:
      ValueError (CheckpointFormatError for unreadable or refused files): unknown layout, missing tensors, a
      head-count mismatch, or a tensor whose shape does not fit (naming the tensor and both shapes).
    """
    flat = _flatten_params(params)
    weights, config = _open(Path(path), allow_pickle)
    layout, prefix = _detect(weights.tensors)
    vision_cfg = config.get("vision_config", config) if isinstance(config, dict) else {}
    report = {"layout": layout.name, "source_layers": 0, "source_grid": None, "source_patch_size": None,
              "loaded": [], "kept_init": [], "ignored_source_keys": [], "warnings": []}
    plan = _plan(weights.tensors, layout, prefix, flat, cfg, vision_cfg, report)

    new = dict(flat)
    for our_path, key, fn in plan:
        value = fn(None if key is None else weights.read(key))
        new[our_path] = _like(value, flat[our_path])
    used = {key for _, key, _ in plan if key is not None}
    loaded = {our_path for our_path, _, _ in plan}
    report["loaded"] = [p for p in flat if p in loaded]
    report["kept_init"] = [p for p in flat if p not in loaded]
    report["ignored_source_keys"] = sorted(k for k in weights.tensors if k not in used)
    return unflatten(new), report


def pi_resize_patch_kernel(weight: np.ndarray, new_hw: tuple[int, int]) -> np.ndarray:
    """PI-resize (FlexiViT) of torch conv weights (D, C, ph, pw) -> (D, C, nh, nw), float64 math.

    With B the bilinear resize (half-pixel centres, antialiased when shrinking, as `jax.image.resize`) of one
    (ph, pw) patch to (nh, nw), returns w' = pinv(B)^T w, so <B x, w'> = <x, w> for every patch x when
    nh >= ph and nw >= pw, and the least-squares fit otherwise.
    """
    d, c, ph, pw = weight.shape
    nh, nw = new_hw
    if (nh, nw) == (ph, pw):
        return weight
    b = np.kron(_bilinear_matrix(ph, nh), _bilinear_matrix(pw, nw))  # (nh*nw, ph*pw)
    w = weight.astype(np.float64).reshape(d * c, ph * pw)
    return (w @ np.linalg.pinv(b)).reshape(d, c, nh, nw)


# ------------------------------------------------------------------------------------------------ reading
class _SingleSafetensors(SafetensorsCheckpoint):
    """One .safetensors file (the directory reader would also pick up its siblings)."""

    def __init__(self, file: Path):
        self.directory, self.files, self.tensors = file.parent, [file], read_header(file)


def _open(path: Path, allow_pickle: bool):
    """-> (weights with .tensors / .read(key), parsed config.json or {})."""
    if not path.exists():
        raise FileNotFoundError(f"no ViT checkpoint at {path}")
    directory = path if path.is_dir() else path.parent
    config = {}
    if (directory / "config.json").is_file():
        try:
            config = json.loads((directory / "config.json").read_text())
        except json.JSONDecodeError as e:
            raise CheckpointFormatError(f"{directory / 'config.json'}: invalid JSON ({e})") from None
    if path.is_file():
        if path.suffix == ".safetensors":
            return _SingleSafetensors(path), config
        if path.suffix not in PICKLE_SUFFIXES:
            raise CheckpointFormatError(f"{path}: expected a .safetensors file or a checkpoint directory")
        if not allow_pickle:
            raise CheckpointFormatError(_pickle_refusal(path, [path]))
        others = [p for p in find_pickle_weights(directory) if p != path]
        if others:
            raise CheckpointFormatError(f"{path}: its directory holds other pickle weights too "
                                        f"({[p.name for p in others]}); pass a directory holding only this model")
        return PickleCheckpoint(directory), config
    if (path / INDEX_FILE).exists() or list(path.glob("*.safetensors")):
        return SafetensorsCheckpoint(path), config
    pickles = find_pickle_weights(path)
    if pickles and not allow_pickle:
        raise CheckpointFormatError(_pickle_refusal(path, pickles))
    if pickles:
        return PickleCheckpoint(path), config
    raise CheckpointFormatError(f"no model weights (*.safetensors, {INDEX_FILE}) found in {path}")


def _pickle_refusal(where: Path, files: list[Path]) -> str:
    return (f"{where} holds only pickle weights ({', '.join(p.name for p in files)}). Pickle files can execute "
            "code when loaded, so they are refused by default; convert them to safetensors, or pass "
            "allow_pickle=True to load them with torch.load(weights_only=True).")


# ------------------------------------------------------------------------------------------------ planning
def _detect(tensors: Mapping) -> tuple[_Layout, str]:
    """-> (layout, key prefix) from the patch-embedding weight's name; exactly one match required."""
    hits = [(lay, key[: -len(lay.patch + ".weight")]) for lay in LAYOUTS for key in tensors
            if key.endswith(lay.patch + ".weight")
            and (key == lay.patch + ".weight" or key[: -len(lay.patch + ".weight")].endswith("."))]
    if len(hits) == 1:
        return hits[0]
    keys = sorted(tensors)
    if not hits:
        wanted = ", ".join(f"{lay.name}: '[prefix.]{lay.patch}.weight'" for lay in LAYOUTS)
        raise ValueError(f"unrecognized ViT checkpoint layout: expected one patch embedding ({wanted}); found "
                         f"{len(keys)} tensors, e.g. {keys[:12]}")
    raise ValueError(f"ambiguous ViT checkpoint: several patch embeddings "
                     f"{[(lay.name, p + lay.patch + '.weight') for lay, p in hits]}")


def _plan(tensors, layout: _Layout, prefix: str, flat: dict, cfg: StudentConfig, vision_cfg: dict, report: dict
          ) -> list[tuple[str, str | None, Callable]]:
    """Checks every key and shape against the student. -> [(our path, source key or None, read -> value)]."""
    warn = report["warnings"].append
    shape = {k: tuple(info.shape) for k, info in tensors.items()}
    plan: list[tuple[str, str | None, Callable]] = []

    def fits(key: str, got: tuple, our_path: str) -> None:
        if our_path not in flat:
            raise ValueError(f"student params have no {our_path!r} (are they the unboxed params of this cfg?)")
        want = tuple(flat[our_path].shape)
        if got != want:
            raise ValueError(f"source tensor {key!r} of shape {shape[key]} gives {got} but student param "
                             f"{our_path!r} has shape {want}")

    def linear(module: str, our: str, *, transpose: bool) -> None:
        wkey, bkey = f"{prefix}{module}.weight", f"{prefix}{module}.bias"
        name = "kernel" if transpose else "scale"
        fits(wkey, shape[wkey][::-1] if transpose else shape[wkey], f"{our}/{name}")
        plan.append((f"{our}/{name}", wkey, (lambda w: w.T) if transpose else (lambda w: w)))
        if bkey in shape:
            fits(bkey, shape[bkey], f"{our}/bias")
            plan.append((f"{our}/bias", bkey, lambda b: b))
        else:
            warn(f"source has no {bkey!r}; {our}/bias set to zeros")
            plan.append((f"{our}/bias", None, lambda _, n=flat[f"{our}/bias"].shape: np.zeros(n, np.float32)))

    # --- source hyper-parameters (config.json when present)
    depth = _source_layers(shape, layout, prefix)
    report["source_layers"] = depth
    missing = [f"{prefix}{layout.block.format(i)}.{m}.weight" for i in range(min(depth, cfg.num_layers))
               for m in layout.modules.values()
               if f"{prefix}{layout.block.format(i)}.{m}.weight" not in shape]
    missing += [prefix + k for k in (layout.pos,) if prefix + k not in shape]
    if missing:
        raise ValueError(f"{layout.name} checkpoint lacks {len(missing)} tensor(s): {missing[:10]}")
    _check_config(vision_cfg, layout, cfg, warn)
    if f"{prefix}pre_layrnorm.weight" in shape:
        warn("the source applies a LayerNorm (pre_layrnorm) to the embeddings before block 0; the student has "
             "none and it is not loaded")

    # --- patch embedding
    wkey = f"{prefix}{layout.patch}.weight"
    src = shape[wkey]
    if len(src) != 4:
        raise ValueError(f"source tensor {wkey!r} has shape {src}; expected a conv weight (D, C, ph, pw)")
    p = cfg.patch_size
    fits(wkey, (p, p, src[1], src[0]), "patch_embed/kernel")
    report["source_patch_size"] = src[2:]
    if src[2:] != (p, p):
        how = ("exact: a bilinearly upsampled patch gives the source's token" if max(src[2:]) <= p
               else "least-squares fit: the source's tokens are only approximated")
        warn(f"patch embedding resampled from {src[2]}x{src[3]} to {p}x{p} (PI-resize over bilinear "
             f"interpolation; {how})")
    plan.append(("patch_embed/kernel", wkey,
                 lambda w: pi_resize_patch_kernel(w.astype(np.float32), (p, p)).transpose(2, 3, 1, 0)))
    bkey = f"{prefix}{layout.patch}.bias"
    if bkey in shape:
        fits(bkey, shape[bkey], "patch_embed/bias")
        plan.append(("patch_embed/bias", bkey, lambda b: b))
    else:
        warn(f"source has no {bkey!r}; patch_embed/bias set to zeros")
        plan.append(("patch_embed/bias", None, lambda _: np.zeros(flat["patch_embed/bias"].shape, np.float32)))

    # --- spatial position table
    pkey = prefix + layout.pos
    rows, width = int(np.prod(shape[pkey][:-1])), shape[pkey][-1]
    n_prefix = sum(prefix + t in shape for t in layout.tokens)
    grid = _source_grid(rows - n_prefix, vision_cfg, pkey, shape[pkey], n_prefix)
    report["source_grid"] = grid
    fits(pkey, (*cfg.grid, width), "pos_spatial")
    if grid != cfg.grid:
        warn(f"position table resized from {grid[0]}x{grid[1]} to {cfg.grid[0]}x{cfg.grid[1]} "
             "(torch-exact bicubic, as transformers' interpolate_pos_encoding)")
    plan.append(("pos_spatial", pkey, lambda t: _positions(t, n_prefix, grid, cfg.grid)))
    if n_prefix:
        warn(f"the source prepends {n_prefix} token(s) ({[t for t in layout.tokens if prefix + t in shape]}) "
             "that its patch tokens attend to; the student has none, so its features match the source run "
             "without them (those keys are not loaded)")

    # --- blocks
    for i in range(min(depth, cfg.num_layers)):
        for ours, theirs in layout.modules.items():
            linear(f"{layout.block.format(i)}.{theirs}", f"layers_{i}/{ours}", transpose=ours not in _NORMS)
    if cfg.num_layers > depth:
        warn(f"the source has {depth} blocks: student blocks layers_{depth}..layers_{cfg.num_layers - 1} "
             "keep their init")
    elif depth > cfg.num_layers:
        warn(f"source blocks {cfg.num_layers}..{depth - 1} are not loaded (the student has {cfg.num_layers})")
    return plan


def _source_layers(shape: Mapping, layout: _Layout, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix + layout.block.split("{}")[0]) + r"(\d+)\.")
    found = {int(m.group(1)) for k in shape if (m := pattern.match(k))}
    if not found:
        raise ValueError(f"{layout.name} checkpoint has no blocks '{prefix}{layout.block.format('<i>')}.*'")
    if found != set(range(max(found) + 1)):
        raise ValueError(f"{layout.name} checkpoint blocks are not numbered 0..{max(found)}: "
                         f"missing {sorted(set(range(max(found) + 1)) - found)}")
    return max(found) + 1


def _source_grid(n: int, vision_cfg: dict, key: str, shape: tuple, n_prefix: int) -> tuple[int, int]:
    """(rows, cols) of the N patch positions: from config.json image_size / patch_size, else square."""
    size, patch = vision_cfg.get("image_size"), vision_cfg.get("patch_size")
    if size is not None and patch is not None:
        hw = (size, size) if isinstance(size, int) else tuple(size)
        pp = (patch, patch) if isinstance(patch, int) else tuple(patch)
        grid = (hw[0] // pp[0], hw[1] // pp[1])
        if grid[0] * grid[1] == n:
            return grid
    side = math.isqrt(max(n, 0))
    if n <= 0 or side * side != n:
        raise ValueError(f"source tensor {key!r} of shape {shape} holds {n} patch positions after {n_prefix} "
                         "prefix token(s): not a square grid, and config.json gives no matching image_size / "
                         "patch_size")
    return side, side


def _check_config(vision_cfg: dict, layout: _Layout, cfg: StudentConfig, warn) -> None:
    heads = vision_cfg.get("num_attention_heads")
    if heads is not None and heads != cfg.num_heads:
        raise ValueError(f"source num_attention_heads={heads} (config.json) but the student has "
                         f"num_heads={cfg.num_heads}")
    if not vision_cfg:
        warn("no config.json beside the weights: attention heads, activation and LayerNorm eps are unchecked "
             f"(transformers' default activation for {layout.name} is {layout.default_act!r})")
    act = vision_cfg.get("hidden_act", layout.default_act if vision_cfg else None)
    if act is not None and act != "gelu":
        warn(f"source activation is {act!r}; the student uses exact (erf) GELU")
    eps = vision_cfg.get("layer_norm_eps")
    if eps is not None and not math.isclose(eps, cfg.layer_norm_eps, rel_tol=1e-9):
        warn(f"source layer_norm_eps={eps} but the student uses {cfg.layer_norm_eps}")


# ------------------------------------------------------------------------------------------------ transforms
def _positions(table: np.ndarray, n_prefix: int, grid: tuple[int, int], out: tuple[int, int]) -> np.ndarray:
    """(1, P+N, D) or (P+N, D) -> (out_h, out_w, D)."""
    d = table.shape[-1]
    spatial = table.reshape(-1, d)[n_prefix:].astype(np.float32).reshape(*grid, d)
    return np.asarray(resize_bicubic(jnp.asarray(spatial), out)) if grid != out else spatial


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of `jax.image.resize(..., "linear")` along one axis."""
    eye = jnp.eye(n_in, dtype=jnp.float32)
    return np.asarray(jax.image.resize(eye, (n_out, n_in), "linear"), np.float64)


def _like(value: np.ndarray, ref) -> jax.Array:
    """value with ref's dtype, as a jax array on ref's sharding when ref is one."""
    value = np.asarray(value, np.float32).astype(ref.dtype)
    return jax.device_put(value, ref.sharding) if isinstance(ref, jax.Array) else jnp.asarray(value)


# ------------------------------------------------------------------------------------------------ param trees
def _flatten_params(tree, prefix: str = "") -> dict:
    if not isinstance(tree, Mapping):
        raise TypeError(f"params must be a nested dict of arrays, got {type(tree).__name__}")
    out = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten_params(value, path + "/"))
        elif isinstance(value, nn.meta.AxisMetadata):
            raise TypeError(f"param {path!r} is boxed ({type(value).__name__}); pass flax.linen.unbox(params)")
        else:
            out[path] = value
    return out


