"""Video question/answer records (JSONL files) and two embedded synthetic multiple-choice benchmarks.

One record per line, a JSON object:
    {"id": "...", "video": "clips/a.mp4" | "synthetic:<seed>:<index>", "start": 1.5, "end": 9.0,
     "question": "...", "options": ["red", "blue", ...], "answer": "B", "task": "color",
     "synthetic": {spec fields}, "evidence": [[3, 4], [9, 10, 11]],
     "conversations": [{"from": "human", "value": "..."}, ...]}
start/end (seconds, both or neither), options, synthetic, evidence and conversations are optional. With options
(2..26) the answer is the letter of the right option; without, it is free text. `conversations` (LLaVA-style
turns) replaces question/answer. `synthetic` holds the fields of a SyntheticVideoSpec, or of an EventVideoSpec
when it has "kind": "events". `evidence` lists groups of frame indices of the whole clip (each group sorted,
start/end do not shift them): the question can be answered from a set of sampled frames iff every group has a
frame in it (liteframe_jax.data.evidence); [] means there is nothing to see.

Two synthetic benchmarks, every answer known and checkable against the pixels (benchmark name -> spec class in
SYNTHETIC_BENCHMARKS, build either with `build_synthetic_benchmark` / `synthetic_splits`):
  "shapes"  `make_synthetic_video` clips (16 frames by default), tasks color, shape, motion, count, order;
  "events"  `make_event_video` long clips (128 frames by default) with brief, sparse events, tasks event_count
            ("How many times does the red square appear?", 0..3), event_order (which of three one-off objects
            appears first), event_presence (which of four objects appears at all; three are absent), flash_color
            (the colour of the brief full-screen flashes) and flash_count (how many flashes, 1..4), and the
            static persistent_color / persistent_shape questions about the object visible in every frame.

Evidence groups are chosen for a reader that takes the sampled frames at face value (what no sampled frame shows
did not happen): it answers right exactly when every group is hit.
  color, shape, persistent_*, event_presence: one group, the frames where the asked-about object is visible;
  flash_color: one group, the frames of all flashes (any one shows the colour);
  count: one group per object (its visible frames);
  event_count: one group per appearance, plus one per gap between two appearances (the frames between them:
      without a sampled frame there, two appearances look like one); no groups when the answer is 0;
  flash_count: the same groups for the flashes;
  order, event_order: one group, the frames where the first object is visible before any other option's object
      has appeared (absent options need no frames);
  motion: two groups, the early and the late half of the object's visible frames, split between two different
      positions (two sampled frames, one from each, show the direction, or no motion).
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import os
import string
from collections import defaultdict

import numpy as np

from liteframe_jax.files import atomic_write_text
from liteframe_jax.data.synthetic import (MOTIONS, PALETTE, SHAPES, SyntheticVideo, SyntheticVideoSpec,
                                          make_synthetic_video)
from liteframe_jax.data.synthetic_events import (KIND as EVENTS_KIND, MAX_FLASHES, MAX_REPEATS, EventVideo,
                                                 EventVideoSpec, make_event_video)

LETTERS = string.ascii_uppercase
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
QUESTION_TEMPLATES = {
    "color": "What colour is the {shape}?",
    "shape": "What shape is the {color} object?",
    "motion": "In which direction does the {color} {shape} move?",
    "count": "How many objects appear in the video?",
    "order": "Which object appears first?",
}
MOTION_ANSWERS = {"left": "left", "right": "right", "up": "up", "down": "down", "static": "not moving"}
EVENT_QUESTION_TEMPLATES = {
    "event_count": "How many times does {object} appear?",
    "event_order": "Which of these appears first?",
    "event_presence": "Which of these appears in the video?",
    "flash_color": "What colour does the screen flash?",
    "flash_count": "How many times does the screen flash?",
    "persistent_color": "What colour is the {shape} that is always visible?",
    "persistent_shape": "What shape is the {color} object that is always visible?",
}
TEST_INDEX_OFFSET = 1 << 20  # test videos are indices TEST_INDEX_OFFSET + i, so train/test sizes never interact
NUM_OPTIONS = 4

SYNTHETIC_BENCHMARKS = {"shapes": SyntheticVideoSpec, EVENTS_KIND: EventVideoSpec}
SYNTHETIC_TASKS = {"shapes": tuple(QUESTION_TEMPLATES), EVENTS_KIND: tuple(EVENT_QUESTION_TEMPLATES)}

_SYNTHETIC_PREFIX = "synthetic:"
_TURN_ROLES = ("human", "gpt")


# -------------------------------------------------------------------------------------------------- records

def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_synthetic_id(video: str) -> tuple[int, int]:
    """(seed, index) of a "synthetic:<seed>:<index>" video id; ValueError for anything else."""
    parts = video.split(":")
    if len(parts) != 3 or parts[0] + ":" != _SYNTHETIC_PREFIX or not (parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(f"not a synthetic video id (want 'synthetic:<seed>:<index>'): {video!r}")
    return int(parts[1]), int(parts[2])


def _check_spec_dict(synthetic: dict) -> SyntheticVideoSpec | EventVideoSpec:
    """The spec of a record's `synthetic` dict: an EventVideoSpec when kind is "events", else a
    SyntheticVideoSpec (which has no kind field)."""
    _require(isinstance(synthetic, dict), f"synthetic must be an object, got {type(synthetic).__name__}")
    kind = synthetic.get("kind")
    _require(kind in (None, EVENTS_KIND), f"synthetic.kind must be {EVENTS_KIND!r} or absent, got {kind!r}")
    cls = SyntheticVideoSpec if kind is None else EventVideoSpec
    unknown = set(synthetic) - {f.name for f in dataclasses.fields(cls)}
    _require(not unknown, f"synthetic has unknown fields {sorted(unknown)}")
    for key, value in synthetic.items():
        if key == "fps":
            _require(_is_number(value), f"synthetic.fps must be a number, got {value!r}")
        elif key == "event_size":
            _require(isinstance(value, str), f"synthetic.event_size must be a string, got {value!r}")
        elif key == "show_persistent":
            _require(isinstance(value, bool), f"synthetic.show_persistent must be true or false, got {value!r}")
        elif key != "kind":
            _require(isinstance(value, int) and not isinstance(value, bool),
                     f"synthetic.{key} must be an integer, got {value!r}")
    return cls(**synthetic)


def _frame_index(x) -> int | None:
    """x as a frame index (int >= 0; numpy integers too, bools not), or None."""
    if isinstance(x, bool):
        return None
    try:
        i = operator.index(x)
    except TypeError:
        return None
    return i if i >= 0 else None


def _checked_evidence(evidence, num_frames: int | None) -> tuple[tuple[int, ...], ...]:
    """evidence as a tuple of groups, each a non-empty strictly increasing tuple of frame indices (< num_frames
    when known); ValueError otherwise."""
    _require(isinstance(evidence, (list, tuple)), f"evidence must be a list of frame-index lists, got {evidence!r}")
    groups = []
    for k, group in enumerate(evidence):
        _require(isinstance(group, (list, tuple)) and len(group) > 0,
                 f"evidence[{k}] must be a non-empty list of frame indices, got {group!r}")
        frames = [_frame_index(x) for x in group]
        _require(None not in frames, f"evidence[{k}] must hold integer frame indices >= 0, got {list(group)!r}")
        _require(all(a < b for a, b in zip(frames, frames[1:])), f"evidence[{k}] must be sorted without repeats")
        _require(num_frames is None or frames[-1] < num_frames,
                 f"evidence[{k}] has frame {frames[-1]}, but the clip has {num_frames} frames")
        groups.append(tuple(frames))
    return tuple(groups)


@dataclasses.dataclass(frozen=True)
class QARecord:
    """One question about one video (see the module docstring for the fields); validated on construction,
    ValueError names the bad field. options, conversations and evidence are stored as tuples; evidence frames are
    checked against the clip's frame count when the record has a `synthetic` spec."""

    video: str
    question: str = ""
    answer: str = ""
    options: tuple[str, ...] = ()
    task: str = ""
    id: str = ""
    start: float | None = None
    end: float | None = None
    synthetic: dict | None = None
    conversations: tuple[dict, ...] | None = None
    evidence: tuple[tuple[int, ...], ...] | None = None

    def __post_init__(self):
        _require(isinstance(self.video, str) and self.video != "", f"video must be a non-empty string, "
                                                                   f"got {self.video!r}")
        for name in ("question", "answer", "task", "id"):
            value = getattr(self, name)
            _require(isinstance(value, str), f"{name} must be a string, got {type(value).__name__}")
        _require(isinstance(self.options, (list, tuple)), f"options must be a list, got {self.options!r}")
        object.__setattr__(self, "options", tuple(self.options))
        _require(all(isinstance(o, str) and o.strip() for o in self.options), "options must be non-empty strings")
        _require(not self.options or 2 <= len(self.options) <= len(LETTERS),
                 f"need 2..{len(LETTERS)} options (or none), got {len(self.options)}")
        self._check_time()
        self._check_qa()
        num_frames = None
        if self.synthetic is not None:
            spec = _check_spec_dict(self.synthetic)
            seed, _ = parse_synthetic_id(self.video)
            _require(seed == spec.seed, f"video id seed {seed} differs from synthetic.seed {spec.seed}")
            num_frames = spec.num_frames
        if self.evidence is not None:
            object.__setattr__(self, "evidence", _checked_evidence(self.evidence, num_frames))

    def _check_time(self):
        _require((self.start is None) == (self.end is None), "give both start and end, or neither")
        if self.start is not None:
            _require(_is_number(self.start) and _is_number(self.end), "start and end must be numbers (seconds)")
            _require(0 <= self.start <= self.end, f"need 0 <= start <= end, got start={self.start}, end={self.end}")

    def _check_qa(self):
        if self.conversations is None:
            _require(self.question.strip() != "", "question is missing or empty")
            _require(self.answer.strip() != "", "answer is missing or empty")
            if self.options:
                valid = LETTERS[:len(self.options)]
                _require(len(self.answer) == 1 and self.answer in valid,
                         f"answer must be one of the option letters {valid[0]}..{valid[-1]}, got {self.answer!r}")
            return
        _require(not (self.question or self.answer or self.options),
                 "give either question/answer/options or conversations, not both")
        turns = self.conversations
        _require(isinstance(turns, (list, tuple)) and len(turns) >= 2 and len(turns) % 2 == 0,
                 "conversations must be a list of human/gpt turn pairs")
        for i, turn in enumerate(turns):
            _require(isinstance(turn, dict) and set(turn) == {"from", "value"},
                     f"conversations[{i}] must be an object with exactly 'from' and 'value'")
            _require(turn["from"] == _TURN_ROLES[i % 2],
                     f"conversations[{i}].from must be {_TURN_ROLES[i % 2]!r}, got {turn['from']!r}")
            _require(isinstance(turn["value"], str) and turn["value"].strip() != "",
                     f"conversations[{i}].value must be a non-empty string")
        object.__setattr__(self, "conversations", tuple(dict(t) for t in turns))

    @property
    def is_multiple_choice(self) -> bool:
        return bool(self.options)

    def turns(self) -> list[tuple[str, str]]:
        """(user text, assistant text) pairs: the conversations, or the formatted question and its answer."""
        if self.conversations is not None:
            c = self.conversations
            return [(c[i]["value"], c[i + 1]["value"]) for i in range(0, len(c), 2)]
        user = format_multiple_choice(self.question, self.options) if self.options else self.question
        return [(user, self.answer)]

    def to_dict(self) -> dict:
        """JSON-ready dict; optional fields appear only when set."""
        d = {"id": self.id, "video": self.video}
        if self.start is not None:
            d.update(start=self.start, end=self.end)
        if self.conversations is None:
            d.update(question=self.question, options=list(self.options), answer=self.answer)
        else:
            d["conversations"] = [dict(t) for t in self.conversations]
        d["task"] = self.task
        if self.synthetic is not None:
            d["synthetic"] = dict(self.synthetic)
        if self.evidence is not None:
            d["evidence"] = [list(group) for group in self.evidence]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> QARecord:
        """The record of a JSON object; fields this class does not know (benchmark files carry e.g. duration or
        domain) are ignored."""
        _require(isinstance(d, dict), f"a record must be a JSON object, got {type(d).__name__}")
        _require("video" in d, "video is missing")
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    @classmethod
    def from_json(cls, text: str) -> QARecord:
        return cls.from_dict(json.loads(text))


def read_records(path: str | os.PathLike) -> tuple[list[QARecord], list[tuple[int, str]]]:
    """Records of a JSONL file, and (1-based line number, reason) for each skipped malformed line.
    Blank lines are ignored; a repeated non-empty id is reported as malformed (the first one is kept)."""
    numbered, errors = read_numbered_records(path)
    return [record for _, record in numbered], errors


def read_numbered_records(path: str | os.PathLike) -> tuple[list[tuple[int, QARecord]], list[tuple[int, str]]]:
    """As read_records, each record with its 1-based line number."""
    records, errors, seen = [], [], {}
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                errors.append((number, f"not valid UTF-8 ({e.reason} at byte {e.start} of the line)"))
                continue
            if not line.strip():
                continue
            try:
                record = QARecord.from_json(line.strip())
            except json.JSONDecodeError as e:
                errors.append((number, f"invalid JSON: {e.msg} (column {e.colno})"))
                continue
            except (ValueError, TypeError) as e:
                errors.append((number, str(e)))
                continue
            if record.id and record.id in seen:
                errors.append((number, f"duplicate id {record.id!r} (first on line {seen[record.id]})"))
                continue
            seen[record.id] = number
            records.append((number, record))
    return records, errors


def write_records(path: str | os.PathLike, records) -> None:
    """Write records as JSONL (UTF-8) atomically: a temporary file in the same folder, then a rename."""
    atomic_write_text(path, "".join(record.to_json() + "\n" for record in records))


def format_multiple_choice(question: str, options) -> str:
    """question, one "A. text" line per option, then the answer-with-the-letter instruction (Video-MME style)."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"need 2..{len(LETTERS)} options, got {len(options)}")
    lines = [question] + [f"{letter}. {option}" for letter, option in zip(LETTERS, options)] + [MC_INSTRUCTION]
    return "\n".join(lines)


def chance_level(records) -> dict[str, float]:
    """Expected accuracy of uniform guessing, per task and "overall": the mean of 1/len(options) over the
    multiple-choice records (open questions are left out)."""
    per_task = defaultdict(list)
    for r in records:
        if r.options:
            per_task[r.task].append(1.0 / len(r.options))
    out = {task: float(np.mean(v)) for task, v in sorted(per_task.items())}
    if per_task:
        out["overall"] = float(np.mean([x for v in per_task.values() for x in v]))
    return out


# ---------------------------------------------------------------------------------------- synthetic benchmark

def describe(color: str, shape: str) -> str:
    """How options and questions name an object: "the red square"."""
    return f"the {color} {shape}"


def _observed_motion(boxes) -> str | None:
    """Direction read from the first and last visible box: a MOTIONS name, or None when it cannot be seen
    (fewer than two visible frames) or is diagonal."""
    visible = [b for b in boxes if b is not None]
    if len(visible) < 2:
        return None
    dx, dy = visible[-1][0] - visible[0][0], visible[-1][1] - visible[0][1]
    if dx and dy:
        return None
    if dx:
        return "right" if dx > 0 else "left"
    if dy:
        return "down" if dy > 0 else "up"
    return "static"


def _choice_record(video: SyntheticVideo | EventVideo, task: str, question: str, answer: str, distractors,
                   rng: np.random.Generator, evidence=None) -> QARecord:
    """Multiple-choice record: the answer plus up to NUM_OPTIONS - 1 distractors, shuffled."""
    picked = [d for d in distractors if d != answer]
    picked = [picked[i] for i in rng.permutation(len(picked))[:NUM_OPTIONS - 1]]
    options = [answer] + picked
    options = [options[i] for i in rng.permutation(len(options))]
    return QARecord(video=video.video_id, question=question, options=tuple(options),
                    answer=LETTERS[options.index(answer)], task=task, id=f"{video.video_id}:{task}",
                    synthetic=dataclasses.asdict(video.spec), evidence=evidence)


# ------------------------------------------------------------------------------------------ evidence groups

def _visible_frames(boxes) -> list[int]:
    return [t for t, b in enumerate(boxes) if b is not None]


def _first_evidence(first_frames, other_starts) -> list[list[int]]:
    """The one group of an order question: the first object's frames before any other option's object shows."""
    until = min(other_starts, default=math.inf)
    return [[t for t in first_frames if t < until]]


def _motion_evidence(boxes) -> list[list[int]]:
    """Two groups, the early and late halves of the visible frames, split where the box changes when it moves
    (so a frame from each shows two different positions); a static object is split in the middle."""
    visible = _visible_frames(boxes)
    changes = [k for k in range(1, len(visible)) if boxes[visible[k]] != boxes[visible[k - 1]]]
    split = changes[(len(changes) - 1) // 2] if changes else len(visible) // 2
    return [visible[:split], visible[split:]]


def _count_evidence(appearances) -> list[list[int]]:
    """One group per appearance and one per gap between consecutive appearances (events in time order)."""
    groups = [e.frames for e in appearances]
    groups += [list(range(a.end, b.start)) for a, b in zip(appearances, appearances[1:])]
    return groups


# ---------------------------------------------------------------------------------------- shapes benchmark

def synthetic_questions(video: SyntheticVideo, rng: np.random.Generator) -> list[QARecord]:
    """Multiple-choice questions with known answers about one synthetic video, at most one per task:
    color (the shape must be unique in the video), shape, motion (as seen in the boxes), count and order (the
    first appear frame must be unique). Subject objects are chosen with rng, options shuffled with rng; every
    record carries its evidence groups (module doc)."""
    objects = list(video.objects)
    if not objects:
        return []
    records = []
    shape_counts = {s: sum(o.shape == s for o in objects) for s in SHAPES}
    unique_shape = [o for o in objects if shape_counts[o.shape] == 1]
    if unique_shape:
        o = unique_shape[rng.integers(len(unique_shape))]
        records.append(_choice_record(video, "color", QUESTION_TEMPLATES["color"].format(shape=o.shape), o.color,
                                      list(PALETTE), rng, [_visible_frames(o.boxes)]))
    o = objects[rng.integers(len(objects))]
    records.append(_choice_record(video, "shape", QUESTION_TEMPLATES["shape"].format(color=o.color), o.shape,
                                  list(SHAPES), rng, [_visible_frames(o.boxes)]))
    # a motion label can be invisible (an object shown in one frame has none), so ask only when the boxes show it
    movers = [o for o in objects if _observed_motion(o.boxes) == o.motion]
    if movers:
        o = movers[rng.integers(len(movers))]
        question = QUESTION_TEMPLATES["motion"].format(color=o.color, shape=o.shape)
        records.append(_choice_record(video, "motion", question, MOTION_ANSWERS[o.motion],
                                      [MOTION_ANSWERS[m] for m in MOTIONS], rng, _motion_evidence(o.boxes)))
    n = len(objects)
    low = int(rng.integers(max(1, n - NUM_OPTIONS + 1), n + 1))
    records.append(_choice_record(video, "count", QUESTION_TEMPLATES["count"], str(n),
                                  [str(k) for k in range(low, low + NUM_OPTIONS)], rng,
                                  [_visible_frames(o.boxes) for o in objects]))
    appears = sorted(o.appear_frame for o in objects)
    if n >= 2 and appears[0] < appears[1]:
        first = min(objects, key=lambda o: o.appear_frame)
        others = [o for o in objects if o is not first]
        unused = [c for c in PALETTE if c not in {o.color for o in objects}]
        # objects that are not in the video at all (unused colours) fill up the options when there are few objects
        absent = [describe(unused[i], SHAPES[rng.integers(len(SHAPES))])
                  for i in rng.permutation(len(unused))[:max(0, NUM_OPTIONS - n)]]
        real = [others[i] for i in rng.permutation(len(others))[:NUM_OPTIONS - 1]]
        evidence = _first_evidence(_visible_frames(first.boxes), [o.appear_frame for o in real])
        real = [describe(o.color, o.shape) for o in real]
        records.append(_choice_record(video, "order", QUESTION_TEMPLATES["order"],
                                      describe(first.color, first.shape), real + absent[:NUM_OPTIONS - 1 - len(real)],
                                      rng, evidence))
    return records


# ---------------------------------------------------------------------------------------- events benchmark

def unused_colors(video: EventVideo) -> list[str]:
    """The palette colours (in palette order) that nothing in the events clip has: no object, brief or
    persistent (when drawn), no flash, and not the repeated object's (asked about even when it appears 0 times).
    Absent options are drawn from them, so exactly one option is right."""
    used = {*([video.persistent.color] if video.persistent else []), video.repeated[0],
            *(e.color for e in video.singles), *(f.color for f in video.flashes)}
    return [c for c in PALETTE if c not in used]


def event_questions(video: EventVideo, rng: np.random.Generator) -> list[QARecord]:
    """Multiple-choice questions about one events clip (module doc), one per task, with their evidence:
    event_count about the repeated object (options 0..3), event_order over the one-off objects plus one absent
    object, event_presence with one one-off object and three absent ones, persistent_color and persistent_shape
    (when the clip shows its persistent object),
    and when the clip has flashes flash_color (against absent and one-off colours) and flash_count (1..4).
    Absent objects have colours nothing in the clip has, so exactly one option is right."""
    persistent, singles, t_total = video.persistent, video.singles, video.spec.num_frames
    flashes = video.flashes
    unused = unused_colors(video)
    absent = [describe(unused[i], SHAPES[rng.integers(len(SHAPES))]) for i in rng.permutation(len(unused))]
    records = []

    color, shape = video.repeated
    appearances = video.appearances(color)
    question = EVENT_QUESTION_TEMPLATES["event_count"].format(object=describe(color, shape))
    records.append(_choice_record(video, "event_count", question, str(len(appearances)),
                                  [str(k) for k in range(MAX_REPEATS + 1)], rng, _count_evidence(appearances)))

    first = singles[0]
    evidence = _first_evidence(first.frames, [e.start for e in singles[1:]])
    records.append(_choice_record(video, "event_order", EVENT_QUESTION_TEMPLATES["event_order"],
                                  describe(first.color, first.shape),
                                  [describe(e.color, e.shape) for e in singles[1:]] + absent[:1], rng, evidence))

    present = singles[rng.integers(len(singles))]
    records.append(_choice_record(video, "event_presence", EVENT_QUESTION_TEMPLATES["event_presence"],
                                  describe(present.color, present.shape), absent, rng, [present.frames]))

    if persistent is not None:
        everywhere = [list(range(t_total))]
        question = EVENT_QUESTION_TEMPLATES["persistent_color"].format(shape=persistent.shape)
        records.append(_choice_record(video, "persistent_color", question, persistent.color, list(PALETTE), rng,
                                      everywhere))
        question = EVENT_QUESTION_TEMPLATES["persistent_shape"].format(color=persistent.color)
        records.append(_choice_record(video, "persistent_shape", question, persistent.shape, list(SHAPES), rng,
                                      everywhere))
    if flashes:
        color = flashes[0].color
        records.append(_choice_record(video, "flash_color", EVENT_QUESTION_TEMPLATES["flash_color"], color,
                                      unused + [e.color for e in singles], rng,
                                      [sorted(t for f in flashes for t in f.frames)]))
        records.append(_choice_record(video, "flash_count", EVENT_QUESTION_TEMPLATES["flash_count"],
                                      str(len(flashes)), [str(k) for k in range(1, MAX_FLASHES + 1)], rng,
                                      _count_evidence(flashes)))
    return records


# ----------------------------------------------------------------------------------------- either benchmark

def synthetic_spec(benchmark: str = "shapes", **fields) -> SyntheticVideoSpec | EventVideoSpec:
    """The spec of a named synthetic benchmark ("shapes" or "events"), its defaults overridden by `fields`
    (e.g. num_frames=128, size=112, seed=0); ValueError for an unknown name or bad values."""
    if benchmark not in SYNTHETIC_BENCHMARKS:
        raise ValueError(f"unknown synthetic benchmark {benchmark!r}; choose from {sorted(SYNTHETIC_BENCHMARKS)}")
    return SYNTHETIC_BENCHMARKS[benchmark](**fields)


def render_synthetic(index: int, spec: SyntheticVideoSpec | EventVideoSpec) -> SyntheticVideo | EventVideo:
    """Clip number `index` of the spec's family, of the spec's kind."""
    return make_event_video(index, spec) if isinstance(spec, EventVideoSpec) else make_synthetic_video(index, spec)


def build_synthetic_benchmark(spec: SyntheticVideoSpec | EventVideoSpec, num_videos: int, seed: int = 0,
                              first_index: int = 0) -> list[QARecord]:
    """Questions about videos first_index .. first_index + num_videos - 1 of the spec's family (the shapes or
    the events benchmark, by the spec's type). Each video's questions depend only on (seed, spec.seed, index),
    so ranges can be built separately and concatenated."""
    if num_videos < 0 or first_index < 0:
        raise ValueError(f"need num_videos >= 0 and first_index >= 0, got {num_videos}, {first_index}")
    questions = event_questions if isinstance(spec, EventVideoSpec) else synthetic_questions
    records = []
    for index in range(first_index, first_index + num_videos):
        rng = np.random.default_rng([seed, spec.seed, index])
        records += questions(render_synthetic(index, spec), rng)
    return records


PERSISTENT_TASKS = ("persistent_color", "persistent_shape")


def synthetic_splits(spec: SyntheticVideoSpec | EventVideoSpec, train_videos: int, test_videos: int,
                     seed: int = 0, separate_persistent: bool = False) -> tuple[list[QARecord], list[QARecord]]:
    """(train, test) records on disjoint videos: train uses indices 0.., test TEST_INDEX_OFFSET.., so each
    split stays the same when the other one's size changes. The spec's type picks the benchmark; see
    `synthetic_spec` for choosing it by name.

    separate_persistent (events benchmark): the train split asks its event and flash questions about its clips
    drawn without the persistent object (`show_persistent=False`) and its persistent questions about the same
    clips with it; the test split is unchanged. The persistent object is the most visible object of a clip and
    never the answer of an event question: trained on both in one clip, a small model learns to push the clip's
    visible colours down before it can tell the brief objects from it (README, "The method at toy scale")."""
    if train_videos > TEST_INDEX_OFFSET:
        raise ValueError(f"train_videos must be <= {TEST_INDEX_OFFSET}, got {train_videos}")
    train = build_synthetic_benchmark(spec, train_videos, seed)
    if separate_persistent:
        if not isinstance(spec, EventVideoSpec) or not spec.show_persistent:
            raise ValueError("separate_persistent needs an events spec that shows the persistent object")
        hidden = build_synthetic_benchmark(dataclasses.replace(spec, show_persistent=False), train_videos, seed)
        train = hidden + [r for r in train if r.task in PERSISTENT_TASKS]
    return train, build_synthetic_benchmark(spec, test_videos, seed, first_index=TEST_INDEX_OFFSET)


def synthetic_spec_of(record: QARecord) -> SyntheticVideoSpec | EventVideoSpec:
    """The spec a synthetic record's clip is rendered with: its `synthetic` dict, or the default shapes spec
    with the id's seed when it has none. ValueError for a record that is not synthetic."""
    seed, _ = parse_synthetic_id(record.video)
    return _check_spec_dict(record.synthetic) if record.synthetic is not None else SyntheticVideoSpec(seed=seed)


def synthetic_video_for(record: QARecord) -> SyntheticVideo | EventVideo:
    """Re-render the video of a synthetic record from its id and `synthetic` spec (the default spec with the
    id's seed when the record has none)."""
    _, index = parse_synthetic_id(record.video)
    return render_synthetic(index, synthetic_spec_of(record))
