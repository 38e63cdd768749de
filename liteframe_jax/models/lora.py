"""LoRA on the LLM's linear layers, kept outside the model: W' = W + (alpha / rank) * A @ B.

The adapters form their own tree mirroring the LLM's: {"layers_0": {"attn": {"q": {"a": (in, r), "b": (r, out)}}},
...}. `merge_lora` returns LLM parameters with the adapters folded into the kernels; the trainer merges inside the
jitted step (the frozen base is an argument, only A and B are trained) and export merges once. B starts at zero,
so an untrained adapter is an exact no-op.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Mapping

import jax
import jax.numpy as jnp
from flax import linen as nn

from liteframe_jax.config_base import ConfigBase, ConfigError

LLM_LINEARS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class LoRAConfig(ConfigBase):
    config_name: ClassVar[str] = "LoRA config"
    rank: int = 64
    alpha: float = 128.0
    targets: tuple[str, ...] = LLM_LINEARS  # names of the LLM's linear layers that get adapters

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def problems(self) -> list[str]:
        e = []
        if not isinstance(self.rank, int) or self.rank < 1:
            e.append(f"lora.rank={self.rank!r} must be a positive integer")
        if not self.alpha > 0:
            e.append(f"lora.alpha={self.alpha!r} must be > 0")
        bad = sorted(set(self.targets) - set(LLM_LINEARS))
        if bad or not self.targets:
            e.append(f"lora.targets={list(self.targets)} must be a non-empty subset of {list(LLM_LINEARS)}")
        return e


def _targets(llm_params, cfg: LoRAConfig):
    """Yields (path tuple of the linear layer, its kernel) for every targeted kernel of the LLM tree."""
    def walk(tree, path):
        for name, sub in tree.items():
            if isinstance(sub, Mapping):
                if name in cfg.targets and "kernel" in sub and path and path[0].startswith("layers_"):
                    yield (*path, name), sub["kernel"]
                else:
                    yield from walk(sub, (*path, name))
    yield from walk(llm_params, ())


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def init_lora(llm_params, cfg: LoRAConfig, key: jax.Array, boxed: bool = False):
    """Adapters for the (possibly boxed) LLM params: A ~ N(0, 1/in), B = 0, float32. With `boxed`, values are
    LogicallyPartitioned with A named (kernel_in_axis, None) and B (None, kernel_out_axis)."""
    cfg.validate()
    out: dict = {}
    for i, (path, kernel) in enumerate(_targets(llm_params, cfg)):
        names = kernel.names if isinstance(kernel, nn.LogicallyPartitioned) else (None, None)
        d_in, d_out = nn.unbox(kernel).shape
        a = jax.random.normal(jax.random.fold_in(key, i), (d_in, cfg.rank), jnp.float32) / math.sqrt(d_in)
        b = jnp.zeros((cfg.rank, d_out), jnp.float32)
        if boxed:
            a, b = nn.LogicallyPartitioned(a, (names[0], None)), nn.LogicallyPartitioned(b, (None, names[1]))
        _set(out, path, {"a": a, "b": b})
    if not out:
        raise ConfigError(f"no LLM linear layer matches lora.targets={list(cfg.targets)}")
    return out


def merge_lora(llm_params, lora, cfg: LoRAConfig):
    """LLM params with every adapter folded in: kernel + scale * A @ B (in fp32, cast to the kernel's dtype)."""
    def merge(tree, adapters, path):
        out = {}
        for name, sub in tree.items():
            ad = adapters.get(name) if adapters is not None else None
            if ad is None:
                out[name] = sub
            elif "a" in ad and "b" in ad and not isinstance(ad["a"], Mapping):
                k = sub["kernel"]
                delta = cfg.scale * (ad["a"].astype(jnp.float32) @ ad["b"].astype(jnp.float32))
                out[name] = {**sub, "kernel": (k.astype(jnp.float32) + delta).astype(k.dtype)}
            else:
                out[name] = merge(sub, ad, (*path, name))
        return out
    return merge(llm_params, lora, ())
