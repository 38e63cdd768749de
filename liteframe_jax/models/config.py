"""Architecture configs of the teacher Video LLM (InternViT + pixel shuffle + projector + Qwen2 / Qwen3 / InternLM3).

Frozen dataclasses are the schema: every architecture value is a field, `validate()` reports every impossible
value at once (before anything is compiled), and `to_dict`/`from_dict` round-trip through JSON and
ml_collections ConfigDicts (`from_dict(cfg.to_dict())`); all three come from liteframe_jax.config_base.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from liteframe_jax.config_base import ConfigBase, ConfigError

__all__ = ["ConfigError", "VisionConfig", "TextConfig", "InternVLConfig", "DownsampleStage", "StudentConfig"]

NORM_TYPES = ("layer_norm", "rms_norm")
QKV_LAYOUTS = ("fused", "split")
PS_VERSIONS = ("v1", "v2")
DTYPES = ("float32", "bfloat16")
ROPE_SCALINGS = ("none", "dynamic")
ATTENTION_IMPLS = ("xla", "chunked", "cudnn", "pallas")  # see models.layers.attention


@dataclasses.dataclass(frozen=True)
class VisionConfig(ConfigBase):
    """InternViT. Defaults are InternViT-300M-448px-V2.5 as used by InternVL3-8B."""

    config_name: ClassVar[str] = "vision config"
    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    mlp_dim: int = 4096
    image_size: tuple[int, int] = (448, 448)
    patch_size: int = 14
    num_channels: int = 3
    qkv_bias: bool = True
    qkv_layout: str = "fused"  # "fused": one (D, 3, D) projection as in OpenGVLab; "split": q/k/v as in HF.
    qk_norm: bool = False  # RMSNorm over the full width of q and k before the head split.
    norm_type: str = "layer_norm"
    layer_norm_eps: float = 1e-6
    layer_scale: bool = True  # ls1/ls2 per-channel scales on both residual branches.
    select_layer: int = -1  # -1: last block; k >= 0: output after k blocks (0 = embeddings).

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid(self) -> tuple[int, int]:
        """Native patch grid (rows, cols) of the learned position table."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_blocks_run(self) -> int:
        """Number of blocks whose output is the selected feature."""
        return self.num_layers + 1 + self.select_layer if self.select_layer < 0 else self.select_layer

    def problems(self) -> list[str]:
        e = _positive(self, ("hidden_size", "num_layers", "num_heads", "mlp_dim", "patch_size", "num_channels"),
                      "vision")
        if e:
            return e
        if self.hidden_size % self.num_heads:
            e.append(f"vision.num_heads={self.num_heads} does not divide vision.hidden_size={self.hidden_size}")
        if len(self.image_size) != 2 or min(self.image_size) <= 0:
            e.append(f"vision.image_size={self.image_size} must be two positive integers (height, width)")
        elif self.image_size[0] % self.patch_size or self.image_size[1] % self.patch_size:
            e.append(f"vision.image_size={self.image_size} is not a multiple of vision.patch_size={self.patch_size}")
        if self.norm_type not in NORM_TYPES:
            e.append(f"vision.norm_type={self.norm_type!r} must be one of {NORM_TYPES}")
        if self.qkv_layout not in QKV_LAYOUTS:
            e.append(f"vision.qkv_layout={self.qkv_layout!r} must be one of {QKV_LAYOUTS}")
        if self.layer_norm_eps <= 0:
            e.append(f"vision.layer_norm_eps={self.layer_norm_eps} must be > 0")
        if not -self.num_layers - 1 <= self.select_layer <= self.num_layers:
            e.append(f"vision.select_layer={self.select_layer} must lie in [{-self.num_layers - 1}, {self.num_layers}]")
        return e

    @classmethod
    def _coerce(cls, fields: dict[str, Any]) -> dict[str, Any]:
        return _image_size_pair(fields)


@dataclasses.dataclass(frozen=True)
class TextConfig(ConfigBase):
    """Qwen2 / Qwen2.5 / Qwen3 (dense) / InternLM3 decoder. Defaults are Qwen2.5-7B with InternVL3's 151674-token
    vocabulary.

    Qwen3 (InternVL3.5) differs by three fields: `qk_norm=True` (per-head RMSNorm on q and k before RoPE),
    `qkv_bias=False`, and `explicit_head_dim` (its head width is not hidden_size / num_heads).
    InternLM3 (InternVL3-9B) is Llama-shaped: `qkv_bias == o_mlp_bias` (both False in InternVL3-9B) and an
    `explicit_head_dim`."""

    config_name: ClassVar[str] = "text config"
    vocab_size: int = 151674
    hidden_size: int = 3584
    num_layers: int = 28
    num_heads: int = 28
    num_kv_heads: int = 4
    mlp_dim: int = 18944
    qkv_bias: bool = True
    rope_theta: float = 1_000_000.0
    rope_scaling: str = "none"  # "dynamic" (dynamic NTK) only changes RoPE beyond max_position_embeddings.
    rope_scaling_factor: float = 1.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm over each head's q and k (width head_dim) before RoPE
    explicit_head_dim: int | None = None  # None: hidden_size // num_heads (Qwen2); Qwen3 / InternLM3 state their own
    o_mlp_bias: bool = False  # InternLM3 `bias`: biases on the attention output and the MLP's gate / up / down

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim if self.explicit_head_dim is not None else self.hidden_size // self.num_heads

    def problems(self) -> list[str]:
        e = _positive(self, ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "mlp_dim",
                             "max_position_embeddings"), "text")
        if self.explicit_head_dim is not None:
            e += _positive(self, ("explicit_head_dim",), "text")
        if e:
            return e
        if self.explicit_head_dim is None and self.hidden_size % self.num_heads:
            e.append(f"text.num_heads={self.num_heads} does not divide text.hidden_size={self.hidden_size}")
        elif self.head_dim % 2:
            e.append(f"text head_dim={self.head_dim} must be even for rotary embeddings")
        if self.num_heads % self.num_kv_heads:
            e.append(f"text.num_kv_heads={self.num_kv_heads} does not divide text.num_heads={self.num_heads} (GQA)")
        if self.rope_theta <= 0:
            e.append(f"text.rope_theta={self.rope_theta} must be > 0")
        if self.rope_scaling not in ROPE_SCALINGS:
            e.append(f"text.rope_scaling={self.rope_scaling!r} must be one of {ROPE_SCALINGS}")
        if self.rms_norm_eps <= 0:
            e.append(f"text.rms_norm_eps={self.rms_norm_eps} must be > 0")
        return e


@dataclasses.dataclass(frozen=True)
class InternVLConfig(ConfigBase):
    """The whole teacher Video LLM plus the token ids and runtime numerics that go with it."""

    config_name: ClassVar[str] = "model config"
    kind: ClassVar[str] = "internvl"  # the model kind (as in checkpoint metadata); models.visual_path reads it
    vision: VisionConfig = dataclasses.field(default_factory=VisionConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    downsample_ratio: float = 0.5  # pixel shuffle: each (1/r x 1/r) patch block becomes one token.
    ps_version: str = "v2"
    projector_ln_eps: float = 1e-5
    image_token_id: int = 151667  # <IMG_CONTEXT>
    img_start_token_id: int | None = 151665  # <img>; None when the tokenizer does not define it
    img_end_token_id: int | None = 151666  # </img>
    eos_token_id: int | None = 151645  # <|im_end|>; None: generation never stops early
    pad_token_id: int | None = 151643  # <|endoftext|>
    dtype: str = "float32"  # compute dtype; parameters keep their stored dtype.
    attention_impl: str = "xla"  # models.layers.ATTENTION_IMPLS: "xla", "chunked", "cudnn" (GPU), "pallas" (TPU)
    remat: bool = False  # training: recompute each LLM layer in the backward pass (activation memory)

    @property
    def shuffle_factor(self) -> int:
        return int(round(1.0 / self.downsample_ratio))

    def tokens_per_frame(self, image_hw: tuple[int, int] | None = None) -> int:
        """Visual tokens one frame contributes to the LLM at pixel size `image_hw` (default: native)."""
        h, w = image_hw or self.vision.image_size
        p, s = self.vision.patch_size, self.shuffle_factor
        return (h // p // s) * (w // p // s)

    def problems(self) -> list[str]:
        """The vision tower's, the LLM's and the joint problems, all at once."""
        e = self.vision.problems() + self.text.problems()
        r = self.downsample_ratio
        if not (0 < r <= 1) or abs(1.0 / r - round(1.0 / r)) > 1e-9:
            e.append(f"downsample_ratio={r} must be 1/k for an integer k >= 1")
        else:
            s = self.shuffle_factor
            gh, gw = self.vision.grid
            if self.vision.patch_size > 0 and (gh % s or gw % s):
                e.append(
                    f"patch grid {gh}x{gw} (image_size {self.vision.image_size} / patch_size "
                    f"{self.vision.patch_size}) must be divisible by the pixel-shuffle factor {s}"
                )
        if self.ps_version not in PS_VERSIONS:
            e.append(f"ps_version={self.ps_version!r} must be one of {PS_VERSIONS}")
        if self.projector_ln_eps <= 0:
            e.append(f"projector_ln_eps={self.projector_ln_eps} must be > 0")
        for name in ("image_token_id", "img_start_token_id", "img_end_token_id", "eos_token_id", "pad_token_id"):
            v = getattr(self, name)
            if v is None and name != "image_token_id":
                continue
            if not isinstance(v, int) or not 0 <= v < self.text.vocab_size:
                e.append(f"{name}={v} is outside the vocabulary [0, {self.text.vocab_size})")
        if self.dtype not in DTYPES:
            e.append(f"dtype={self.dtype!r} must be one of {DTYPES}")
        if self.attention_impl not in ATTENTION_IMPLS:
            e.append(f"attention_impl={self.attention_impl!r} must be one of {ATTENTION_IMPLS}")
        return e


def _image_size_pair(fields: dict[str, Any]) -> dict[str, Any]:
    """from_dict: image_size as a pair of ints (a single number means a square)."""
    if "image_size" in fields:
        size = fields["image_size"]
        fields["image_size"] = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(x) for x in size)
    return fields


def _positive(cfg, names: tuple[str, ...], where: str) -> list[str]:
    return [f"{where}.{n}={getattr(cfg, n)} must be a positive integer" for n in names
            if not isinstance(getattr(cfg, n), int) or getattr(cfg, n) <= 0]


@dataclasses.dataclass(frozen=True)
class DownsampleStage(ConfigBase):
    """A depth-wise strided 3-D convolution (+ LayerNorm) applied after block `after_block` (1-based); checked
    by StudentConfig.validate."""

    config_name: ClassVar[str] = "student downsample stage"
    after_block: int
    stride: tuple[int, int, int]  # (t, h, w)
    kernel: tuple[int, int, int]

    @classmethod
    def _coerce(cls, fields: dict[str, Any]) -> dict[str, Any]:
        return {k: int(v) if k == "after_block" else tuple(int(x) for x in v) for k, v in fields.items()}


@dataclasses.dataclass(frozen=True)
class StudentConfig(ConfigBase):
    """The LiteFrame student: a compact video ViT. Defaults are the proposed 87M-parameter ViT-B layout
    (the README's first paragraph); every choice is a field."""

    config_name: ClassVar[str] = "student config"
    image_size: tuple[int, int] = (448, 448)
    patch_size: int = 14
    num_channels: int = 3
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    layer_norm_eps: float = 1e-6
    temporal_conv: bool = True  # residual depth-wise 1-D temporal conv in every block
    temporal_kernel: int = 3
    temporal_conv_position: str = "after_attn"  # "after_attn" | "after_mlp"
    downsample: tuple[DownsampleStage, ...] = (DownsampleStage(4, (2, 2, 2), (3, 3, 3)),
                                               DownsampleStage(8, (2, 1, 1), (3, 1, 1)))
    num_frames: int = 16  # length of the learned temporal position table (resized for other clip lengths)
    temporal_pos: str = "learned"  # "learned" | "sinusoidal" | "none"
    out_dim: int = 1024  # teacher feature width at the WAP location (InternViT width before pixel shuffle)
    identity_init: bool = True  # temporal convs start as identity (residual branch 0, strided conv centre tap 1)
    remat: bool = False  # rematerialize each block in the backward pass
    dtype: str = "float32"
    attention_impl: str = "xla"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def stride(self) -> tuple[int, int, int]:
        """Total (t, h, w) downsampling of all stages."""
        t = h = w = 1
        for s in self.downsample:
            t, h, w = t * s.stride[0], h * s.stride[1], w * s.stride[2]
        return t, h, w

    def output_shape(self, num_frames: int, image_hw: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
        """(T', H', W', out_dim) for a clip of `num_frames` frames (T padded up to a multiple of the stride)."""
        h, w = image_hw or self.image_size
        st, sh, sw = self.stride
        return (-(-num_frames // st), h // self.patch_size // sh, w // self.patch_size // sw, self.out_dim)

    def problems(self) -> list[str]:
        e = _positive(self, ("patch_size", "num_channels", "hidden_size", "num_layers", "num_heads", "mlp_dim",
                             "temporal_kernel", "num_frames", "out_dim"), "student")
        if not e:
            if self.hidden_size % self.num_heads:
                e.append(f"student.num_heads={self.num_heads} does not divide student.hidden_size={self.hidden_size}")
            if self.image_size[0] % self.patch_size or self.image_size[1] % self.patch_size:
                e.append(f"student.image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
            if self.temporal_kernel % 2 == 0:
                e.append(f"student.temporal_kernel={self.temporal_kernel} must be odd ('same' padding)")
            last = 0
            for i, s in enumerate(self.downsample):
                if not 1 <= s.after_block < self.num_layers or s.after_block <= last:
                    e.append(f"student.downsample[{i}].after_block={s.after_block} must increase and lie in "
                             f"[1, {self.num_layers - 1}]")
                last = s.after_block
                if len(s.stride) != 3 or len(s.kernel) != 3 or min(s.stride) < 1 or min(s.kernel) < 1:
                    e.append(f"student.downsample[{i}] stride {s.stride} / kernel {s.kernel} must be 3 positive ints")
            gh, gw = self.grid
            _, sh, sw = self.stride
            if gh % sh or gw % sw:
                e.append(f"student patch grid {gh}x{gw} is not divisible by the total spatial stride {sh}x{sw}")
        if self.temporal_conv_position not in ("after_attn", "after_mlp"):
            e.append(f"student.temporal_conv_position={self.temporal_conv_position!r} must be after_attn|after_mlp")
        if self.temporal_pos not in ("learned", "sinusoidal", "none"):
            e.append(f"student.temporal_pos={self.temporal_pos!r} must be learned|sinusoidal|none")
        if self.dtype not in DTYPES:
            e.append(f"student.dtype={self.dtype!r} must be one of {DTYPES}")
        if self.attention_impl not in ATTENTION_IMPLS:
            e.append(f"student.attention_impl={self.attention_impl!r} must be one of {ATTENTION_IMPLS}")
        return e

    @classmethod
    def _coerce(cls, fields: dict[str, Any]) -> dict[str, Any]:
        return _image_size_pair(fields)
