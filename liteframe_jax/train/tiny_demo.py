"""The tiny demo's LiteFrame encoder (variant=tiny): the student and WAP window that configs/ctd.py trains and
that LMA uses when no CTD checkpoint is given. Sized for the tiny InternVL3 teacher (56 x 56 frames)."""

from __future__ import annotations

from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models.config import DownsampleStage, StudentConfig


def tiny_student() -> StudentConfig:
    """2 blocks, width 32, 4 frames of 56 x 56, one (2, 2, 2) downsampling stage, 64 output channels."""
    return StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, out_dim=64,
                         num_frames=4, downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),))


def tiny_wap() -> WAPConfig:
    """WAP over (2, 2, 2) windows at the default location."""
    return WAPConfig(window=(2, 2, 2))
