"""Video question/answer records (JSONL files) and an embedded synthetic multiple-choice benchmark.

One record per line, a JSON object:
    {"id": "...", "video": "clips/a.mp4" | "synthetic:<seed>:<index>", "start": 1.5, "end": 9.0,
     "question": "...", "options": ["red", "blue", ...], "answer": "B", "task": "color",
     "synthetic": {SyntheticVideoSpec fields}, "conversations": [{"from": "human", "value": "..."}, ...]}
start/end (seconds, both or neither), options, synthetic and conversations are optional. With options (2..26)
the answer is the letter of the right option; without, it is free text. `conversations` (LLaVA-style turns)
replaces question/answer.

The synthetic benchmark asks about the recorded attributes of `make_synthetic_video` clips (colour, shape,
motion, count, order), so every answer is known and can be checked against the pixels.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import string
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from liteframe_jax.data.synthetic import (MOTIONS, PALETTE, SHAPES, SyntheticVideo, SyntheticVideoSpec,
                                          make_synthetic_video)

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
TEST_INDEX_OFFSET = 1 << 20  # test videos are indices TEST_INDEX_OFFSET + i, so train/test sizes never interact
NUM_OPTIONS = 4

_SYNTHETIC_PREFIX = "synthetic:"
_SPEC_FIELDS = {f.name: f.type for f in dataclasses.fields(SyntheticVideoSpec)}
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


def _check_spec_dict(synthetic: dict) -> SyntheticVideoSpec:
    _require(isinstance(synthetic, dict), f"synthetic must be an object, got {type(synthetic).__name__}")
    unknown = set(synthetic) - set(_SPEC_FIELDS)
    _require(not unknown, f"synthetic has unknown fields {sorted(unknown)}")
    for key, value in synthetic.items():
        if key == "fps":
            _require(_is_number(value), f"synthetic.fps must be a number, got {value!r}")
        else:
            _require(isinstance(value, int) and not isinstance(value, bool),
                     f"synthetic.{key} must be an integer, got {value!r}")
    return SyntheticVideoSpec(**synthetic)


@dataclasses.dataclass(frozen=True)
class QARecord:
    """One question about one video (see the module docstring for the fields); validated on construction,
    ValueError names the bad field. options and conversations are stored as tuples."""

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
        if self.synthetic is not None:
            spec = _check_spec_dict(self.synthetic)
            seed, _ = parse_synthetic_id(self.video)
            _require(seed == spec.seed, f"video id seed {seed} differs from synthetic.seed {spec.seed}")

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
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> QARecord:
        _require(isinstance(d, dict), f"a record must be a JSON object, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        _require(not unknown, f"unknown fields {sorted(unknown)}")
        _require("video" in d, "video is missing")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> QARecord:
        return cls.from_dict(json.loads(text))


def read_records(path: str | os.PathLike) -> tuple[list[QARecord], list[tuple[int, str]]]:
    """Records of a JSONL file, and (1-based line number, reason) for each skipped malformed line.
    Blank lines are ignored; a repeated non-empty id is reported as malformed (the first one is kept)."""
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
            records.append(record)
    return records, errors


def write_records(path: str | os.PathLike, records) -> None:
    """Write records as JSONL (UTF-8) atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for record in records:
                f.write(record.to_json() + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _choice_record(video: SyntheticVideo, task: str, question: str, answer: str, distractors,
                   rng: np.random.Generator) -> QARecord:
    """Multiple-choice record: the answer plus up to NUM_OPTIONS - 1 distractors, shuffled."""
    picked = [d for d in distractors if d != answer]
    picked = [picked[i] for i in rng.permutation(len(picked))[:NUM_OPTIONS - 1]]
    options = [answer] + picked
    options = [options[i] for i in rng.permutation(len(options))]
    return QARecord(video=video.video_id, question=question, options=tuple(options),
                    answer=LETTERS[options.index(answer)], task=task, id=f"{video.video_id}:{task}",
                    synthetic=dataclasses.asdict(video.spec))


def synthetic_questions(video: SyntheticVideo, rng: np.random.Generator) -> list[QARecord]:
    """Multiple-choice questions with known answers about one synthetic video, at most one per task:
    color (the shape must be unique in the video), shape, motion (as seen in the boxes), count and order (the
    first appear frame must be unique). Subject objects are chosen with rng, options shuffled with rng."""
    objects = list(video.objects)
    if not objects:
        return []
    records = []
    shape_counts = {s: sum(o.shape == s for o in objects) for s in SHAPES}
    unique_shape = [o for o in objects if shape_counts[o.shape] == 1]
    if unique_shape:
        o = unique_shape[rng.integers(len(unique_shape))]
        records.append(_choice_record(video, "color", QUESTION_TEMPLATES["color"].format(shape=o.shape), o.color,
                                      list(PALETTE), rng))
    o = objects[rng.integers(len(objects))]
    records.append(_choice_record(video, "shape", QUESTION_TEMPLATES["shape"].format(color=o.color), o.shape,
                                  list(SHAPES), rng))
    # a motion label can be invisible (an object shown in one frame has none), so ask only when the boxes show it
    movers = [o for o in objects if _observed_motion(o.boxes) == o.motion]
    if movers:
        o = movers[rng.integers(len(movers))]
        question = QUESTION_TEMPLATES["motion"].format(color=o.color, shape=o.shape)
        records.append(_choice_record(video, "motion", question, MOTION_ANSWERS[o.motion],
                                      [MOTION_ANSWERS[m] for m in MOTIONS], rng))
    n = len(objects)
    low = int(rng.integers(max(1, n - NUM_OPTIONS + 1), n + 1))
    records.append(_choice_record(video, "count", QUESTION_TEMPLATES["count"], str(n),
                                  [str(k) for k in range(low, low + NUM_OPTIONS)], rng))
    appears = sorted(o.appear_frame for o in objects)
    if n >= 2 and appears[0] < appears[1]:
        first = min(objects, key=lambda o: o.appear_frame)
        others = [describe(o.color, o.shape) for o in objects if o is not first]
        unused = [c for c in PALETTE if c not in {o.color for o in objects}]
        # objects that are not in the video at all (unused colours) fill up the options when there are few objects
        absent = [describe(unused[i], SHAPES[rng.integers(len(SHAPES))])
                  for i in rng.permutation(len(unused))[:max(0, NUM_OPTIONS - n)]]
        real = [others[i] for i in rng.permutation(len(others))[:NUM_OPTIONS - 1]]
        records.append(_choice_record(video, "order", QUESTION_TEMPLATES["order"],
                                      describe(first.color, first.shape), real + absent[:NUM_OPTIONS - 1 - len(real)],
                                      rng))
    return records


def build_synthetic_benchmark(spec: SyntheticVideoSpec, num_videos: int, seed: int = 0,
                              first_index: int = 0) -> list[QARecord]:
    """Questions about videos first_index .. first_index + num_videos - 1 of the spec's family. Each video's
    questions depend only on (seed, spec.seed, index), so ranges can be built separately and concatenated."""
    if num_videos < 0 or first_index < 0:
        raise ValueError(f"need num_videos >= 0 and first_index >= 0, got {num_videos}, {first_index}")
    records = []
    for index in range(first_index, first_index + num_videos):
        rng = np.random.default_rng([seed, spec.seed, index])
        records += synthetic_questions(make_synthetic_video(index, spec), rng)
    return records


def synthetic_splits(spec: SyntheticVideoSpec, train_videos: int, test_videos: int,
                     seed: int = 0) -> tuple[list[QARecord], list[QARecord]]:
    """(train, test) records on disjoint videos: train uses indices 0.., test TEST_INDEX_OFFSET.., so each
    split stays the same when the other one's size changes."""
    if train_videos > TEST_INDEX_OFFSET:
        raise ValueError(f"train_videos must be <= {TEST_INDEX_OFFSET}, got {train_videos}")
    return (build_synthetic_benchmark(spec, train_videos, seed),
            build_synthetic_benchmark(spec, test_videos, seed, first_index=TEST_INDEX_OFFSET))


def synthetic_video_for(record: QARecord) -> SyntheticVideo:
    """Re-render the video of a synthetic record from its id and `synthetic` spec (the default spec with the
    id's seed when the record has none)."""
    seed, index = parse_synthetic_id(record.video)
    spec = _check_spec_dict(record.synthetic) if record.synthetic is not None else SyntheticVideoSpec(seed=seed)
    return make_synthetic_video(index, spec)
