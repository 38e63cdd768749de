"""Procedural videos with known contents (no files needed): coloured shapes moving over a plain background.

Each video is a pure function of (index, spec): a few objects, each with a distinct palette colour, a shape
(square/circle/triangle), a motion (left/right/up/down/static), a first visible frame `appear_frame` and a first
no-longer-visible frame `disappear_frame` (== num_frames when it stays to the end), and its bounding box in every
frame. Objects never overlap and stay fully inside the frame, and the background is grey (R = G = B, darker than
any palette colour), so every object pixel shows exactly its palette colour: the recorded attributes can be
checked against the pixels and turned into question/answer pairs with known answers.

Numpy only (no jax) and picklable at module top level, so `SyntheticVideoSource` works in grain worker processes.
"""

from __future__ import annotations

import dataclasses
import functools
import operator

import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (235, 215, 30),
    "purple": (140, 50, 190),
    "orange": (245, 130, 20),
    "cyan": (30, 200, 215),
    "white": (245, 245, 245),
}
SHAPES = ("square", "circle", "triangle")
MOTIONS = ("left", "right", "up", "down", "static")
_DIRECTION = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "static": (0, 0)}
_PLACEMENT_TRIES = 100


@dataclasses.dataclass(frozen=True)
class SyntheticVideoSpec:
    """Video shape and content ranges. size is H = W in pixels; background_noise is the amplitude of a static
    grey texture (0 = plain background); fps is metadata (for writing files and time-based questions)."""

    num_frames: int = 16
    size: int = 112
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0
    background_noise: int = 6
    fps: float = 8.0

    def __post_init__(self):
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        check_render_fields(self)
        if not 1 <= self.min_objects <= self.max_objects <= len(PALETTE):
            raise ValueError(f"need 1 <= min_objects <= max_objects <= {len(PALETTE)}, "
                             f"got {self.min_objects}, {self.max_objects}")


def check_render_fields(spec) -> None:
    """The rendering fields every synthetic spec shares (size, background_noise, seed, fps); ValueError."""
    if spec.size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {spec.size}")
    if not 0 <= spec.background_noise <= 20:
        raise ValueError(f"background_noise must be in [0, 20], got {spec.background_noise}")
    if spec.seed < 0 or spec.fps <= 0:
        raise ValueError(f"seed must be >= 0 and fps > 0, got seed={spec.seed}, fps={spec.fps}")


@dataclasses.dataclass(frozen=True)
class SyntheticObject:
    """One object: visible in frames appear_frame <= t < disappear_frame; boxes[t] = (x0, y0, x1, y1) pixels
    (x1, y1 exclusive) while visible, else None."""

    color: str
    shape: str
    motion: str
    appear_frame: int
    disappear_frame: int
    side: int
    boxes: tuple

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["rgb"] = list(PALETTE[self.color])
        d["boxes"] = [None if b is None else list(b) for b in self.boxes]
        return d


@dataclasses.dataclass(frozen=True, eq=False)
class SyntheticVideo:
    """A rendered video: frames uint8 (T, H, W, 3) and the objects drawn in it."""

    index: int
    spec: SyntheticVideoSpec
    frames: np.ndarray
    objects: tuple[SyntheticObject, ...]
    background_level: int

    @property
    def video_id(self) -> str:
        return f"synthetic:{self.spec.seed}:{self.index}"

    def attributes(self) -> dict:
        """JSON-serializable description: sizes, fps, background and the objects (in drawing order)."""
        return {
            "video_id": self.video_id,
            "num_frames": self.spec.num_frames,
            "height": self.spec.size,
            "width": self.spec.size,
            "fps": self.spec.fps,
            "background": "textured" if self.spec.background_noise else "plain",
            "background_level": self.background_level,
            "objects": [o.to_dict() for o in self.objects],
        }


@functools.lru_cache(maxsize=None)
def shape_mask(shape: str, side: int) -> np.ndarray:
    """Read-only bool (side, side) mask touching all four edges: full square, inscribed disc, upward triangle."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    c = (side - 1) / 2
    if shape == "square":
        mask = np.ones((side, side), bool)
    elif shape == "circle":
        mask = (yy - c) ** 2 + (xx - c) ** 2 <= (side / 2) ** 2
    elif shape == "triangle":
        mask = np.abs(xx - c) <= (yy + 1) / 2
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask.setflags(write=False)
    return mask


def _sample_object(rng: np.random.Generator, spec: SyntheticVideoSpec, color: str, appear: int) -> SyntheticObject:
    """Random shape, motion, lifetime from `appear`, and a straight path that stays inside the frame."""
    t_total, size = spec.num_frames, spec.size
    min_visible = min(t_total - appear, max(3, t_total // 3))
    if rng.random() < 0.5 or appear + min_visible >= t_total:
        disappear = t_total
    else:
        disappear = int(rng.integers(appear + min_visible, t_total))
    shape, motion = SHAPES[rng.integers(len(SHAPES))], MOTIONS[rng.integers(len(MOTIONS))]
    lo = max(4, round(0.14 * size))
    side = int(rng.integers(lo, max(lo, round(0.22 * size)) + 1))
    steps = disappear - appear - 1
    room = size - side
    speed = 0.0
    if motion != "static" and steps > 0:
        top = min(room / steps, 0.06 * size)
        speed = float(rng.uniform(min(1.0, top), top))
    dx, dy = _DIRECTION[motion]
    travel = speed * steps

    def start(d):  # start coordinate so that the whole path stays in [0, room]
        return float(rng.uniform(travel, room)) if d < 0 else float(rng.uniform(0, room - travel * d))

    x, y = start(dx), start(dy)
    boxes = [None] * t_total
    for t in range(appear, disappear):
        k = t - appear
        x0, y0 = round(x + dx * speed * k), round(y + dy * speed * k)
        boxes[t] = (x0, y0, x0 + side, y0 + side)
    return SyntheticObject(color, shape, motion, appear, disappear, side, tuple(boxes))


def _overlaps(a: SyntheticObject, b: SyntheticObject, margin: int = 1) -> bool:
    """Whether the boxes of a and b touch (within margin pixels) in any frame where both are visible."""
    for ba, bb in zip(a.boxes, b.boxes):
        if ba is not None and bb is not None:
            if ba[0] < bb[2] + margin and bb[0] < ba[2] + margin and ba[1] < bb[3] + margin and bb[1] < ba[3] + margin:
                return True
    return False


def make_synthetic_video(index: int, spec: SyntheticVideoSpec = SyntheticVideoSpec()) -> SyntheticVideo:
    """Video number `index` (>= 0) of the spec's family, identical for the same (index, spec).

    Objects get distinct colours and, when num_frames allows, distinct appear frames (in the first two thirds
    of the clip), so "which appeared first" has one answer; disappear frames may tie. An object that cannot be
    placed without overlapping the others after many tries is left out (not seen with the default spec).
    """
    index = operator.index(index)
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([spec.seed, index])
    t_total, size = spec.num_frames, spec.size
    n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    colors = [list(PALETTE)[i] for i in rng.choice(len(PALETTE), n, replace=False)]
    slots = max(1, t_total - max(3, t_total // 3) + 1)
    appears = rng.choice(slots, n, replace=n > slots)
    objects: list[SyntheticObject] = []
    for color, appear in zip(colors, appears):
        for _ in range(_PLACEMENT_TRIES):
            obj = _sample_object(rng, spec, color, int(appear))
            if not any(_overlaps(obj, other) for other in objects):
                objects.append(obj)
                break
    level = int(rng.integers(25, 70))
    background = np.full((size, size, 1), level, np.int16)
    if spec.background_noise:
        background += rng.integers(-spec.background_noise, spec.background_noise + 1, (size, size, 1), np.int16)
    frames = np.empty((t_total, size, size, 3), np.uint8)
    frames[:] = background.astype(np.uint8)
    for obj in objects:
        mask, rgb = shape_mask(obj.shape, obj.side), np.array(PALETTE[obj.color], np.uint8)
        for t in range(obj.appear_frame, obj.disappear_frame):
            x0, y0, x1, y1 = obj.boxes[t]
            frames[t, y0:y1, x0:x1][mask] = rgb
    return SyntheticVideo(index, spec, frames, tuple(objects), level)


class SyntheticVideoSource:
    """grain random-access source of `num_videos` synthetic videos: item i -> {"frames": uint8 (T, H, W, 3),
    "video_id": "synthetic:<seed>:<i>", "attributes": JSON-serializable dict}."""

    def __init__(self, spec: SyntheticVideoSpec = SyntheticVideoSpec(), num_videos: int = 1000):
        if operator.index(num_videos) < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.spec = spec
        self.num_videos = operator.index(num_videos)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, i) -> dict:
        i = operator.index(i)
        if i < 0:
            i += self.num_videos
        if not 0 <= i < self.num_videos:
            raise IndexError(f"index {i} out of range for {self.num_videos} synthetic videos")
        video = make_synthetic_video(i, self.spec)
        return {"frames": video.frames, "video_id": video.video_id, "attributes": video.attributes()}

    def __repr__(self) -> str:
        return f"SyntheticVideoSource(spec={self.spec!r}, num_videos={self.num_videos})"
