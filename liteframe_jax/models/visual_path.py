"""Visual paths: how normalized frames (B, T, H, W, 3) become a Video LLM's visual tokens (B, N, d_llm).

    path = make_visual_path("student", teacher_cfg, liteframe=lf_cfg)   # or for_model(model_cfg, wap)
    tokens = path.encode(params, pixels)          # (B, T, H, W, 3) -> (B, path.num_visual_tokens(T), d_llm)

Three paths, named as configs and checkpoint metadata name them (`encoder`):
  teacher      InternViT per frame -> pixel shuffle -> projector; one prompt group per frame.
  teacher_wap  the teacher's tokens pooled post hoc by WAP (window kt x kh x kw); one group per kt frames.
  student      LiteFrame: the student over the clip -> (pixel shuffle) -> projector; one group per st frames
               (st = the student's temporal stride).
Each knows the parameter subtrees it reads (`param_keys`, plus "llm" for the LLM behind it), its prompt layout
(frames and LLM tokens per `<img>` group), its input rules (`check_pixels`) and its analytic FLOPs. Frame counts:
any T >= 1; where a group spans several frames a short last group is padded by repeating the last frame.

`make_visual_path` (by encoder name) and `for_model` (by loaded model config) are the only places that tell the
encoders or the model kinds apart; everything else asks the path.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import ClassVar

import jax

from liteframe_jax.compression.teacher_targets import targets_to_llm_tokens, teacher_targets
from liteframe_jax.compression.wap import WAPConfig, llm_tokens_per_group
from liteframe_jax.models.config import ConfigError, InternVLConfig
from liteframe_jax.models.internvl import InternVL, abstract_params
from liteframe_jax.models.liteframe import LiteFrameConfig, LiteFrameVLM, abstract_liteframe

ENCODERS = ("student", "teacher", "teacher_wap")


@dataclasses.dataclass(frozen=True)
class VisualPath(abc.ABC):
    """One visual path in front of the LLM of `teacher` (its connector, LLM and token ids). Hashable: it can be a
    static jit argument."""

    teacher: InternVLConfig

    encoder: ClassVar[str]  # the name configs and checkpoint metadata use
    label: ClassVar[str]  # for people
    encoder_weights: ClassVar[str]  # whose encoder weights it runs: "teacher" or "student"
    param_keys: ClassVar[tuple[str, ...]]  # the subtrees of the pipeline params `encode` reads

    # ------------------------------------------------------------------ prompt layout
    @property
    @abc.abstractmethod
    def frames_per_group(self) -> int:
        """Frames that share one `<img>...</img>` block of the prompt."""

    @abc.abstractmethod
    def tokens_per_group(self, image_hw: tuple[int, int] | None = None) -> int:
        """LLM tokens of one group of frames of size `image_hw` (default: the native size)."""

    def num_groups(self, num_frames: int) -> int:
        return -(-num_frames // self.frames_per_group)

    def num_visual_tokens(self, num_frames: int, image_hw: tuple[int, int] | None = None) -> int:
        return self.num_groups(num_frames) * self.tokens_per_group(image_hw)

    # ------------------------------------------------------------------ inputs
    @property
    @abc.abstractmethod
    def frame_config(self):
        """The config the frames are made for (its image_size and num_channels): the ViT's or the student's."""

    @property
    def image_size(self) -> tuple[int, int]:
        """The native frame size (H, W)."""
        return tuple(self.frame_config.image_size)

    @property
    def num_channels(self) -> int:
        return self.frame_config.num_channels

    @abc.abstractmethod
    def frame_multiple(self) -> tuple[int, str]:
        """(m, why): frame heights and widths must be multiples of m, for the reason `why`."""

    def check_pixels(self, shape: tuple[int, ...], batched: bool = False) -> None:
        """ValueError unless `shape` is (F, H, W, C) (batched: (B, T, H, W, C)) with this path's channel count,
        at least one frame and H, W multiples of `frame_multiple()`."""
        c = self.num_channels
        ndim, form = (5, f"(B, T, H, W, {c})") if batched else (4, f"(F, H, W, {c})")
        if len(shape) != ndim or shape[-1] != c:
            raise ValueError(f"pixels must be {form} normalized floats or uint8 RGB, got {tuple(shape)}")
        if shape[-4] < 1:
            raise ValueError(f"pixels hold no frames: {tuple(shape)}")
        step, why = self.frame_multiple()
        if shape[-3] % step or shape[-2] % step:
            raise ValueError(f"frame size {shape[-3]}x{shape[-2]} must be a multiple of {step} ({why})")

    # ------------------------------------------------------------------ parameters and compute
    @abc.abstractmethod
    def abstract_params(self):
        """Boxed abstract parameters of the whole pipeline: param_keys + "llm" (nothing allocated)."""

    def abstract_encoder_params(self):
        full = self.abstract_params()
        return {k: full[k] for k in self.param_keys if k in full}

    def encoder_params(self, params) -> dict:
        """The subtrees of pipeline `params` this path reads (the projector is absent after post_projector)."""
        return {k: params[k] for k in self.param_keys if k in params}

    @property
    @abc.abstractmethod
    def projector_on_path(self) -> bool:
        """Whether the projector runs on this path (not when tokens already live after it)."""

    @abc.abstractmethod
    def encode(self, params, pixels: jax.Array) -> jax.Array:
        """pixels (B, T, H, W, 3) normalized -> LLM visual tokens (B, num_visual_tokens(T, (H, W)), d_llm)."""

    @abc.abstractmethod
    def vision_flops(self, formulas, frames: int) -> dict:
        """Analytic FLOPs of encoding one `frames`-frame clip, from `formulas` (experiments.flops: the library
        does not import the experiments): {part: flops, "total"}."""


@dataclasses.dataclass(frozen=True)
class TeacherPath(VisualPath):
    encoder: ClassVar[str] = "teacher"
    label: ClassVar[str] = "InternVL3 teacher"
    encoder_weights: ClassVar[str] = "teacher"
    param_keys: ClassVar[tuple[str, ...]] = ("vision", "projector")

    @property
    def frames_per_group(self) -> int:
        return 1

    def tokens_per_group(self, image_hw=None) -> int:
        return self.teacher.tokens_per_frame(image_hw)

    @property
    def frame_config(self):
        return self.teacher.vision

    def frame_multiple(self) -> tuple[int, str]:
        p, f = self.teacher.vision.patch_size, self.teacher.shuffle_factor
        return p * f, f"patch {p} x pixel-shuffle {f}"

    def abstract_params(self):
        return dict(abstract_params(self.teacher))

    @property
    def projector_on_path(self) -> bool:
        return True

    def encode(self, params, pixels):
        b, t = pixels.shape[:2]
        out = InternVL(self.teacher).apply({"params": self.encoder_params(params)},
                                           pixels.reshape(b * t, *pixels.shape[2:]), method=InternVL.encode_images)
        return out.reshape(b, -1, out.shape[-1])

    def vision_flops(self, formulas, frames):
        return formulas.teacher_vision(self.teacher, frames)


@dataclasses.dataclass(frozen=True)
class TeacherWAPPath(TeacherPath):
    wap: WAPConfig = dataclasses.field(kw_only=True)

    encoder: ClassVar[str] = "teacher_wap"
    label: ClassVar[str] = "teacher + post-hoc WAP"

    @property
    def frames_per_group(self) -> int:
        return self.wap.window[0]

    def tokens_per_group(self, image_hw=None) -> int:
        return llm_tokens_per_group(self.wap, self.teacher, image_hw)

    def frame_multiple(self) -> tuple[int, str]:
        step, why = super().frame_multiple()
        kw = self.wap.window[1]
        return step * kw, f"{why} x WAP window {kw}"

    @property
    def projector_on_path(self) -> bool:
        return self.wap.location != "post_projector"

    def encode(self, params, pixels):
        params = self.encoder_params(params)
        return targets_to_llm_tokens(self.teacher, params, teacher_targets(self.teacher, params, pixels, self.wap),
                                     self.wap)

    def vision_flops(self, formulas, frames):
        return formulas.teacher_wap_vision(self.teacher, self.wap, frames)


@dataclasses.dataclass(frozen=True)
class StudentPath(VisualPath):
    liteframe: LiteFrameConfig = dataclasses.field(kw_only=True)

    encoder: ClassVar[str] = "student"
    label: ClassVar[str] = "LiteFrame student"
    encoder_weights: ClassVar[str] = "student"
    param_keys: ClassVar[tuple[str, ...]] = ("student", "projector")

    @property
    def frames_per_group(self) -> int:
        return self.liteframe.frames_per_group

    def tokens_per_group(self, image_hw=None) -> int:
        return self.liteframe.tokens_per_group(image_hw)

    @property
    def frame_config(self):
        return self.liteframe.student

    def frame_multiple(self) -> tuple[int, str]:
        c = self.liteframe
        patch = c.student.patch_size
        stride = c.student.stride[1] * (c.teacher.shuffle_factor if c.location == "pre_shuffle" else 1)
        return patch * stride, f"patch {patch} x total spatial reduction {stride}"

    def abstract_params(self):
        return dict(abstract_liteframe(self.liteframe))

    @property
    def projector_on_path(self) -> bool:
        return self.liteframe.location != "post_projector"

    def encode(self, params, pixels):
        return LiteFrameVLM(self.liteframe, with_llm=False).apply({"params": self.encoder_params(params)}, pixels,
                                                                  method=LiteFrameVLM.encode_video)

    def vision_flops(self, formulas, frames):
        return formulas.student_vision(self.liteframe, frames)


# ---------------------------------------------------------------------------------------------------- factory

_NEEDS = {"teacher": (), "teacher_wap": ("wap",), "student": ("liteframe",)}


def configs_needed(encoder: str) -> tuple[str, ...]:
    """What `make_visual_path(encoder, ...)` needs besides the teacher: () | ("wap",) | ("liteframe",)."""
    if encoder not in _NEEDS:
        raise ConfigError(f"encoder={encoder!r} must be one of {ENCODERS}")
    return _NEEDS[encoder]


def make_visual_path(encoder: str, teacher: InternVLConfig, *, liteframe: LiteFrameConfig | None = None,
                     wap: WAPConfig | None = None) -> VisualPath:
    """The path named `encoder` in front of `teacher`'s LLM; ConfigError for an unknown name or a missing config
    ("teacher_wap" needs `wap`, "student" needs `liteframe`; a config the path does not use is ignored)."""
    need = configs_needed(encoder)
    if "wap" in need and wap is None:
        raise ConfigError(f"encoder={encoder!r} needs a WAP config")
    if "liteframe" in need and liteframe is None:
        raise ConfigError(f"encoder={encoder!r} needs the LiteFrame config")
    if encoder == "student":
        return StudentPath(teacher, liteframe=liteframe)
    return TeacherWAPPath(teacher, wap=wap) if encoder == "teacher_wap" else TeacherPath(teacher)


def for_model(config: InternVLConfig | LiteFrameConfig, wap: WAPConfig | None = None) -> VisualPath:
    """The path of a loaded model: a LiteFrame model's student; an InternVL model's teacher path, or teacher_wap
    when `wap` compresses its tokens post hoc (ValueError for WAP on LiteFrame)."""
    if config.kind == "liteframe":
        if wap is not None:
            raise ValueError("post-hoc WAP applies to teacher (InternVL) models, not to LiteFrame")
        return make_visual_path("student", config.teacher, liteframe=config)
    return make_visual_path("teacher" if wap is None else "teacher_wap", config, wap=wap)


@functools.partial(jax.jit, static_argnums=0)
def encode_frames(path: VisualPath, params, pixels: jax.Array) -> jax.Array:
    """One clip's frames (F, H, W, 3) -> its visual tokens (num_visual_tokens(F), d_llm); jitted, `path` static.
    No input checks (`path.check_pixels`): this is the compute that `VideoLLM.encode_frames` runs."""
    out = path.encode(params, pixels[None])
    return out.reshape(-1, out.shape[-1])
