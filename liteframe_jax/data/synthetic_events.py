"""Long procedural videos with brief, sparse events (the "events" kind of synthetic video; synthetic.py is the
"shapes" kind): what happens is only seen by a frame sample that is dense enough.

A clip (default 128 frames of 112 x 112 pixels at 8 fps) shows, over a grey background as in synthetic.py:
  * a persistent object, visible and static in every frame, in one quadrant of the frame (with
    show_persistent=False it is not drawn: the clip has only the brief events and the flashes; everything else is
    the same clip);
  * a repeated object that appears `repeats` times (0..MAX_REPEATS), each time briefly;
  * NUM_SINGLES one-off objects, each appearing once, briefly;
  (each brief appearance is inside one of the three quadrants the persistent object leaves free; with
  event_size="large" it is LARGE_SIDE of the frame side around the frame's centre instead, so at 56 px every one
  of the frame's 2 x 2 visual tokens sees part of it)
  * 1..max_flashes screen flashes: for flash_frames frames the whole background takes one colour (the same for
    every flash of a clip, a colour no object has), objects stay drawn on top.
Each brief appearance (an event) lasts min_event_frames..max_event_frames frames at a fixed box; the persistent
object is drawn over it. Events never overlap in time (at least min_gap_frames between two),
so their order is strict and two appearances of the repeated object are always separated by frames without it.
Flashes are timed independently of the objects' events, with the same minimum gap between two flashes; they are
drawn from a random stream of their own, so switching them off (max_flashes=0) leaves everything else unchanged.
All objects have distinct palette colours; the persistent object's side (and a quadrant event's) is
MIN_SIDE..MAX_SIDE of the frame side, so at 56 x 56 pixels (4 x 4 patches of 14 pixels) it fills most of a quadrant.
Large events test whether a tiny teacher's trouble with brief objects is their small share of the visual tokens
(measured: it is not; the README's "The method at toy scale").

With the default spec, 8 segment-middle frames (one every ~16) miss most events, while 32 or more (one every
<= 4 frames) see every one. A clip is a pure function of (index, spec), numpy only, so it can be re-rendered
from a record's `synthetic` spec dict (`kind: "events"` tells it from the shapes kind).
"""

from __future__ import annotations

import dataclasses
import operator

import numpy as np

from liteframe_jax.data.synthetic import PALETTE, SHAPES, check_render_fields, shape_mask

KIND = "events"
MAX_REPEATS = 3
NUM_SINGLES = 3
MAX_EVENTS = MAX_REPEATS + NUM_SINGLES
MAX_FLASHES = 4
MIN_SIDE, MAX_SIDE = 0.34, 0.45  # object side as a share of the frame side; a quadrant is 0.5
LARGE_SIDE = (0.55, 0.75)  # a large event's side as a share of the frame side
LARGE_JITTER = 0.08  # how far (share of the frame side) a large event's centre strays from the frame's centre
EVENT_SIZES = ("large", "quadrant")
# dense training clips: 48 frames with events and flashes 4 frames long and at least 4 apart, so 12
# segment-middle frames (one every 4) see every event and every gap once (synthetic_spec("events", **DENSE_FIELDS))
DENSE_FIELDS = {"num_frames": 48, "min_event_frames": 4, "max_event_frames": 4, "min_gap_frames": 4,
                "flash_frames": 4}
_STREAM = 0x657665  # keeps these clips' random streams apart from the shapes kind's for the same (seed, index)
_FLASH_STREAM = 0x666C61
_LARGE_STREAM = 0x6C6172


@dataclasses.dataclass(frozen=True)
class EventVideoSpec:
    """Clip shape and event timing. kind is always "events" (it names the kind in a record's `synthetic` dict);
    size is H = W in pixels; events last min_event_frames..max_event_frames frames with at least min_gap_frames
    between two and are drawn in a free quadrant or (event_size="large") large over the frame's centre;
    1..max_flashes screen flashes of flash_frames frames each (max_flashes=0: none); show_persistent=False leaves
    the persistent object out; background_noise and fps as in SyntheticVideoSpec."""

    kind: str = KIND
    num_frames: int = 128
    size: int = 112
    seed: int = 0
    fps: float = 8.0
    background_noise: int = 6
    min_event_frames: int = 4
    max_event_frames: int = 8
    min_gap_frames: int = 4
    max_flashes: int = MAX_FLASHES
    flash_frames: int = 6
    event_size: str = "quadrant"
    show_persistent: bool = True

    def __post_init__(self):
        if self.kind != KIND:
            raise ValueError(f"kind must be {KIND!r}, got {self.kind!r}")
        if self.event_size not in EVENT_SIZES:
            raise ValueError(f"event_size must be one of {EVENT_SIZES}, got {self.event_size!r}")
        if not isinstance(self.show_persistent, bool):
            raise ValueError(f"show_persistent must be True or False, got {self.show_persistent!r}")
        check_render_fields(self)
        if not 1 <= self.min_event_frames <= self.max_event_frames or self.min_gap_frames < 1:
            raise ValueError(f"need 1 <= min_event_frames <= max_event_frames and min_gap_frames >= 1, got "
                             f"{self.min_event_frames}, {self.max_event_frames}, {self.min_gap_frames}")
        if not 0 <= self.max_flashes <= MAX_FLASHES or self.flash_frames < 1:
            raise ValueError(f"need 0 <= max_flashes <= {MAX_FLASHES} and flash_frames >= 1, got "
                             f"{self.max_flashes}, {self.flash_frames}")
        flashes = self.max_flashes * self.flash_frames + (self.max_flashes - 1) * self.min_gap_frames
        if self.num_frames < flashes:
            raise ValueError(f"num_frames must be >= {flashes} to fit {self.max_flashes} flashes of "
                             f"{self.flash_frames} frames with gaps of {self.min_gap_frames}, got {self.num_frames}")
        need = MAX_EVENTS * self.max_event_frames + (MAX_EVENTS - 1) * self.min_gap_frames
        if self.num_frames < need:
            raise ValueError(f"num_frames must be >= {need} to fit {MAX_EVENTS} events of up to "
                             f"{self.max_event_frames} frames with gaps of {self.min_gap_frames}, "
                             f"got {self.num_frames}")


@dataclasses.dataclass(frozen=True)
class SyntheticEvent:
    """One object drawn at a fixed box (x0, y0, x1, y1; pixels, x1 and y1 exclusive) in frames start <= t < end."""

    color: str
    shape: str
    start: int
    end: int
    box: tuple[int, int, int, int]

    @property
    def frames(self) -> list[int]:
        return list(range(self.start, self.end))

    def to_dict(self) -> dict:
        return {"color": self.color, "shape": self.shape, "rgb": list(PALETTE[self.color]), "start": self.start,
                "end": self.end, "box": list(self.box)}


@dataclasses.dataclass(frozen=True, eq=False)
class EventVideo:
    """A rendered clip: frames uint8 (T, H, W, 3); the persistent object (an event spanning all frames; None
    when the spec does not show it); the brief events sorted by start; the colour and shape of the repeated
    object (drawn in `repeats` of the events, possibly none); the screen flashes sorted by start (full-frame
    boxes, all of one colour)."""

    index: int
    spec: EventVideoSpec
    frames: np.ndarray
    persistent: SyntheticEvent | None
    events: tuple[SyntheticEvent, ...]
    repeated: tuple[str, str]
    background_level: int
    flashes: tuple[SyntheticEvent, ...] = ()

    @property
    def video_id(self) -> str:
        return f"synthetic:{self.spec.seed}:{self.index}"

    def appearances(self, color: str) -> list[SyntheticEvent]:
        """The brief events of the object with this colour, in time order."""
        return [e for e in self.events if e.color == color]

    @property
    def singles(self) -> list[SyntheticEvent]:
        """The one-off objects' events, in time order."""
        return [e for e in self.events if e.color != self.repeated[0]]

    def attributes(self) -> dict:
        """JSON-serializable description: sizes, fps, background, the persistent object and the events."""
        return {
            "video_id": self.video_id,
            "kind": KIND,
            "num_frames": self.spec.num_frames,
            "height": self.spec.size,
            "width": self.spec.size,
            "fps": self.spec.fps,
            "background": "textured" if self.spec.background_noise else "plain",
            "background_level": self.background_level,
            "persistent": None if self.persistent is None else self.persistent.to_dict(),
            "repeated": {"color": self.repeated[0], "shape": self.repeated[1],
                         "repeats": len(self.appearances(self.repeated[0]))},
            "events": [e.to_dict() for e in self.events],
            "flashes": [f.to_dict() for f in self.flashes],
        }


def _box_in_quadrant(rng: np.random.Generator, size: int, quadrant: int) -> tuple[int, int, int, int]:
    """A random square box inside quadrant 0..3 (row-major: top-left, top-right, bottom-left, bottom-right)."""
    half, quadrant = size // 2, int(quadrant)
    side = min(half, int(rng.integers(round(MIN_SIDE * size), round(MAX_SIDE * size) + 1)))
    x = (quadrant % 2) * half + int(rng.integers(0, half - side + 1))
    y = (quadrant // 2) * half + int(rng.integers(0, half - side + 1))
    return x, y, x + side, y + side


def _large_box(rng: np.random.Generator, size: int) -> tuple[int, int, int, int]:
    """A random square box of LARGE_SIDE of the frame side, its centre within LARGE_JITTER of the frame's."""
    side = int(rng.integers(round(LARGE_SIDE[0] * size), round(LARGE_SIDE[1] * size) + 1))
    jitter = round(LARGE_JITTER * size)
    x, y = (min(max(size // 2 - side // 2 + int(d), 0), size - side) for d in rng.integers(-jitter, jitter + 1, 2))
    return x, y, x + side, y + side


def event_starts(rng: np.random.Generator, durations: np.ndarray, num_frames: int, gap: int) -> np.ndarray:
    """int64 (n,) start frames for events of these durations (n,), shown in the given order, with >= gap frames
    between consecutive ones and all inside [0, num_frames); the free frames are spread at random."""
    n = len(durations)
    slack = num_frames - int(durations.sum()) - gap * (n - 1)
    if slack < 0:
        raise ValueError(f"{n} events of {durations.tolist()} frames with gaps of {gap} do not fit {num_frames}")
    cuts = np.sort(rng.integers(0, slack + 1, n))
    return cuts + np.concatenate([[0], np.cumsum(durations[:-1] + gap)]).astype(np.int64)


def _render(spec: EventVideoSpec, objects, flashes, level: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (T, H, W, 3): the grey background (textured when spec.background_noise), in the flashes' frames
    their colour with the same texture, with every object drawn in its frames, later ones over earlier ones."""
    size = spec.size
    noise = np.zeros((size, size, 1), np.int16)
    if spec.background_noise:
        noise = rng.integers(-spec.background_noise, spec.background_noise + 1, (size, size, 1), np.int16)
    frames = np.empty((spec.num_frames, size, size, 3), np.uint8)
    frames[:] = np.clip(level + noise, 0, 255).astype(np.uint8)
    for flash in flashes:
        frames[flash.start:flash.end] = np.clip(np.asarray(PALETTE[flash.color], np.int16) + noise, 0, 255)
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        frames[obj.start:obj.end, y0:y1, x0:x1][:, shape_mask(obj.shape, x1 - x0)] = PALETTE[obj.color]
    return frames


def make_event_video(index: int, spec: EventVideoSpec = EventVideoSpec()) -> EventVideo:
    """Clip number `index` (>= 0) of the spec's family, identical for the same (index, spec) (module doc)."""
    index = operator.index(index)
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([spec.seed, index, _STREAM])
    colors = [list(PALETTE)[i] for i in rng.choice(len(PALETTE), 2 + NUM_SINGLES, replace=False)]
    shapes = [SHAPES[i] for i in rng.integers(len(SHAPES), size=2 + NUM_SINGLES)]
    quadrants = rng.permutation(4)
    t_total = spec.num_frames
    persistent = SyntheticEvent(colors[0], shapes[0], 0, t_total, _box_in_quadrant(rng, spec.size, quadrants[0]))
    repeats = int(rng.integers(0, MAX_REPEATS + 1))
    who = [1] * repeats + list(range(2, 2 + NUM_SINGLES))
    who = [who[i] for i in rng.permutation(len(who))]
    durations = rng.integers(spec.min_event_frames, spec.max_event_frames + 1, len(who))
    starts = event_starts(rng, durations, t_total, spec.min_gap_frames)
    boxes = [_box_in_quadrant(rng, spec.size, quadrants[rng.integers(1, 4)]) for _ in who]
    if spec.event_size == "large":  # from a stream of their own: both sizes share every other random draw
        large_rng = np.random.default_rng([spec.seed, index, _LARGE_STREAM])
        boxes = [_large_box(large_rng, spec.size) for _ in who]
    events = tuple(SyntheticEvent(colors[k], shapes[k], int(s), int(s + d), box)
                   for k, s, d, box in zip(who, starts, durations, boxes))
    level = int(rng.integers(25, 70))
    flashes = _flashes(spec, index, colors)
    if not spec.show_persistent:  # drawn from the same random draws, then left out
        persistent = None
    frames = _render(spec, (*events, *([persistent] if persistent else [])), flashes, level, rng)
    return EventVideo(index, spec, frames, persistent, events, (colors[1], shapes[1]), level, flashes)


def _flashes(spec: EventVideoSpec, index: int, used_colors) -> tuple[SyntheticEvent, ...]:
    """1..spec.max_flashes full-frame flashes of one colour no object has, from their own random stream."""
    if not spec.max_flashes:
        return ()
    rng = np.random.default_rng([spec.seed, index, _FLASH_STREAM])
    unused = [c for c in PALETTE if c not in used_colors]
    color = unused[rng.integers(len(unused))]
    n = int(rng.integers(1, spec.max_flashes + 1))
    starts = event_starts(rng, np.full(n, spec.flash_frames), spec.num_frames, spec.min_gap_frames)
    box = (0, 0, spec.size, spec.size)
    return tuple(SyntheticEvent(color, "square", int(s), int(s) + spec.flash_frames, box) for s in starts)
