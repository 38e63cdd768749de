"""Multiple-choice video-QA accuracy of a checkpoint on a JSONL benchmark or a published benchmark's own files.

    python -m liteframe_jax.evaluate --checkpoint DIR --benchmark FILE.jsonl [--frames 8]
        [--method generate|loglik|loglik_text] [--out RESULT.json] [--limit N]
        [--system_message default|none|TEXT] [--batch_size 8] [--max_new_tokens 8]
        [--format videomme|mlvu|longvideobench|mvbench|egoschema|jsonl] [--video_root DIR]

Published files (Video-MME, MLVU, LongVideoBench, MVBench, EgoSchema; liteframe_jax.data.benchmarks) are read as
distributed and asked and scored with that benchmark's lmms-eval prompt and answer extraction; the result adds
the benchmark's own `aggregate` (e.g. MLVU's mean over task types, Video-MME by duration). Questions whose video
is not under --video_root are skipped and reported. What follows describes JSONL records and the defaults.

The benchmark holds one QA record per line (liteframe_jax.data.video_qa: video, question, options, answer letter,
task, optional start/end). Each question is asked as InternVL's chat prompt: the video prefix (--frames frames,
InternVL segment-middle sampling, which repeats frames when a clip has fewer; one `<img>` block per frame group),
then the question, one "A. option" line per option and "Answer with the option's letter from the given choices
directly." Questions are batched (--batch_size, prompts left-padded) and videos decoded ahead on threads.

Methods:
  generate  greedy-decode up to --max_new_tokens tokens and read the first option letter of the reply ("B", "B.",
            "(B)", "B) red", "The answer is B", "answer: (B)"; a reply equal to one option's text counts as that
            option). A leading `<think>...</think>` block (InternVL3.5's thinking mode) is dropped first; a
            reply still thinking when --max_new_tokens runs out has no answer. A reply with no letter counts as
            wrong and is reported as `unparsed`.
  loglik    score each option LETTER (not its text) by the log-likelihood of the letter's tokens as the
            assistant's reply (the form the models are trained to answer in), and pick the most likely; never
            unparsed. Ties go to the earliest option.
  loglik_text  score each option's TEXT followed by <|im_end|> (the whole reply "red<|im_end|>") by its summed
            log-likelihood and pick the most likely: for models trained to answer with the option's text
            (QA data answer_format="text"), as lmms-eval scores options by likelihood. Never unparsed.

Records without options (open-ended questions, multi-turn conversations) are skipped with a reason; malformed
lines are skipped and reported with their line numbers, unreadable videos with their record. An empty benchmark,
or one where nothing could be evaluated, is an error (`error: ...`, exit 1). Prints a per-task table (n, accuracy,
chance = mean of 1/len(options)) and, with --out, writes the full result (per-task numbers, skipped records,
per-question predictions, and model_ms_per_example: encode + LLM time per question, first batch (compilation)
excluded; for loglik also named encode_prefill_ms_per_example) as JSON, atomically. Tiny LMA demo models are
trained without a system turn: evaluate them with --system_message none.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import re
import sys
import time

import jax.numpy as jnp
import numpy as np

from liteframe_jax.cli import error as cli_error
from liteframe_jax.files import write_json
from liteframe_jax.generate import (DEFAULT_FRAMES, check_checkpoint, clip_pixels, decode_answer, end_token_id,
                                    load_model, prompt_layout, system_message_arg)

METHODS = ("generate", "loglik", "loglik_text")
DEFAULT_BATCH_SIZE = 8
DEFAULT_MAX_NEW_TOKENS = 8
LENGTH_BUCKET = 64  # prompts are padded to a multiple of this many tokens, so batches reuse compiled shapes
NO_TASK = "(no task)"

_KEYWORD = re.compile(r"(?i:answer|option|choice)\s*(?i:is)?\s*[:=]?\s*(?i:option\s*)?[(\[]?([A-Z])(?![A-Za-z0-9])")
_LETTER = re.compile(r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9])")
_WORD_AFTER = re.compile(r"\s+[a-z]")
_LONE = re.compile(r"^\W*([A-Za-z])\W*$")
THINK_START, THINK_END = "<think>", "</think>"


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval (low, high) of a proportion correct / n (nan, nan when n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p = correct / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, center - half), min(1.0, center + half)


def paired_difference(first: list[bool], second: list[bool], z: float = 1.96) -> tuple[float, float, float]:
    """Accuracy of `first` minus that of `second` on the same questions (paired bools, same order), with its
    95% interval (difference, low, high): Newcombe's hybrid score interval for paired proportions (his method 10,
    from the two Wilson intervals and the correlation of the pairs), far tighter than comparing two independent
    intervals when the two answer most questions alike."""
    if len(first) != len(second) or not first:
        raise ValueError(f"need two non-empty lists of the same length, got {len(first)} and {len(second)}")
    n = len(first)
    both = sum(1 for a, b in zip(first, second) if a and b)
    only_first = sum(1 for a, b in zip(first, second) if a and not b)
    only_second = sum(1 for a, b in zip(first, second) if b and not a)
    neither = n - both - only_first - only_second
    p1, p2 = (both + only_first) / n, (both + only_second) / n
    (l1, u1), (l2, u2) = wilson(both + only_first, n, z), wilson(both + only_second, n, z)
    margins = (both + only_first) * (only_second + neither) * (both + only_second) * (only_first + neither)
    phi = (both * neither - only_first * only_second) / math.sqrt(margins) if margins else 0.0
    diff = p1 - p2
    low = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return diff, max(-1.0, diff - low), min(1.0, diff + high)



# ------------------------------------------------------------------------------------------------ parsing

def _norm(text: str) -> str:
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(w for w in text.split() if w not in ("the", "a", "an"))


def strip_thinking(reply: str) -> str:
    """The reply after a leading `<think>...</think>` reasoning block (InternVL3.5 / Qwen3 thinking mode; the
    reasoning may name letters it then rejects), or "" while the block is still open; other replies unchanged."""
    text = (reply or "").lstrip()
    if not text.startswith(THINK_START):
        return reply
    end = text.find(THINK_END)
    return "" if end < 0 else text[end + len(THINK_END):].strip()


def parse_choice(text: str, num_options: int, options=()) -> str | None:
    """The option letter a reply chooses, or None. In order: a reply that is a single letter ("b", "(B)."); a
    letter after "answer"/"option"/"choice" ("The answer is B", "Answer: (C)"); the first capital letter standing
    alone, except "A"/"I" followed by a lowercase word ("B. red", "I think C." -> C; "A red square" has none); a
    reply equal to one option's text (case, punctuation and articles ignored). Letters beyond the options are
    ignored."""
    valid = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:num_options]
    text = (text or "").strip()
    if not text:
        return None
    lone = _LONE.match(text)
    if lone and lone.group(1).upper() in valid:
        return lone.group(1).upper()
    for match in _KEYWORD.finditer(text):
        if match.group(1) in valid:
            return match.group(1)
    for match in _LETTER.finditer(text):
        used_as_word = match.group(1) in "AI" and _WORD_AFTER.match(text, match.end())  # "A red ...", "I think"
        if match.group(1) in valid and not used_as_word:
            return match.group(1)
    matches = [valid[k] for k, option in enumerate(options[:num_options]) if _norm(option) == _norm(text)]
    return matches[0] if len(matches) == 1 else None


# ------------------------------------------------------------------------------------------------ batching

def _visual(visuals: dict, keys: list, pad_to: int):
    keys = keys + [keys[0]] * (pad_to - len(keys))
    return jnp.concatenate([visuals[k] for k in keys], axis=0)


def _generate_batch(model, examples, visuals, prompts, batch_size, max_new_tokens, eos) -> list[str]:
    ids, mask = model.batch_prompts(prompts, batch_size, LENGTH_BUCKET)
    visual = _visual(visuals, [e["key"] for e in examples], batch_size)
    new = model.generate_from_visual(ids, visual, max_new_tokens, mask, eos_token_id=None)
    return [decode_answer(model.tokenizer, new[i], eos) for i in range(len(examples))]


def _loglik_batch(model, examples, visuals, prompts, answers, batch_size) -> list[list[float]]:
    """Sum of log p(answer tokens | prompt) for every answer of every example. Answers that share a prefix share
    a row: all single-token letters are read off the prompt's own next-token distribution."""
    rows, row_keys, row_of, queries = [], [], {}, []
    for e, (example, prompt, options) in enumerate(zip(examples, prompts, answers)):
        for k, tokens in enumerate(options):
            for j, token in enumerate(tokens):
                prefix = (e, tuple(tokens[:j]))
                if prefix not in row_of:
                    row_of[prefix] = len(rows)
                    rows.append(np.concatenate([prompt, np.asarray(tokens[:j], np.int32)]))
                    row_keys.append(example["key"])
                queries.append((e, k, row_of[prefix], int(token)))
    logp = []
    for s in range(0, len(rows), batch_size):
        ids, mask = model.batch_prompts(rows[s:s + batch_size], batch_size, LENGTH_BUCKET)
        visual = _visual(visuals, row_keys[s:s + batch_size], batch_size)
        logp.append(model.next_token_logprobs(ids, visual, mask))
    logp = np.concatenate(logp)
    scores = [[0.0] * len(options) for options in answers]
    for e, k, row, token in queries:
        scores[e][k] += float(logp[row, token])
    return scores


def _reply_loglik_batch(model, examples, visuals, prompts, answers, batch_size) -> list[list[float]]:
    """Sum of log p(reply tokens | prompt) for every reply of every example, one row (prompt + reply) per reply,
    scored in one teacher-forced pass."""
    rows, lengths, keys, where = [], [], [], []
    for e, (example, prompt, replies) in enumerate(zip(examples, prompts, answers)):
        for k, tokens in enumerate(replies):
            rows.append(np.concatenate([prompt, np.asarray(tokens, np.int32)]))
            lengths.append(len(tokens))
            keys.append(example["key"])
            where.append((e, k))
    scores = [[0.0] * len(replies) for replies in answers]
    for s in range(0, len(rows), batch_size):
        ids, mask = model.batch_prompts(rows[s:s + batch_size], batch_size, LENGTH_BUCKET)
        n = len(rows[s:s + batch_size])
        chunk = lengths[s:s + batch_size] + [lengths[s]] * (batch_size - n)
        logp = model.continuation_logprobs(ids, _visual(visuals, keys[s:s + batch_size], batch_size), mask, chunk)
        for (e, k), value in zip(where[s:s + n], logp[:n]):
            scores[e][k] = float(value)
    return scores


# ------------------------------------------------------------------------------------------------ evaluation

def _clip_key(record) -> tuple:
    synthetic = json.dumps(record.synthetic, sort_keys=True) if record.synthetic is not None else None
    return record.video, record.start, record.end, synthetic


def _label(record) -> str:
    return record.id or record.video


def _load(model, record, num_frames):
    from liteframe_jax.data.video import VideoDecodeError
    try:
        return clip_pixels(model, record, num_frames, threads=1), None
    except VideoDecodeError as e:
        return None, e.reason
    except (FileNotFoundError, ValueError) as e:
        return None, str(e)


def _summary(rows: list[dict]) -> dict:
    from liteframe_jax.data.video_qa import chance_level
    correct = sum(r["correct"] for r in rows)
    return {"accuracy": correct / len(rows) if rows else None, "correct": correct, "total": len(rows),
            "chance": chance_level([r["record"] for r in rows]).get("overall"),
            "unparsed": sum(r["prediction"] is None for r in rows)}


def evaluate_benchmark(model, records, num_frames: int = DEFAULT_FRAMES, method: str = "generate",
                       batch_size: int = DEFAULT_BATCH_SIZE, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                       system_message: str | None = "default", progress=None, decode_workers: int = 4,
                       prompt=None, parse=None) -> dict:
    """Accuracy of `model` (a VideoLLM with an LLM and tokenizer) on multiple-choice QARecords (module doc).

    Returns {"method", "num_frames", "frames_per_group", "tokens_per_frame_group", "visual_tokens", "overall":
    {"accuracy", "correct", "total", "chance"}, "per_task": {task: {... , "unparsed"}}, "unparsed", "skipped":
    [{"index", "id", "reason"}], "predictions": [{"index", "id", "task", "answer", "prediction", "correct",
    "response" | "scores"}], "seconds", "model_ms_per_example", "encode_prefill_ms_per_example" (loglik)}.
    Times per example leave out the first batch (compilation); None with a single batch. progress(done, total)
    is called after each batch. prompt(record) -> user text and parse(reply, record) -> letter or None replace
    the default question text and `parse_choice` (a benchmark's own rules, liteframe_jax.data.benchmarks).
    ValueError for bad arguments or no records.
    """
    from liteframe_jax.data.prompts import encode_prompt
    from liteframe_jax.data.qa_pipeline import prompt_ids, question_text
    from liteframe_jax.data.video_qa import LETTERS

    t_start = time.perf_counter()
    prompt = prompt or question_text
    parse = parse or (lambda reply, r: parse_choice(reply, len(r.options), r.options))
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if num_frames < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"num_frames ({num_frames}), batch_size ({batch_size}) and max_new_tokens "
                         f"({max_new_tokens}) must be >= 1")
    records = list(records)
    if not records:
        raise ValueError("no records to evaluate")
    if "llm" not in model.params:
        raise ValueError("the model has no LLM (encoder-only checkpoint); it cannot answer questions")
    tok, system, eos = model.tokenizer, system_message_arg(system_message), end_token_id(model)
    layout = prompt_layout(model)
    skipped, todo = [], []
    for i, r in enumerate(records):
        if r.options:
            todo.append({"index": i, "record": r, "key": _clip_key(r)})
        else:
            skipped.append({"index": i, "id": _label(r), "reason": "not multiple choice (no options); open-ended "
                                                                   "answers are not scored"})
    if method == "loglik_text" and eos is None:
        raise ValueError("method loglik_text needs the model's end-of-answer token; the tokenizer has none")
    batch_size = min(batch_size, max(1, len(todo)))  # a small benchmark needs no padding rows
    reply_tokens = {}  # reply text -> its token ids (scored replies of the loglik methods)
    rows, model_seconds, timed = [], 0.0, 0
    batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)]
    done = len(records) - len(todo)

    with concurrent.futures.ThreadPoolExecutor(max(1, decode_workers)) as pool:
        def submit(batch):
            futures = {}
            for ex in batch:
                if ex["key"] not in futures:
                    futures[ex["key"]] = pool.submit(_load, model, ex["record"], num_frames)
            return futures

        pending = submit(batches[0]) if batches else {}
        for b, batch in enumerate(batches):
            loaded = {k: f.result() for k, f in pending.items()}
            pending = submit(batches[b + 1]) if b + 1 < len(batches) else {}
            ok = []
            for ex in batch:
                pixels, reason = loaded[ex["key"]]
                if pixels is None:
                    skipped.append({"index": ex["index"], "id": _label(ex["record"]), "reason": reason})
                else:
                    ok.append(ex)
            done += len(batch)
            if ok:
                t0 = time.perf_counter()
                visuals = {ex["key"]: model.encode_frames(loaded[ex["key"]][0]) for ex in ok}
                prompts = [prompt_ids(tok, prompt(ex["record"]), num_frames, layout, system) for ex in ok]
                if method == "generate":
                    replies = _generate_batch(model, ok, visuals, prompts, batch_size, max_new_tokens, eos)
                    for ex, reply in zip(ok, replies):
                        r = ex["record"]
                        ex.update(response=reply, prediction=parse(strip_thinking(reply), r))
                else:
                    answers = []
                    for ex in ok:
                        r = ex["record"]
                        replies = LETTERS[:len(r.options)] if method == "loglik" else r.options
                        for reply in replies:
                            if reply not in reply_tokens:
                                reply_tokens[reply] = encode_prompt(tok, reply).tolist() + (
                                    [] if method == "loglik" else [eos])
                        answers.append([reply_tokens[reply] for reply in replies])
                    score = _loglik_batch if method == "loglik" else _reply_loglik_batch
                    scores = score(model, ok, visuals, prompts, answers, batch_size)
                    for ex, s in zip(ok, scores):
                        ex.update(scores=s, prediction=LETTERS[int(np.argmax(s))])
                if b > 0:
                    model_seconds += time.perf_counter() - t0
                    timed += len(ok)
                for ex in ok:
                    ex["correct"] = ex["prediction"] == ex["record"].answer
                rows += ok
            if progress is not None:
                progress(done, len(records))

    rows.sort(key=lambda ex: ex["index"])
    skipped.sort(key=lambda s: s["index"])
    by_task = {}
    for ex in rows:
        by_task.setdefault(ex["record"].task or NO_TASK, []).append(ex)
    overall = _summary(rows)
    unparsed = overall.pop("unparsed")
    ms = 1000.0 * model_seconds / timed if timed else None
    predictions = []
    for ex in rows:
        r = ex["record"]
        p = {"index": ex["index"], "id": _label(r), "task": r.task, "answer": r.answer,
             "prediction": ex["prediction"], "correct": ex["correct"]}
        p.update({"response": ex["response"]} if method == "generate" else {"scores": ex["scores"]})
        predictions.append(p)
    result = {"method": method, "num_frames": num_frames, "frames_per_group": model.frames_per_group,
              "tokens_per_frame_group": model.tokens_per_group(), "visual_tokens": model.num_visual_tokens(num_frames),
              "overall": overall, "per_task": {t: _summary(v) for t, v in sorted(by_task.items())},
              "unparsed": unparsed, "skipped": skipped, "predictions": predictions,
              "seconds": time.perf_counter() - t_start, "model_ms_per_example": ms}
    if method != "generate":
        result["encode_prefill_ms_per_example"] = ms
    return result


def format_table(result: dict) -> str:
    """Readable per-task table: task, n, accuracy, chance (percent), then the overall line."""
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = [("task", "n", "accuracy", "chance")]
    lines += [(t, str(v["total"]), pct(v["accuracy"]), pct(v["chance"])) for t, v in result["per_task"].items()]
    o = result["overall"]
    lines.append(("overall", str(o["total"]), pct(o["accuracy"]), pct(o["chance"])))
    width = max(len(line[0]) for line in lines)
    out = [f"{a:<{width}}  {b:>6}  {c:>8}  {d:>7}" for a, b, c, d in lines]
    out.insert(-1, "-" * len(out[0]))
    out.append(f"unparsed replies: {result['unparsed']}   skipped: {len(result['skipped'])}")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ CLI

def _define_flags():
    from absl import flags
    from liteframe_jax.data.benchmarks import FORMATS
    flags.DEFINE_string("checkpoint", None, "Checkpoint directory with an LLM (LiteFrame after LMA, an imported "
                        "InternVL3, or a PyTorch InternVL3 directory).")
    flags.DEFINE_string("benchmark", None, "Benchmark file (or folder of per-task files for mlvu/mvbench): JSONL QA "
                        "records (liteframe_jax.data.video_qa) or a published benchmark file (--format).")
    flags.DEFINE_enum("format", None, list(FORMATS),
                      "Benchmark file format, with that benchmark's prompt, answer extraction and aggregate "
                      "(lmms-eval's); detected from the file when not given.")
    flags.DEFINE_string("video_root", None, "Folder the benchmark's video names are resolved in (default: the "
                        "benchmark's folder); questions whose video is not there are skipped and reported.")
    flags.DEFINE_integer("frames", DEFAULT_FRAMES, "Frames per video (InternVL segment-middle sampling).")
    flags.DEFINE_enum("method", "generate", list(METHODS), "generate: parse the letter of a greedy reply; loglik: "
                      "the most likely option letter; loglik_text: the most likely option text (models trained "
                      "with answer_format=text).")
    flags.DEFINE_string("out", None, "Write the full result JSON here (atomically).")
    flags.DEFINE_integer("limit", None, "Evaluate only the first N valid records.")
    flags.DEFINE_string("system_message", "default", "System turn: 'default' (InternVL's), 'none', or the text.")
    flags.DEFINE_integer("batch_size", DEFAULT_BATCH_SIZE, "Questions per model call.")
    flags.DEFINE_integer("max_new_tokens", DEFAULT_MAX_NEW_TOKENS, "Reply length for --method generate.")
    flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"], "Compute dtype; auto keeps the "
                      "checkpoint's.")
    flags.DEFINE_integer("decode_workers", 4, "Threads decoding videos ahead of the model.")
    for name in ("checkpoint", "benchmark"):
        flags.mark_flag_as_required(name)


def main(argv):
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    from liteframe_jax.data.benchmarks import aggregate, format_aggregate, load_benchmark, where
    if not os.path.exists(f.benchmark):
        return cli_error(f"benchmark file {f.benchmark!r} does not exist")
    if f.limit is not None and f.limit < 1:
        return cli_error(f"--limit must be >= 1, got {f.limit}")
    try:
        bench = load_benchmark(f.benchmark, f.format, f.video_root)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return cli_error(f"cannot read {f.benchmark}: {e}")
    except ValueError as e:
        return cli_error(str(e))
    for s in bench.skipped[:10]:
        label = f"{f.benchmark}:{s['line']}" if "line" in s else f"{f.benchmark}: {where(s)}"
        print(f"{label}: skipped {'record' if 'id' in s else 'malformed record'}: {s['reason']}", file=sys.stderr)
    if len(bench.skipped) > 10:
        print(f"{f.benchmark}: {len(bench.skipped) - 10} more skipped", file=sys.stderr)
    if bench.missing_videos:
        print(f"{f.benchmark}: {bench.missing_videos} questions skipped: video not found", file=sys.stderr)
    records, locations = bench.records, bench.locations
    if not records:
        n = len(bench.skipped)
        detail = "" if not n else (f" ({n} malformed lines)" if bench.format == "jsonl" else
                                   f" ({n} skipped, {bench.missing_videos} of them for a missing video)")
        return cli_error(f"{f.benchmark} has no valid records{detail}")
    if f.limit is not None:
        records, locations = records[:f.limit], locations[:f.limit]
    from tqdm import tqdm
    try:
        check_checkpoint(f.checkpoint)
        print(f"loading {f.checkpoint} ...", file=sys.stderr, flush=True)
        model = load_model(f.checkpoint, None if f.dtype == "auto" else f.dtype)
        with tqdm(total=len(records), unit="q", desc=f"evaluating ({f.method})", file=sys.stderr) as bar:
            result = evaluate_benchmark(model, records, f.frames, f.method, f.batch_size,
                                        max_new_tokens=f.max_new_tokens, system_message=f.system_message,
                                        progress=lambda done, total: bar.update(done - bar.n),
                                        decode_workers=f.decode_workers, prompt=bench.rule.prompt,
                                        parse=bench.rule.parse)
    except (ValueError, FileNotFoundError) as e:
        return cli_error(str(e))
    result["aggregate"] = aggregate(bench, result["predictions"])
    skipped = bench.skipped + [{**locations[s["index"]], "id": s["id"], "reason": s["reason"]}
                               for s in result.pop("skipped")]
    for p in result["predictions"]:
        p.update(locations[p.pop("index")])
    if result["overall"]["total"] == 0:
        first = f"; first: {where(skipped[0])}: {skipped[0]['reason']}" if skipped else ""
        return cli_error(f"no record of {f.benchmark} could be evaluated ({len(skipped)} skipped{first})")
    out = {"checkpoint": str(f.checkpoint), "benchmark": str(f.benchmark), "format": bench.format, **result,
           "skipped": skipped, "missing_videos": bench.missing_videos, "system_message": f.system_message}
    out["predictions"] = out.pop("predictions")  # keep the long list last
    if f.out:
        write_json(f.out, out)
        print(f"wrote {f.out}", file=sys.stderr)
    print(format_table(out))
    print(format_aggregate(out["aggregate"]))
    return 0


if __name__ == "__main__":
    from liteframe_jax.cli import run
    _define_flags()
    run(main)
