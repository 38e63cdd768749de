"""The LiteFrame Video LLM: student -> (teacher pixel shuffle) -> teacher projector -> Qwen2.

The student replaces the teacher's per-frame InternViT and directly emits compressed tokens at the WAP location
the CTD run distilled (`location`); the teacher's connector and LLM are reused unchanged (then adapted by LMA).
A clip of T frames becomes ceil(T / st) groups of `tokens_per_group` LLM tokens (st = the student's temporal
stride), so the prompt has one `<img>...</img>` block per group of st frames (the layout: models.visual_path).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from liteframe_jax.config_base import ConfigBase
from liteframe_jax.models.config import InternVLConfig, StudentConfig
from liteframe_jax.models.connector import Projector, grid_to_llm_tokens
from liteframe_jax.models.layers import compute_dtype
from liteframe_jax.models.llm_front import llm_front
from liteframe_jax.models.student import LiteFrameStudent

LOCATIONS = ("pre_shuffle", "post_shuffle", "post_projector")


@dataclasses.dataclass(frozen=True)
class LiteFrameConfig(ConfigBase):
    """student + the teacher config (its connector, LLM and token ids; its vision tower is not part of the model)
    + where the student's output lives in the teacher's pipeline (the CTD run's WAP location)."""

    config_name: ClassVar[str] = "LiteFrame config"
    parts: ClassVar[tuple[str, ...]] = ("student", "teacher")
    kind: ClassVar[str] = "liteframe"  # the model kind (as in checkpoint metadata); models.visual_path reads it
    student: StudentConfig
    teacher: InternVLConfig
    location: str = "pre_shuffle"

    @property
    def text(self):
        return self.teacher.text

    @property
    def frames_per_group(self) -> int:
        return self.student.stride[0]

    def tokens_per_group(self, image_hw: tuple[int, int] | None = None) -> int:
        """LLM tokens for one group of `frames_per_group` frames of size `image_hw` (default: native)."""
        _, h, w, _ = self.student.output_shape(1, image_hw)
        f = self.teacher.shuffle_factor
        return (h // f) * (w // f) if self.location == "pre_shuffle" else h * w

    def expected_out_dim(self) -> int:
        t = self.teacher
        return {"pre_shuffle": t.vision.hidden_size, "post_shuffle": t.shuffle_factor ** 2 * t.vision.hidden_size,
                "post_projector": t.text.hidden_size}[self.location]

    def problems(self) -> list[str]:
        e = []
        if self.location not in LOCATIONS:
            e.append(f"location={self.location!r} must be one of {LOCATIONS}")
        else:
            if self.student.out_dim != self.expected_out_dim():
                e.append(f"student.out_dim={self.student.out_dim} must equal the teacher's width at {self.location} "
                         f"({self.expected_out_dim()})")
            _, h, w, _ = self.student.output_shape(1)
            f = self.teacher.shuffle_factor
            if self.location == "pre_shuffle" and (h % f or w % f):
                e.append(f"student output grid {h}x{w} is not divisible by the pixel-shuffle factor {f}")
        return e

    def with_dtype(self, dtype: str) -> "LiteFrameConfig":
        return dataclasses.replace(self, student=self.student.replace(dtype=dtype),
                                   teacher=self.teacher.replace(dtype=dtype))


class LiteFrameVLM(nn.Module):
    """Methods (use with `apply(..., method=...)`):
    - `student_tokens(pixels (B, T, H, W, 3))` -> (B, T', H', W', C) student output at `location`
    - `encode_video(pixels)` -> (B, T' * tokens_per_group, d_llm) LLM visual tokens
    - `__call__(input_ids, visual, positions, key_valid, ...)` as `InternVL`'s (the shared LLM front end).
    `with_llm=False` builds the encoder alone (student + projector), e.g. for a CTD-only checkpoint."""

    cfg: LiteFrameConfig
    with_llm: bool = True

    def setup(self):
        c = self.cfg
        dtype = compute_dtype(c.teacher.dtype)
        self.student = LiteFrameStudent(c.student)
        self.projector = Projector(c.teacher.text.hidden_size, c.teacher.projector_ln_eps, dtype)
        if self.with_llm:
            self.llm = llm_front(c.teacher)

    def student_tokens(self, pixels: jax.Array) -> jax.Array:
        return self.student(pixels)

    def encode_video(self, pixels: jax.Array) -> jax.Array:
        grid = self.student(pixels)
        b, t = grid.shape[:2]
        tokens = grid_to_llm_tokens(grid.reshape(b * t, *grid.shape[2:]), self.cfg.location,
                                    self.cfg.teacher.shuffle_factor, self.cfg.teacher.ps_version, self.projector)
        return tokens.reshape(b, t * tokens.shape[1], tokens.shape[-1])

    def __call__(self, input_ids, visual, positions, key_valid, cache=None, cache_index=0, last_only=False):
        return self.llm.forward(input_ids, visual, positions, key_valid, cache, cache_index, last_only)

    def init_all(self, pixels: jax.Array, input_ids: jax.Array) -> jax.Array:
        """Touches every submodule (for `init`)."""
        visual = self.encode_video(pixels)
        if not self.with_llm:
            return visual
        ones = jnp.ones(input_ids.shape, bool)
        return self(input_ids, None, jnp.zeros(input_ids.shape, jnp.int32), ones)[0]


def _init(cfg: LiteFrameConfig, seed: int, with_llm: bool):
    s = cfg.student
    pixels = jnp.zeros((1, s.stride[0], *s.image_size, s.num_channels))
    ids = jnp.zeros((1, 1), jnp.int32)
    return LiteFrameVLM(cfg, with_llm).init(jax.random.key(seed), pixels, ids, method=LiteFrameVLM.init_all)["params"]


def init_liteframe(cfg: LiteFrameConfig, seed: int = 0, with_llm: bool = True):
    """Boxed random parameters {"student", "projector"[, "llm"]} (tests and demos)."""
    return _init(cfg, seed, with_llm)


def abstract_liteframe(cfg: LiteFrameConfig, with_llm: bool = True):
    """Boxed parameter tree of ShapeDtypeStructs (with logical axis names), nothing allocated."""
    return jax.eval_shape(lambda: _init(cfg, 0, with_llm))
