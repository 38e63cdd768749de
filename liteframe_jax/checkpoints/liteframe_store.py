"""LiteFrame checkpoints: our checkpoint directory with kind "liteframe".

    liteframe.json   {"kind": "liteframe", "model": LiteFrameConfig, "with_llm": bool, "lora": LoRAConfig | null,
                      "stage": "ctd" | "lma", "provenance": {...}}
    params/          {"student", "projector"[, "llm"][, "lora"]}   (orbax)
    tokenizer files  copied from the teacher (when it had them)

A CTD result is the encoder alone (student + the teacher's projector, `with_llm` false); an LMA result adds the
LLM and, when LoRA was trained, the unmerged adapters (merged on load and on export).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.hf_config import TOKENIZER_FILES
from liteframe_jax.models.liteframe import LiteFrameConfig, abstract_liteframe
from liteframe_jax.models.lora import LoRAConfig, init_lora, merge_lora

KIND = "liteframe"


def tokenizer_files(directory: str | os.PathLike | None) -> list[Path]:
    if not directory:
        return []
    return [Path(directory) / n for n in TOKENIZER_FILES if (Path(directory) / n).is_file()]


def save_liteframe(dst: str | os.PathLike, cfg: LiteFrameConfig, params: dict, *, lora: LoRAConfig | None = None,
                   stage: str = "lma", tokenizer_dir: str | os.PathLike | None = None,
                   provenance: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Writes params {"student", "projector"[, "llm"][, "lora"]} atomically (see module doc)."""
    cfg.validate()
    params = nn.unbox(params)
    if "student" not in params:
        raise ValueError("LiteFrame params need a 'student' subtree")
    if ("lora" in params) != (lora is not None):
        raise ValueError("pass a LoRA config exactly when params hold a 'lora' subtree")
    if "lora" in params and "llm" not in params:
        raise ValueError("LoRA adapters need the LLM they adapt ('llm' subtree)")
    meta = {"with_llm": "llm" in params, "lora": lora.to_dict() if lora else None, "stage": stage,
            "provenance": provenance or {}}
    return store.save_checkpoint(dst, KIND, cfg.to_dict(), params, extra_files=tokenizer_files(tokenizer_dir),
                                 metadata=meta, overwrite=overwrite)


def read_liteframe_metadata(path: str | os.PathLike) -> dict[str, Any]:
    meta = store.read_metadata(path)
    if meta["kind"] != KIND:
        raise ValueError(f"{path} holds a {meta['kind']!r} checkpoint, not a LiteFrame model (kind {KIND!r})")
    return meta


def abstract_tree(cfg: LiteFrameConfig, with_llm: bool, lora: LoRAConfig | None):
    """Boxed abstract params of a stored LiteFrame checkpoint."""
    tree = dict(abstract_liteframe(cfg, with_llm))
    if lora is not None:
        tree["lora"] = jax.eval_shape(lambda: init_lora(tree["llm"], lora, jax.random.key(0), boxed=True))
    return tree


def load_liteframe(path: str | os.PathLike, dtype: str | None = None, merge: bool = True):
    """-> (LiteFrameConfig, params, metadata). With `merge` (default), LoRA adapters are folded into the LLM
    and the "lora" subtree is dropped."""
    meta = read_liteframe_metadata(path)
    cfg = LiteFrameConfig.from_dict(meta["model"]).validate()
    lora = LoRAConfig.from_dict(meta["lora"]) if meta.get("lora") else None
    params = store.restore_params(path, nn.unbox(abstract_tree(cfg, meta["with_llm"], lora)))
    if lora is not None and merge:
        params = {k: v for k, v in params.items() if k != "lora"} | {"llm": merge_lora(params["llm"],
                                                                                         params["lora"], lora)}
    if dtype is not None:
        cfg = cfg.with_dtype(dtype).validate()
    return cfg, params, meta
