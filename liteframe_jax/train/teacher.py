"""The frozen InternVL3 teacher of a training config (config.teacher.checkpoint / config.teacher.model): its
parameters and how runs record which teacher they used (its model config: train.experiment.teacher_model)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import abstract_params, init_params


def teacher_identity(config) -> dict:
    """What a target cache or an exported model records about the teacher."""
    if config.teacher.checkpoint:
        return {"checkpoint": str(Path(config.teacher.checkpoint).absolute())}
    return {"random_init_seed": int(config.seed), "model": config.teacher.model.to_dict()}


def teacher_params(config, cfg: InternVLConfig, parts: tuple[str, ...] | None = None, shardings=None) -> dict:
    """The teacher's (unboxed) params, only the top-level `parts` ("vision", "projector", "llm"; None = all):
    read from config.teacher.checkpoint, or randomly initialized with config.seed for the tiny demo. Placed in
    `shardings` (a matching tree) when given, else on the host / first device."""
    keep = lambda tree: {k: v for k, v in tree.items() if parts is None or k in parts}
    ckpt = config.teacher.checkpoint
    if ckpt:
        stored_layers = store.read_metadata(ckpt)["model"]["text"]["num_layers"]
        if stored_layers == cfg.text.num_layers:
            return store.restore_params(ckpt, keep(nn.unbox(abstract_params(cfg))), shardings)
        # teacher.grow_text_layers (teacher_model): read the stored layers, then append the new ones
        stored_cfg = cfg.replace(text=cfg.text.replace(num_layers=stored_layers))
        params = store.restore_params(ckpt, keep(nn.unbox(abstract_params(stored_cfg))))
        if "llm" in params:
            params["llm"] = grown_llm(params["llm"], cfg.text.num_layers)
    else:
        params = keep(nn.unbox(init_params(cfg, seed=config.seed)))
    return params if shardings is None else jax.device_put(params, shardings)


def grown_llm(llm: dict, num_layers: int) -> dict:
    """LLM params (unboxed, "layers_0".."layers_<n-1>") deepened to `num_layers`: each new layer is a copy of the
    last one with its attention output and MLP down projections zeroed, so it adds nothing to the residual
    stream and the grown LLM computes what the stored one does until training moves it. ValueError when
    num_layers is smaller than the stored depth."""
    n = sum(k.startswith("layers_") for k in llm)
    if num_layers < n:
        raise ValueError(f"cannot grow an LLM of {n} layers to {num_layers}")
    last = llm[f"layers_{n - 1}"]
    if not {"attn", "down"} <= set(last) or "o" not in last["attn"]:
        raise ValueError(f"layer layout {sorted(last)} has no attn/o and down projections to zero")
    silent = {**last, "attn": {**last["attn"], "o": jax.tree.map(jnp.zeros_like, last["attn"]["o"])},
              "down": jax.tree.map(jnp.zeros_like, last["down"])}
    return {**llm, **{f"layers_{i}": jax.tree.map(jnp.copy, silent) for i in range(n, num_layers)}}
