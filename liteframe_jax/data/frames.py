"""Frame preprocessing shared by every pipeline: uint8 RGB frames -> the teacher's normalized floats."""

from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB frames (F, H, W, 3) -> float32 (F, H, W, 3) with ImageNet mean/std, as InternVL's transform."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3) RGB, got {frames.shape}")
    return (frames.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def pad_with_last(x: np.ndarray, length: int) -> np.ndarray:
    """`x` (T, ...) extended along its first axis to `length` by repeating its last entry: the project's padding
    rule for clips shorter than asked (frames and their indices alike; models.layers.pad_frames_to_multiple
    applies it to jax arrays). Returns `x` itself when it is already that long."""
    if len(x) >= length:
        return x
    if len(x) == 0:
        raise ValueError("cannot pad an empty clip")
    return np.concatenate([x, np.repeat(x[-1:], length - len(x), axis=0)])


def moving_square_clip(num_frames: int, size: int, seed: int = 0) -> np.ndarray:
    """A small procedurally generated clip (F, size, size, 3) uint8: a coloured square moving over noise."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 40, size=(num_frames, size, size, 3), dtype=np.uint8)
    side = max(2, size // 4)
    colour = rng.integers(80, 256, size=3, dtype=np.uint8)
    for t in range(num_frames):
        x = int((size - side) * t / max(1, num_frames - 1))
        frames[t, size // 3: size // 3 + side, x: x + side] = colour
    return frames
