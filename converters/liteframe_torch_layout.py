"""The PyTorch layout of an exported LiteFrame model, defined once and read in both directions.

* `RULES`: torch state-dict key (regex) <-> our parameter path + tensor transform. The student rules are ours; the
  projector and LLM rules are `internvl_layouts.HF_RULES`' (transformers' InternVL names
  `multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.weight`).
* `to_torch_state` / `from_torch_state`: params <-> {key: numpy array} through `RULES`.
* `config_to_hf` / `config_from_hf`: our `LiteFrameConfig` <-> the exported config.json fields. What the PyTorch
  model does not use (the teacher's vision tower, training-only student fields, and for an encoder-only export the
  LLM config and token ids) travels in config.json's `liteframe_jax` entry, so a round trip is exact.
* `import_exported(dir)`: an exported directory back to (LiteFrameConfig, params, with_llm).

Extra transforms (ours -> torch), besides internvl_layouts' linear / vector / conv / same:
  conv1d_dw   depth-wise temporal conv kernel (K, D) -> Conv1d weight (D, 1, K)
  conv3d_dw   depth-wise 3-D conv kernel (kt, kh, kw, 1, D) -> Conv3d weight (D, 1, kt, kh, kw)
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import hf_config
from liteframe_jax.checkpoints import internvl_layouts as layouts
from liteframe_jax.checkpoints.import_internvl import flat_paths, unflatten
from liteframe_jax.checkpoints.internvl_layouts import Rule
from liteframe_jax.models.config import ConfigError, StudentConfig, TextConfig
from liteframe_jax.models.liteframe import LiteFrameConfig, abstract_liteframe

FULL_MODEL_TYPE = "liteframe"
ENCODER_MODEL_TYPE = "liteframe_student"
EXTRA_KEY = "liteframe_jax"  # config.json entry with the fields the PyTorch model does not use


class ExportFormatError(ValueError):
    """A directory that is not a LiteFrame PyTorch export, or whose tensors do not match its config."""


# ---------------------------------------------------------------------------------------------- key table
def _student_rules() -> tuple[Rule, ...]:
    S, L = r"student\.", r"student\.layers\.(\d+)\."
    rules = [Rule(S + r"patch_embed\.weight", "student/patch_embed/kernel", "conv"),
             Rule(S + r"patch_embed\.bias", "student/patch_embed/bias", "vector"),
             Rule(S + r"pos_spatial", "student/pos_spatial", "same"),
             Rule(S + r"pos_temporal", "student/pos_temporal", "same"),
             Rule(L + r"temporal\.conv\.weight", "student/layers_{0}/temporal/kernel", "conv1d_dw"),
             Rule(L + r"temporal\.conv\.bias", "student/layers_{0}/temporal/bias", "vector"),
             Rule(r"student\.downsample\.(\d+)\.conv\.weight", "student/downsample_{0}/conv/kernel", "conv3d_dw"),
             Rule(r"student\.downsample\.(\d+)\.conv\.bias", "student/downsample_{0}/conv/bias", "vector"),
             Rule(S + r"head\.weight", "student/head/kernel", "linear"),
             Rule(S + r"head\.bias", "student/head/bias", "vector")]
    norms = ((L + "norm1", "student/layers_{0}/norm1"), (L + "norm2", "student/layers_{0}/norm2"),
             (L + r"temporal\.norm", "student/layers_{0}/temporal/norm"),
             (r"student\.downsample\.(\d+)\.norm", "student/downsample_{0}/norm"),
             (S + "head_norm", "student/head_norm"))
    for theirs, ours in norms:
        rules += [Rule(theirs + r"\.weight", ours + "/scale", "vector"),
                  Rule(theirs + r"\.bias", ours + "/bias", "vector")]
    linears = (("attn\\.q_proj", "q"), ("attn\\.k_proj", "k"), ("attn\\.v_proj", "v"), ("attn\\.out_proj", "out"),
               ("mlp\\.fc1", "fc1"), ("mlp\\.fc2", "fc2"))
    for theirs, ours in linears:
        rules += [Rule(L + theirs + r"\.weight", f"student/layers_{{0}}/{ours}/kernel", "linear"),
                  Rule(L + theirs + r"\.bias", f"student/layers_{{0}}/{ours}/bias", "vector")]
    return tuple(rules)


RULES: tuple[Rule, ...] = _student_rules() + tuple(
    r for r in layouts.HF_RULES if r.target.startswith(("projector/", "llm/")))


def _key_template(pattern: str) -> str:
    """Rule pattern (regex) -> str.format template of the torch key."""
    template = pattern.replace(r"(\d+)", "{}").replace(r"\.", ".")
    if re.search(r"[\\()\[\]*+?|^$]", template):
        raise AssertionError(f"rule pattern {pattern!r} cannot be inverted")
    return template


def _target_regex(target: str) -> str:
    return re.escape(target).replace(r"\{0\}", r"(\d+)")


_INVERSE = tuple((re.compile(_target_regex(r.target)), _key_template(r.pattern), r) for r in RULES)


def torch_key(path: str) -> tuple[str, Rule]:
    """Our slash-separated param path -> (torch key, rule)."""
    for regex, template, rule in _INVERSE:
        m = regex.fullmatch(path)
        if m:
            return template.format(*m.groups()), rule
    raise ExportFormatError(f"no PyTorch name for parameter {path!r} (the LiteFrame key table has no rule for it)")


def our_path(key: str) -> tuple[str, Rule] | None:
    """Torch key -> (our param path, rule), or None."""
    return next(((t, r) for r in RULES if (t := r.match(key)) is not None), None)


# ---------------------------------------------------------------------------------------------- transforms
def transform_to_torch(transform: str, x: np.ndarray) -> np.ndarray:
    if transform == "conv1d_dw":
        return np.ascontiguousarray(x.T[:, None, :])
    if transform == "conv3d_dw":
        return np.ascontiguousarray(x.transpose(4, 3, 0, 1, 2))
    return layouts.to_torch(transform, x, layouts.source_shape(transform, x.shape, x.shape))


def transform_to_ours(transform: str, x: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    if transform == "conv1d_dw":
        return np.ascontiguousarray(x[:, 0, :].T).reshape(target)
    if transform == "conv3d_dw":
        return np.ascontiguousarray(x.transpose(2, 3, 4, 1, 0)).reshape(target)
    return layouts.to_ours(transform, x, target)


def torch_shape(transform: str, target: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape a tensor must have to become our `target` shape."""
    if transform == "conv1d_dw":
        return (target[1], 1, target[0])
    if transform == "conv3d_dw":
        return (target[4], target[3], target[0], target[1], target[2])
    return layouts.source_shape(transform, target, target)


def to_torch_state(params) -> dict[str, np.ndarray]:
    """Our params {"student", "projector"[, "llm"]} (LoRA already merged) -> {torch key: array}."""
    out = {}
    for path, x in flat_paths(nn.unbox(params)).items():
        key, rule = torch_key(path)
        out[key] = transform_to_torch(rule.transform, np.asarray(x))
    return out


def from_torch_state(tensors: dict[str, Any], cfg: LiteFrameConfig, with_llm: bool, where: str = "") -> dict:
    """{torch key: array-like with .shape} -> our params, checked against the model `cfg` describes. `tensors`
    values may be lazy: anything with `.shape` whose `np.asarray` gives the data."""
    targets = flat_paths(nn.unbox(abstract_liteframe(cfg, with_llm)))
    flat, unexpected, misshaped = {}, [], []
    for key, x in tensors.items():
        hit = our_path(key)
        if hit is None or hit[0] not in targets:
            unexpected.append(key)
            continue
        path, rule = hit
        want = torch_shape(rule.transform, tuple(targets[path].shape))
        if tuple(x.shape) != want:
            misshaped.append(f"{key}: stored {tuple(x.shape)}, model expects {want}")
            continue
        flat[path] = transform_to_ours(rule.transform, np.asarray(x), tuple(targets[path].shape))
    missing = sorted(f"{torch_key(p)[0]} (-> {p})" for p in targets if p not in flat and
                     not any(m.startswith(torch_key(p)[0] + ":") for m in misshaped))
    if unexpected or missing or misshaped:
        parts = [f"{where or 'the tensors'} do not match the LiteFrame model described by config.json:"]
        for title, items in (("missing", missing), ("unexpected", sorted(unexpected)), ("wrong shape", misshaped)):
            if items:
                parts.append(f"  {title} ({len(items)}):\n    " + "\n    ".join(items[:20])
                             + (f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""))
        raise ExportFormatError("\n".join(parts))
    return unflatten(flat)


# ---------------------------------------------------------------------------------------------- config
_STUDENT_TRAINING_ONLY = ("identity_init", "remat", "dtype", "attention_impl")
_IDS = ("image_token_id", "img_start_token_id", "img_end_token_id", "eos_token_id", "pad_token_id")


def text_to_hf(t: TextConfig) -> dict[str, Any]:
    """Our TextConfig -> transformers text config fields (Qwen2, Qwen3 or InternLM3, with `model_type`)."""
    try:
        return hf_config.text_config_dict(t)
    except ConfigError as e:
        raise ValueError(f"the LLM cannot be exported: {e}") from None


def text_from_hf(d: dict[str, Any]) -> dict[str, Any]:
    """transformers text config fields -> our TextConfig fields (dict)."""
    try:
        return hf_config.text_config_from_dict(d, bool(d.get("tie_word_embeddings", False))).to_dict()
    except ConfigError as e:
        raise ExportFormatError(f"config.json text_config: {e}") from None


def _student_fields(cfg: LiteFrameConfig, with_projector: bool) -> dict[str, Any]:
    s = {k: v for k, v in cfg.student.to_dict().items() if k not in _STUDENT_TRAINING_ONLY}
    t = cfg.teacher
    return s | {"location": cfg.location, "downsample_ratio": t.downsample_ratio, "ps_version": t.ps_version,
                "vision_hidden_size": t.vision.hidden_size,
                "projector_hidden_size": t.text.hidden_size if with_projector else None,
                "projector_layer_norm_eps": t.projector_ln_eps}


def _architecture_fields(cfg: LiteFrameConfig, with_llm: bool) -> dict[str, Any]:
    student = _student_fields(cfg, cfg.location != "post_projector")
    if not with_llm:
        return {"model_type": ENCODER_MODEL_TYPE, **student}
    return {"model_type": FULL_MODEL_TYPE, "student_config": student | {"model_type": ENCODER_MODEL_TYPE},
            "text_config": text_to_hf(cfg.teacher.text), **{k: getattr(cfg.teacher, k) for k in _IDS},
            "tie_word_embeddings": cfg.teacher.text.tie_word_embeddings}


def _ours_from_architecture(d: dict[str, Any]) -> dict[str, Any]:
    """Config.json architecture fields -> our LiteFrameConfig dict (fields torch does not use left at defaults)."""
    kind = d.get("model_type")
    if kind not in (FULL_MODEL_TYPE, ENCODER_MODEL_TYPE):
        raise ExportFormatError(f"config.json model_type={kind!r} is not a LiteFrame export "
                                f"({FULL_MODEL_TYPE!r} or {ENCODER_MODEL_TYPE!r})")
    s = d["student_config"] if kind == FULL_MODEL_TYPE else d
    student = {k: s[k] for k in StudentConfig().to_dict() if k in s and k not in _STUDENT_TRAINING_ONLY}
    teacher: dict[str, Any] = {"vision": {"hidden_size": s["vision_hidden_size"]},
                               "downsample_ratio": s["downsample_ratio"], "ps_version": s["ps_version"],
                               "projector_ln_eps": s["projector_layer_norm_eps"]}
    if kind == FULL_MODEL_TYPE:
        teacher["text"] = text_from_hf(d["text_config"])
        teacher |= {k: d.get(k) for k in _IDS}
    else:
        width = s["projector_hidden_size"] if s["location"] != "post_projector" else s["out_dim"]
        teacher["text"] = {"hidden_size": width}
    return {"student": student, "teacher": teacher, "location": s["location"]}


_SAME = object()  # `_diff` result: nothing differs (None is a legitimate value, e.g. eos_token_id)


def _diff(full: Any, base: Any) -> Any:
    """The parts of nested dict `full` that differ from `base` (`_SAME` when nothing differs)."""
    if isinstance(full, dict) and isinstance(base, dict):
        out = {k: d for k, v in full.items() if (d := _diff(v, base.get(k, _SAME))) is not _SAME}
        return out or _SAME
    return _SAME if full == base else copy.deepcopy(full)


def _merge(base: dict, extra: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _with_defaults(d: dict[str, Any]) -> dict[str, Any]:
    """Fills our dataclass defaults in so `_diff` compares like with like."""
    return LiteFrameConfig.from_dict(d).to_dict()


def config_to_hf(cfg: LiteFrameConfig, with_llm: bool) -> dict[str, Any]:
    """Our config -> config.json fields (model_type, architecture fields, `liteframe_jax` extras)."""
    arch = _architecture_fields(cfg, with_llm)
    extra = _diff(cfg.to_dict(), _with_defaults(_ours_from_architecture(arch)))
    return arch | {EXTRA_KEY: {} if extra is _SAME else extra}


def config_from_hf(d: dict[str, Any]) -> tuple[LiteFrameConfig, bool]:
    """config.json fields -> (our validated config, with_llm)."""
    ours = _merge(_ours_from_architecture(d), d.get(EXTRA_KEY))
    return LiteFrameConfig.from_dict(ours).validate(), d["model_type"] == FULL_MODEL_TYPE


# ---------------------------------------------------------------------------------------------- import
def import_exported(directory: str | Path) -> tuple[LiteFrameConfig, dict, bool]:
    """Reads an exported LiteFrame directory (config.json + model.safetensors) back into
    (LiteFrameConfig, params {"student", "projector"[, "llm"]} as numpy arrays in the stored dtype, with_llm)."""
    from liteframe_jax.checkpoints.safetensors_stream import SafetensorsCheckpoint

    directory = Path(directory)
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json (not a LiteFrame export)")
    cfg, with_llm = config_from_hf(json.loads(path.read_text()))
    weights = SafetensorsCheckpoint(directory)

    class _Lazy:  # shape without reading the data
        def __init__(self, key):
            self.key, self.shape = key, tuple(weights.tensors[key].shape)

        def __array__(self, dtype=None, copy=None):
            x = weights.read(self.key)
            return x if dtype is None else x.astype(dtype)

    params = from_torch_state({k: _Lazy(k) for k in weights.tensors}, cfg, with_llm, where=str(directory))
    return cfg, params, with_llm
