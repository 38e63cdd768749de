"""The frozen InternVL3 teacher of a training config (config.teacher.checkpoint / config.teacher.model): its
parameters and how runs record which teacher they used (its model config: train.experiment.teacher_model)."""

from __future__ import annotations

from pathlib import Path

import jax
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
    abstract = nn.unbox(abstract_params(cfg))
    keep = lambda tree: {k: v for k, v in tree.items() if parts is None or k in parts}
    if config.teacher.checkpoint:
        return store.restore_params(config.teacher.checkpoint, keep(abstract), shardings)
    params = keep(nn.unbox(init_params(cfg, seed=config.seed)))
    return params if shardings is None else jax.device_put(params, shardings)
