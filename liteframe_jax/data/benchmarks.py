"""Published video-QA benchmark files -> QARecords, with each benchmark's prompt, answer extraction and aggregate.

Formats (`FORMATS`; `detect_format` picks one from the file where that is unambiguous):
  videomme        Video-MME rows (parquet, needs pyarrow; or a JSON list / JSONL): videoID (or video_id), duration
                  (short/medium/long), domain, task_type, question, options ["A. ...", ...], answer letter.
                  Video: VIDEO_ROOT/{videoID}.mp4 (also data/, .MP4, .mkv).
  mlvu            MLVU per-task JSON (a file, or the folder of them): video, question, candidates, answer (the right
                  candidate's text), question_type. Video: VIDEO_ROOT/video or VIDEO_ROOT/<file stem>/video.
  longvideobench  lvb_val.json: id, video_path, question, candidates, correct_choice (0-based), duration_group,
                  question_category. Video: VIDEO_ROOT/video_path (also videos/).
  mvbench         MVBench per-task JSON (a file, or the folder of them; the task is the file stem): video,
                  question, candidates, answer text, optional start/end (seconds). Video: VIDEO_ROOT/video, or under
                  the task's source folder of the MVBench release (MVBENCH_FOLDERS), also below video/.
  egoschema       questions.json (q_uid, question, "option 0".."option 4") with subset_answers.json ({q_uid: index})
                  next to it; questions without a public answer are skipped. Video: VIDEO_ROOT/{q_uid}.mp4 (also
                  videos/).
  jsonl           our own QA records (liteframe_jax.data.video_qa), prompted and parsed as evaluate does by
                  default.

Each format's RULES entry holds, as data, the user text (`prompt`: the record -> text after the video prefix),
the answer extraction for generated replies (`parse`: reply, record -> letter or None) and the aggregate
(`aggregate`: rows -> {"name", "value", "groups"}), following lmms-eval's task files for that benchmark (README,
"Benchmark formats", says what was and was not confirmed). Records whose video file is not under the video root
are skipped before evaluation and reported with the paths tried.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable

from liteframe_jax.data.video_qa import LETTERS, QARecord, read_numbered_records

FORMATS = ("videomme", "mlvu", "longvideobench", "mvbench", "egoschema", "jsonl")
EGOSCHEMA_ANSWERS = "subset_answers.json"

LMMS_LETTER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video and the "
                        "subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
MLVU_INSTRUCTION = "Only give the best option."
MLVU_ANSWER_START = "Best option: ("
# prefixes lmms-eval removes from a reply before looking for the first letter (Video-MME, LongVideoBench)
ANSWER_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                   "The best option is", "The correct option is", "Best answer:", "Best option:")
# the folder of each MVBench task's videos in the MVBench release
MVBENCH_FOLDERS = {
    "object_interaction": "star/Charades_segment", "action_sequence": "star/Charades_segment",
    "action_prediction": "star/Charades_segment", "action_localization": "sta/sta_video_segment",
    "moving_count": "clevrer/video_validation", "fine_grained_pose": "nturgbd_convert",
    "character_order": "perception/videos", "object_shuffle": "perception/videos",
    "egocentric_navigation": "vlnqa", "moving_direction": "clevrer/video_validation",
    "episodic_reasoning": "tvqa/video_fps3_hq_segment", "fine_grained_action": "Moments_in_Time_Raw/videos",
    "scene_transition": "scene_qa/video", "state_change": "perception/videos",
    "moving_attribute": "clevrer/video_validation", "action_antonym": "ssv2_video_mp4",
    "unexpected_action": "FunQA_test/test", "counterfactual_inference": "clevrer/video_validation",
    "object_existence": "clevrer/video_validation", "action_count": "perception/videos",
}


# ------------------------------------------------------------------------------------------------ prompts

def _lettered(options, template: str = "{letter}. {option}") -> list[str]:
    return [template.format(letter=letter, option=option) for letter, option in zip(LETTERS, options)]


def videomme_prompt(record: QARecord) -> str:
    return "\n".join([VIDEOMME_INSTRUCTION, record.question, *_lettered(record.options), "",
                      LMMS_LETTER_INSTRUCTION])


def mlvu_prompt(record: QARecord) -> str:
    options = _lettered(record.options, "({letter}) {option}")
    question = "\n".join([f"Question: {record.question}", "Options:", *options])
    return f"\n{question}\n{MLVU_INSTRUCTION}\n\n{MLVU_ANSWER_START}"


def longvideobench_prompt(record: QARecord) -> str:
    return "\n".join([record.question, *_lettered(record.options), LMMS_LETTER_INSTRUCTION + "\n"])


def mvbench_prompt(record: QARecord) -> str:
    options = "".join(line + "\n" for line in _lettered(record.options))
    return f"Question:{record.question}\nOption:\n{options}{LMMS_LETTER_INSTRUCTION}"


def egoschema_prompt(record: QARecord) -> str:
    return "\n".join([record.question, *_lettered(record.options)]) + "\n" + LMMS_LETTER_INSTRUCTION


# ------------------------------------------------------------------------------------------------ answer extraction

def _valid(letter: str | None, record: QARecord) -> str | None:
    return letter if letter and letter in LETTERS[:len(record.options)] else None


def first_letter_parse(letters: str) -> Callable[[str, QARecord], str | None]:
    """lmms-eval's Video-MME / LongVideoBench extraction: drop the answer prefixes, then the first capital letter
    among `letters` anywhere in the reply (none when a reply of more than 10 words has none)."""
    pattern = re.compile(f"[{letters}]")

    def parse(reply: str, record: QARecord) -> str | None:
        s = (reply or "").strip()
        for prefix in ANSWER_PREFIXES:
            s = s.replace(prefix, "")
        match = pattern.search(s)
        return _valid(match.group(0) if match else None, record)
    return parse


def mlvu_parse(reply: str, record: QARecord) -> str | None:
    """lmms-eval's MLVU extraction: the character before the first ")" (the prompt ends in "("), else the reply."""
    s = (reply or "").strip()
    if ")" in s:
        i = s.index(")")
        s = s[i - 1:i] if i > 0 else ""
    return _valid(s, record)


_MV_OPTION = re.compile(r"^([A-E])\.\s*(.+)$", re.IGNORECASE)
_MV_LETTER = re.compile(r"\b([A-E])\b", re.IGNORECASE)
_MV_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
             "!")
_MV_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")
_MV_COMMA_NUMBER = re.compile(r"(\d)(,)(\d)")


def mvbench_parse(reply: str, record: QARecord) -> str | None:
    """lmms-eval's MVBench extraction: "X. text" gives X; otherwise punctuation is stripped (VQA style) and the
    first standalone letter A-E in either case is taken (so a reply starting "a ..." reads as A)."""
    s = (reply or "").strip()
    match = _MV_OPTION.match(s)
    if match:
        return _valid(match.group(1).upper(), record)
    s = s.replace("\n", " ").replace("\t", " ").strip()
    for p in _MV_PUNCT:
        spaced = p + " " in s or " " + p in s or _MV_COMMA_NUMBER.search(s) is not None
        s = s.replace(p, "" if spaced else " ")
    s = _MV_PERIOD.sub("", s).strip().strip("'\"").strip(")").strip("(").strip()
    match = _MV_LETTER.search(s)
    return _valid(match.group(1).upper() if match else None, record)


def egoschema_parse(reply: str, record: QARecord) -> str | None:
    """lmms-eval's EgoSchema generation scoring: the reply must equal a whole option line "A. text." (a final
    period added when missing), or its text after "A. " up to the next ". ", or the bare letter "A"."""
    s = (reply or "").strip()
    lines = [line if line.endswith(".") else line + "." for line in _lettered(record.options)]
    for candidates in (lines, [line.split(". ")[1] for line in lines], [line.split(". ")[0] for line in lines]):
        if s in candidates:
            return LETTERS[candidates.index(s)]
    return None


# ------------------------------------------------------------------------------------------------ aggregates

def _accuracy(rows) -> dict:
    correct = sum(r["correct"] for r in rows)
    return {"accuracy": correct / len(rows) if rows else None, "correct": correct, "total": len(rows)}


def _grouped(rows, keys) -> dict:
    groups = {}
    for key in keys:
        by_value = defaultdict(list)
        for r in rows:
            by_value[str(r["meta"].get(key, ""))].append(r)
        groups[key] = {value: _accuracy(v) for value, v in sorted(by_value.items())}
    return groups


def micro_aggregate(*keys: str, name: str = "accuracy"):
    """Accuracy over all questions, with accuracy per value of each meta key."""
    def aggregate(rows) -> dict:
        return {"name": name, "value": _accuracy(rows)["accuracy"], "groups": _grouped(rows, keys)}
    return aggregate


def macro_aggregate(key: str, *, answered_only: bool = False):
    """Mean over the values of meta[key] of their accuracy. answered_only: a generated reply that is empty is not
    counted (lmms-eval's MVBench counts only non-empty replies)."""
    def aggregate(rows) -> dict:
        if answered_only:
            rows = [r for r in rows if r.get("response", "x") != ""]
        groups = _grouped(rows, [key])
        values = [g["accuracy"] for g in groups[key].values()]
        return {"name": f"mean accuracy over {key} ({len(values)})",
                "value": sum(values) / len(values) if values else None, "groups": groups}
    return aggregate


@dataclasses.dataclass(frozen=True)
class BenchmarkRule:
    """prompt / parse None: evaluate_benchmark's own (our lettered question, `evaluate.parse_choice`)."""
    prompt: Callable[[QARecord], str] | None
    parse: Callable[[str, QARecord], str | None] | None
    aggregate: Callable[[list[dict]], dict]


RULES = {
    "videomme": BenchmarkRule(videomme_prompt, first_letter_parse("ABCD"),
                              micro_aggregate("duration", "domain", "task_type")),
    "mlvu": BenchmarkRule(mlvu_prompt, mlvu_parse, macro_aggregate("question_type")),
    "longvideobench": BenchmarkRule(longvideobench_prompt, first_letter_parse("ABCDE"),
                                    micro_aggregate("duration_group", "question_category")),
    "mvbench": BenchmarkRule(mvbench_prompt, mvbench_parse, macro_aggregate("task", answered_only=True)),
    "egoschema": BenchmarkRule(egoschema_prompt, egoschema_parse, micro_aggregate()),
    "jsonl": BenchmarkRule(None, None, micro_aggregate("task")),
}


# ------------------------------------------------------------------------------------------------ reading

@dataclasses.dataclass
class Benchmark:
    """records (what can be evaluated), per record its location ({"line": n} or {"file", "item"}) and meta
    (benchmark fields the aggregate groups by), and skipped items: {location..., "id"?, "reason"}."""
    format: str
    records: list = dataclasses.field(default_factory=list)
    locations: list = dataclasses.field(default_factory=list)
    meta: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    missing_videos: int = 0

    @property
    def rule(self) -> BenchmarkRule:
        return RULES[self.format]


def where(location: dict) -> str:
    """'line 3' or 'mlvu.json item 2' (0-based item of the file's list)."""
    return f"line {location['line']}" if "line" in location else f"{location['file']} item {location['item']}"


def _load_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _rows(path: Path) -> list:
    """The items of a JSON list file, a JSONL file, or a parquet table (needs pyarrow)."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ValueError(f"reading {path.name} needs pyarrow (pip install pyarrow), or give the rows as "
                             f"JSON") from None
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    data = _load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path.name} must hold a JSON list of questions, got {type(data).__name__}")
    return data


def _json_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.json")) if path.is_dir() else [path]


def detect_format(path: str | os.PathLike) -> str:
    """The format of a benchmark file or folder from its fields; ValueError when it cannot be told."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".parquet":
        return "videomme"
    files = _json_files(path)
    if not files:
        raise ValueError(f"{path} has no .json files")
    rows = _rows(files[0])
    first = rows[0] if rows and isinstance(rows[0], dict) else {}
    if "option 0" in first:
        return "egoschema"
    if "correct_choice" in first:
        return "longvideobench"
    if "options" in first and ("videoID" in first or "video_id" in first):
        return "videomme"
    if "candidates" in first:
        return "mlvu" if "question_type" in first else "mvbench"
    raise ValueError(f"cannot tell the benchmark format of {files[0]} from its fields {sorted(first)[:12]}; "
                     f"give --format ({'|'.join(FORMATS)})")


def _candidates(row: dict) -> list[str]:
    candidates = row["candidates"]
    if not isinstance(candidates, list):
        raise ValueError(f"candidates must be a list, got {type(candidates).__name__}")
    return [str(c) for c in candidates]


def _text_answer(candidates: list[str], answer) -> str:
    if str(answer) not in candidates:
        raise ValueError(f"answer {answer!r} is not one of the candidates")
    return LETTERS[candidates.index(str(answer))]


def _videomme(row: dict) -> tuple[QARecord, dict, list[str]]:
    options = row["options"]
    if not isinstance(options, list):
        raise ValueError(f"options must be a list of 'A. ...' strings, got {type(options).__name__}")
    texts = []
    for letter, option in zip(LETTERS, options):
        if not (isinstance(option, str) and option.startswith(f"{letter}. ")):
            raise ValueError(f"option {option!r} does not start with '{letter}. '")
        texts.append(option[len(letter) + 2:])
    video = row.get("videoID") or row.get("video_id")
    record = QARecord(video=str(video), question=row["question"], options=texts, answer=row["answer"],
                      task=str(row.get("duration", "")), id=str(row.get("question_id", "")))
    meta = {k: row.get(k, "") for k in ("duration", "domain", "sub_category", "task_type")}
    names = [f"{video}{ext}" for ext in (".mp4", ".MP4", ".mkv")]
    return record, meta, names + [f"data/{n}" for n in names]


def _mlvu(row: dict, stem: str) -> tuple[QARecord, dict, list[str]]:
    task = row.get("question_type") or re.sub(r"^\d+_", "", stem)
    candidates = _candidates(row)
    record = QARecord(video=row["video"], question=row["question"], options=candidates,
                      answer=_text_answer(candidates, row["answer"]), task=task)
    return record, {"question_type": task}, [row["video"], f"{stem}/{row['video']}"]


def _longvideobench(row: dict) -> tuple[QARecord, dict, list[str]]:
    candidates, choice = _candidates(row), row["correct_choice"]
    if not (isinstance(choice, int) and 0 <= choice < len(candidates)):
        raise ValueError(f"correct_choice {choice!r} is not an index of the candidates")
    record = QARecord(video=row["video_path"], question=row["question"], options=candidates, answer=LETTERS[choice],
                      task=str(row.get("question_category", "")), id=str(row.get("id", "")))
    meta = {k: row.get(k, "") for k in ("duration_group", "question_category")}
    return record, meta, [row["video_path"], f"videos/{row['video_path']}"]


def _mvbench(row: dict, stem: str) -> tuple[QARecord, dict, list[str]]:
    bound = {}
    if row.get("start") is not None and row.get("end") is not None:
        bound = {"start": row["start"], "end": row["end"]}
    candidates = _candidates(row)
    record = QARecord(video=row["video"], question=row["question"], options=candidates,
                      answer=_text_answer(candidates, row["answer"]), task=stem, **bound)
    folder = MVBENCH_FOLDERS.get(stem)
    names = [row["video"]] + ([f"{folder}/{row['video']}", f"video/{folder}/{row['video']}"] if folder else [])
    return record, {"task": stem}, names


def _egoschema(row: dict, answers: dict) -> tuple[QARecord, dict, list[str]]:
    uid = row["q_uid"]
    if uid not in answers:
        raise ValueError(f"no public answer for {uid} in {EGOSCHEMA_ANSWERS}")
    options = [row[f"option {k}"] for k in range(5)]
    answer = answers[uid]
    if not (isinstance(answer, int) and 0 <= answer < len(options)):
        raise ValueError(f"answer {answer!r} is not an option index 0..4")
    record = QARecord(video=uid, question=row["question"], options=options, answer=LETTERS[answer], id=uid)
    return record, {}, [f"{uid}.mp4", f"videos/{uid}.mp4"]


def _resolve(names: list[str], root: Path) -> tuple[str | None, list[str]]:
    tried = [str(root / n) for n in names]
    return next((t for t in tried if os.path.isfile(t)), None), tried


def _read_jsonl(path: Path, root: Path | None, bench: Benchmark) -> None:
    numbered, errors = read_numbered_records(path)
    bench.skipped += [{"line": line, "reason": reason} for line, reason in errors]
    for line, record in numbered:
        if root is not None and not record.video.startswith("synthetic:") and not os.path.isabs(record.video):
            record = dataclasses.replace(record, video=str(root / record.video))
        bench.records.append(record)
        bench.locations.append({"line": line})
        bench.meta.append({"task": record.task})


def load_benchmark(path: str | os.PathLike, fmt: str | None = None,
                   video_root: str | os.PathLike | None = None) -> Benchmark:
    """The benchmark at `path` (a file, or for mlvu/mvbench also a folder of per-task files) in format `fmt`
    (detected when None). Video paths are resolved under video_root (default: the benchmark's folder); items that
    cannot be read and items whose video is not found are in `skipped`. ValueError for an unknown format or a file
    that is not a list of questions; OSError when it cannot be read."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown benchmark format {fmt!r}; choose from {FORMATS}")
    bench = Benchmark(fmt)
    if fmt == "jsonl":
        _read_jsonl(path, Path(video_root) if video_root else None, bench)
        return bench
    root = Path(video_root) if video_root else (path if path.is_dir() else path.parent)
    answers = None
    if fmt == "egoschema":
        answers_path = path.parent / EGOSCHEMA_ANSWERS
        if not answers_path.is_file():
            raise ValueError(f"EgoSchema answers {answers_path} not found (the public {EGOSCHEMA_ANSWERS} goes next "
                             f"to {path.name})")
        answers = _load_json(answers_path)
    for file in _json_files(path) if fmt in ("mlvu", "mvbench") else [path]:
        for item, row in enumerate(_rows(file)):
            location = {"file": file.name, "item": item}
            try:
                if not isinstance(row, dict):
                    raise ValueError(f"a question must be a JSON object, got {type(row).__name__}")
                if fmt == "videomme":
                    record, meta, names = _videomme(row)
                elif fmt == "mlvu":
                    record, meta, names = _mlvu(row, file.stem)
                elif fmt == "longvideobench":
                    record, meta, names = _longvideobench(row)
                elif fmt == "mvbench":
                    record, meta, names = _mvbench(row, file.stem)
                else:
                    record, meta, names = _egoschema(row, answers)
            except KeyError as e:
                bench.skipped.append({**location, "reason": f"field {e.args[0]!r} is missing"})
                continue
            except (ValueError, TypeError) as e:
                bench.skipped.append({**location, "reason": str(e)})
                continue
            if not record.id:
                record = dataclasses.replace(record, id=f"{file.stem}:{item}")
            video, tried = _resolve(names, root)
            if video is None:
                bench.missing_videos += 1
                bench.skipped.append({**location, "id": record.id, "reason": "video not found: " + ", ".join(tried)})
                continue
            bench.records.append(dataclasses.replace(record, video=video))
            bench.locations.append(location)
            bench.meta.append(meta)
    return bench


def aggregate(bench: Benchmark, predictions: list[dict]) -> dict:
    """The benchmark's own aggregate of evaluate_benchmark's predictions (each with the index of its record)."""
    rows = [{**p, "meta": bench.meta[p["index"]]} for p in predictions]
    return bench.rule.aggregate(rows)


def format_aggregate(agg: dict) -> str:
    """The aggregate's headline and its per-group accuracies as text lines."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [f"{agg['name']}: {pct(agg['value'])}"]
    for key, groups in agg["groups"].items():
        lines.append(f"  by {key}: " + ", ".join(f"{value or '-'} {pct(g['accuracy'])} (n={g['total']})"
                                                  for value, g in groups.items()))
    return "\n".join(lines)
