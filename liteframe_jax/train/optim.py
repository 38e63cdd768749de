"""Optimizer: AdamW with linear warmup + cosine decay, global-norm clipping, and no weight decay on norms,
biases, layer scales and position tables."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import optax

from liteframe_jax.config_base import ConfigBase


@dataclasses.dataclass(frozen=True)
class OptimConfig(ConfigBase):
    config_name: ClassVar[str] = "optimizer config"
    peak_lr: float = 5e-4
    end_lr_ratio: float = 0.01  # final lr = peak_lr * end_lr_ratio
    warmup_steps: int = 100
    total_steps: int = 10_000
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.05
    clip_norm: float = 1.0  # <= 0 disables clipping

    def problems(self) -> list[str]:
        e = []
        if self.peak_lr <= 0:
            e.append(f"peak_lr={self.peak_lr} must be > 0")
        if not 0 <= self.warmup_steps < self.total_steps:
            e.append(f"warmup_steps={self.warmup_steps} must lie in [0, total_steps={self.total_steps})")
        if not (0 <= self.b1 < 1 and 0 <= self.b2 < 1):
            e.append(f"b1={self.b1}, b2={self.b2} must lie in [0, 1)")
        if self.weight_decay < 0 or not 0 <= self.end_lr_ratio <= 1:
            e.append("weight_decay must be >= 0 and end_lr_ratio in [0, 1]")
        return e


def schedule(cfg: OptimConfig) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(0.0, cfg.peak_lr, cfg.warmup_steps, cfg.total_steps,
                                              cfg.peak_lr * cfg.end_lr_ratio)


NO_DECAY_NAMES = ("bias", "scale", "ls1", "ls2", "pos_embed", "pos_spatial", "pos_temporal", "cls_token")


def decay_mask(params):
    """True where weight decay applies: matrices/kernels, not norms, biases, layer scales or position tables."""
    def decays(path, x):
        name = str(getattr(path[-1], "key", path[-1]))
        return x.ndim >= 2 and name not in NO_DECAY_NAMES
    return jax.tree_util.tree_map_with_path(decays, params)


def _adamw(cfg: OptimConfig) -> optax.GradientTransformation:
    return optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                       mask=decay_mask)


def make_optimizer(cfg: OptimConfig, group_lrs: dict[str, float] | None = None) -> optax.GradientTransformation:
    """AdamW (+ global-norm clipping over all parameters). `group_lrs` {top-level key: peak lr} gives those
    subtrees of a dict-shaped parameter tree their own schedule (same warmup and decay shape)."""
    adamw = _adamw(cfg)
    if group_lrs:
        def labels(params):
            return {k: jax.tree.map(lambda _, k=k: k if k in group_lrs else "main", v) for k, v in params.items()}
        transforms = {"main": adamw} | {k: _adamw(dataclasses.replace(cfg, peak_lr=lr)) for k, lr in group_lrs.items()}
        adamw = optax.multi_transform(transforms, labels)
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw) if cfg.clip_norm > 0 else adamw


def guarded_update(tx: optax.GradientTransformation, state: dict, loss_fn):
    """One optimizer step on state {"step", "params", "opt"} with `loss_fn(params) -> (loss, metrics)`.
    A non-finite loss leaves the state untouched (so the caller can stop with the last good state intact).
    Returns (new state, metrics + grad_norm + finite)."""
    import jax.numpy as jnp

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    updates, opt = tx.update(grads, state["opt"], state["params"])
    new = {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates), "opt": opt}
    finite = jnp.isfinite(loss)
    new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
    return new, {**metrics, "grad_norm": optax.tree.norm(grads), "finite": finite}
