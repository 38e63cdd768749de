"""Compressed Token Distillation objective and fidelity metrics.

Student tokens s and stop-gradient WAP(teacher) targets t share a shape (..., C). The default loss is the
per-channel normalized MSE: both are standardized with the *targets'* channel statistics (estimated once over
the data and stored with the run), because ViT features have a few channels of huge magnitude that would
otherwise dominate a plain MSE.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from liteframe_jax.config_base import ConfigBase


@dataclasses.dataclass(frozen=True)
class CTDLossConfig(ConfigBase):
    config_name: ClassVar[str] = "CTD loss config"
    mse_weight: float = 1.0
    cosine_weight: float = 0.0  # adds weight * mean(1 - cos(s_n, t_n)) over tokens
    outlier_clip: float = 0.0  # > 0: ignore residuals beyond this many residual standard deviations (per batch)

    def problems(self) -> list[str]:
        errors = [f"{n}={getattr(self, n)} must be >= 0" for n in ("mse_weight", "cosine_weight", "outlier_clip")
                  if getattr(self, n) < 0]
        if self.mse_weight == 0 and self.cosine_weight == 0:
            errors.append("at least one of mse_weight / cosine_weight must be > 0")
        return errors


@dataclasses.dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and std (C,) of the targets."""

    mean: np.ndarray
    std: np.ndarray

    def to_dict(self) -> dict:
        return {"mean": np.asarray(self.mean).tolist(), "std": np.asarray(self.std).tolist()}

    @classmethod
    def from_dict(cls, d) -> "ChannelStats":
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))

    @classmethod
    def identity(cls, channels: int) -> "ChannelStats":
        return cls(np.zeros(channels, np.float32), np.ones(channels, np.float32))


class ChannelStatsAccumulator:
    """Streaming per-channel mean/std over batches of targets (..., C), in float64 (Chan et al. merge)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def update(self, x) -> None:
        x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
        n, mean = x.shape[0], x.mean(0)
        m2 = ((x - mean) ** 2).sum(0)
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        delta, total = mean - self.mean, self.n + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + m2 + delta ** 2 * self.n * n / total
        self.n = total

    def result(self, eps: float = 1e-6) -> ChannelStats:
        if self.n < 2:
            raise ValueError("channel statistics need at least two target tokens")
        std = np.sqrt(self.m2 / (self.n - 1))
        return ChannelStats(self.mean.astype(np.float32), np.maximum(std, eps).astype(np.float32))


def ctd_loss(student: jax.Array, targets: jax.Array, stats: ChannelStats, cfg: CTDLossConfig,
             weights: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """student, targets (..., C); weights optional (...,) per-token weights (e.g. 0 for padding).
    Returns (scalar loss, dict of scalar terms). Targets are under stop_gradient; computed in fp32."""
    s = student.astype(jnp.float32)
    t = jax.lax.stop_gradient(targets.astype(jnp.float32))
    mean, std = jnp.asarray(stats.mean, jnp.float32), jnp.asarray(stats.std, jnp.float32)
    r = (s - mean) / std - (t - mean) / std
    w = jnp.ones(s.shape[:-1], jnp.float32) if weights is None else weights.astype(jnp.float32)
    keep = jnp.broadcast_to(w[..., None], r.shape)
    if cfg.outlier_clip > 0:
        sd = jax.lax.stop_gradient(jnp.sqrt(jnp.sum(keep * r ** 2) / jnp.maximum(jnp.sum(keep), 1.0)))
        keep = keep * (jnp.abs(jax.lax.stop_gradient(r)) <= cfg.outlier_clip * sd)
    mse = jnp.sum(keep * r ** 2) / jnp.maximum(jnp.sum(keep), 1.0)
    cos = jnp.sum(w * (1.0 - cosine_similarity(s, t))) / jnp.maximum(jnp.sum(w), 1.0)
    loss = cfg.mse_weight * mse + cfg.cosine_weight * cos
    return loss, {"loss": loss, "normalized_mse": mse, "one_minus_cosine": cos}


# ------------------------------------------------------------------------------------------------- metrics
def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    """(..., C), (..., C) -> (...) cosine similarity per token."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    return jnp.sum(a * b, -1) / jnp.maximum(jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1), eps)


def linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
    """Linear CKA between token sets x (N, Cx) and y (N, Cy) (Kornblith et al. 2019); 1 = same up to rotation
    and isotropic scale."""
    x = x.astype(jnp.float32) - jnp.mean(x, 0)
    y = y.astype(jnp.float32) - jnp.mean(y, 0)
    xy = jnp.sum((x.T @ y) ** 2)
    return xy / jnp.sqrt(jnp.sum((x.T @ x) ** 2) * jnp.sum((y.T @ y) ** 2))


def fidelity_metrics(student: jax.Array, targets: jax.Array, stats: ChannelStats) -> dict[str, jax.Array]:
    """Cosine similarity (mean over tokens), normalized MSE and linear CKA of student vs teacher tokens (..., C)."""
    s = student.reshape(-1, student.shape[-1])
    t = targets.reshape(-1, targets.shape[-1])
    mean, std = jnp.asarray(stats.mean), jnp.asarray(stats.std)
    nmse = jnp.mean(((s - mean) / std - (t - mean) / std) ** 2)
    return {"cosine": jnp.mean(cosine_similarity(s, t)), "normalized_mse": nmse, "cka": linear_cka(s, t)}
