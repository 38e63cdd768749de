"""Which frames of a video to use: InternVL's segment-middle rule and fixed-rate sampling (pure numpy).

Both functions return int64 frame indices (T,) into a video of `num_video_frames` frames, in increasing order
(non-decreasing when frames repeat). Times are in seconds; `bound=(t0, t1)` restricts sampling to that span.

Asking for more frames than the span holds is not an error: indices repeat. InternVL's `get_index` does the same
(e.g. 8 segments of a 4-frame video give [0, 0, 1, 1, 2, 2, 2, 3]), and its frames are then fed to the model
as they are, so we keep that behaviour for teacher parity instead of padding or failing.
"""

from __future__ import annotations

import math
import operator

import numpy as np


def _count(name: str, value) -> int:
    """A positive integer argument, or ValueError."""
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n <= 0:
        raise ValueError(f"{name} must be positive, got {n}")
    return n


def _rate(name: str, value) -> float:
    """A positive finite number, or ValueError."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return x


def _checked_bound(bound, num_video_frames: int, fps: float | None) -> tuple[float, float]:
    """(t0, t1) seconds with 0 <= t0 <= t1 and t0 inside the video; the end may run past it (then clamped)."""
    if fps is None:
        raise ValueError("a time bound needs the video fps to convert seconds to frames")
    try:
        t0, t1 = (float(t) for t in bound)
    except (TypeError, ValueError):
        raise ValueError(f"bound must be a (start, end) pair of seconds, got {bound!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0 or t1 < t0:
        raise ValueError(f"bound must satisfy 0 <= start <= end (seconds), got {bound!r}")
    if round(t0 * fps) > num_video_frames - 1:
        duration = num_video_frames / fps
        raise ValueError(f"bound {bound!r} starts after the video ends ({num_video_frames} frames, {duration:.3f} s)")
    return t0, t1


def segment_middle_indices(num_video_frames: int, num_segments: int, fps: float | None = None,
                           bound: tuple[float, float] | None = None, first_idx: int = 0) -> np.ndarray:
    """InternVL's `get_index`: the middle frame of each of `num_segments` equal segments -> int64 (num_segments,).

    Frames [start, end] are split into S segments of length seg = (end - start) / S and
    idx_k = int(start + seg / 2 + np.round(seg * k)); start = first_idx and end = num_video_frames - 1, or with
    `bound=(t0, t1)` seconds start = max(first_idx, round(t0 * fps)) and end = min(round(t1 * fps), N - 1)
    (Python/NumPy rounding is half-to-even, as in InternVL). Example: N=300, S=8 -> [18, 55, ..., 280].
    More segments than frames repeat indices (see the module docstring). ValueError for non-positive counts or
    fps, a bound without fps, a bound with end < start or negative times, or one starting after the video.
    """
    n = _count("num_video_frames", num_video_frames)
    s = _count("num_segments", num_segments)
    first = operator.index(first_idx)
    if not 0 <= first <= n - 1:
        raise ValueError(f"first_idx must be in [0, {n - 1}], got {first}")
    start, end = first, n - 1
    if bound is not None:
        fps = _rate("fps", fps) if fps is not None else None
        t0, t1 = _checked_bound(bound, n, fps)
        start, end = max(first, round(t0 * fps)), min(round(t1 * fps), n - 1)
        if end < start:
            raise ValueError(f"bound {bound!r} ends before first_idx={first}")
    seg = (end - start) / s
    idx = (start + seg / 2 + np.round(seg * np.arange(s))).astype(np.int64)  # astype truncates, like int()
    return np.clip(idx, 0, n - 1)


def _nearest_frame(position: np.ndarray) -> np.ndarray:
    """Nearest integer frame to fractional frame positions (halves round up)."""
    return np.floor(position + 0.5).astype(np.int64)


def fixed_fps_indices(num_video_frames: int, video_fps: float, sample_fps: float, max_frames: int | None = None,
                      bound: tuple[float, float] | None = None) -> np.ndarray:
    """Frames at a fixed rate: the nearest frame to each time t0 + j / sample_fps -> int64 (T,).

    Frame i is taken to show time i / video_fps. Samples start at t0 (0 without a bound) and continue while the
    time is <= t1 (bound end, inclusive) and the nearest frame exists, so T ~= duration * sample_fps
    (N=300 at 30 fps, 1 fps -> [0, 30, ..., 270]). A sample_fps above video_fps repeats frames. With `max_frames`
    and more samples than that, `max_frames` of them are kept, spread uniformly from the first to the last.
    ValueError for non-positive counts or rates and for bounds as in `segment_middle_indices`.
    """
    n = _count("num_video_frames", num_video_frames)
    vfps = _rate("video_fps", video_fps)
    step = vfps / _rate("sample_fps", sample_fps)  # frames per sample
    cap = None if max_frames is None else _count("max_frames", max_frames)
    t0, t1 = (0.0, math.inf) if bound is None else _checked_bound(bound, n, vfps)
    p0 = t0 * vfps
    candidates = p0 + step * np.arange(int(math.ceil((n - p0) / step)) + 1)
    keep = (_nearest_frame(candidates) <= n - 1) & (candidates <= t1 * vfps + 1e-9 * max(1.0, t1 * vfps))
    idx = _nearest_frame(candidates[keep])
    if idx.size == 0:  # only possible when t0 rounds into the video but its exact position does not
        idx = np.array([min(round(p0), n - 1)], np.int64)
    if cap is not None and idx.size > cap:
        idx = idx[_nearest_frame(np.linspace(0, idx.size - 1, cap))]
    return idx
