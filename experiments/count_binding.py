"""Does a teacher count the object a question names? The events benchmark's event_count questions, asked about
other objects of the same clips.

    python -m experiments.count_binding --checkpoint DIR [--clips 200] [--frames 12] [--out FILE.json]

The benchmark always asks "How many times does X appear?" about the clip's repeated object, which appears 0..3
times among three one-off objects, so a model can answer it without reading X (the number of brief appearances
minus three). For held-out dense clips (48 frames whose every event `--frames` 12 segment-middle frames see once;
video_qa.TEST_INDEX_OFFSET on, seed 0) this asks the same question, options 0..3, about
  repeated  the benchmark's own question (answer 0..3);
  one_off   one of the clip's one-off objects, at random (answer 1);
  absent    an object whose colour nothing in the clip has (answer 0);
each with the always-visible object drawn and without it (`show_persistent`), and scores the options' text by
log-likelihood (`evaluate --method loglik_text`, the tiny teachers' answer form). It prints each cell's accuracy
with its 95% Wilson interval and how often each count was answered, and the total-variation distance between the
one_off and absent answer distributions: 0 when the answer ignores the named object, 1 when it answers 1 and 0
perfectly. Writes everything, with the per-question predictions, to --out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from absl import flags

from liteframe_jax.cli import error as cli_error, run
from liteframe_jax.files import write_json

TARGETS = ("repeated", "one_off", "absent")
COUNTS = ("0", "1", "2", "3")
_DEFAULT_TEACHER = Path(__file__).resolve().parent / "assets" / "tiny_teacher"


def count_questions(record, video, rng: np.random.Generator) -> list:
    """The benchmark's event_count `record` about `video` -> the three records of TARGETS (tasks
    "count_<target>@<drawn|hidden>"), same options, each answer the letter of its true count."""
    from liteframe_jax.data.synthetic import SHAPES
    from liteframe_jax.data.video_qa import EVENT_QUESTION_TEMPLATES, LETTERS, describe, unused_colors

    if record.task != "event_count":
        raise ValueError(f"want an event_count record, got task {record.task!r}")
    single = video.singles[rng.integers(len(video.singles))]
    free = unused_colors(video)
    absent = describe(free[rng.integers(len(free))], SHAPES[rng.integers(len(SHAPES))])
    where = "drawn" if video.spec.show_persistent else "hidden"
    out = []
    for target, obj, count in (("repeated", None, None), ("one_off", describe(single.color, single.shape), "1"),
                               ("absent", absent, "0")):
        changes = {"id": f"{record.id}:{target}@{where}", "task": f"count_{target}@{where}"}
        if obj is not None:
            changes.update(question=EVENT_QUESTION_TEMPLATES["event_count"].format(object=obj),
                           answer=LETTERS[list(record.options).index(count)], evidence=None)
        out.append(dataclasses.replace(record, **changes))
    return out


def binding_benchmark(clips: int, seed: int = 0) -> list:
    """The count questions (count_questions) about `clips` held-out dense clips, drawn and hidden."""
    from liteframe_jax.data.synthetic_events import DENSE_FIELDS
    from liteframe_jax.data.video_qa import synthetic_spec, synthetic_splits, synthetic_video_for

    records = []
    for show in (True, False):
        spec = synthetic_spec("events", seed=seed, show_persistent=show, **DENSE_FIELDS)
        test = [r for r in synthetic_splits(spec, 0, clips, seed=seed)[1] if r.task == "event_count"]
        for i, r in enumerate(test):
            records += count_questions(r, synthetic_video_for(r), np.random.default_rng([seed, int(show), i]))
    return records


def answer_counts(result: dict, records) -> dict[str, dict[str, int]]:
    """{task: {count: times answered}} from an evaluate_benchmark result over `records`."""
    from liteframe_jax.data.video_qa import LETTERS

    options = {r.id: r.options for r in records}
    out: dict[str, dict[str, int]] = {}
    for p in result["predictions"]:
        counts = out.setdefault(p["task"], dict.fromkeys(COUNTS, 0))
        counts[options[p["id"]][LETTERS.index(p["prediction"])]] += 1
    return out


def total_variation(a: dict[str, int], b: dict[str, int]) -> float:
    """Half the L1 distance between two answer histograms, each normalized."""
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in COUNTS)


def main(argv):
    del argv
    f = flags.FLAGS
    if f.clips < 1 or f.frames < 1:
        return cli_error(f"need --clips >= 1 and --frames >= 1, got {f.clips}, {f.frames}")
    if not Path(f.checkpoint).is_dir():
        return cli_error(f"--checkpoint {f.checkpoint} is not a directory")
    from liteframe_jax.evaluate import evaluate_benchmark, wilson
    from liteframe_jax.generate import check_checkpoint, load_model

    try:
        check_checkpoint(f.checkpoint)
    except (ValueError, FileNotFoundError) as e:
        return cli_error(str(e))
    records = binding_benchmark(f.clips)
    print(f"[count_binding] {len(records)} questions about {f.clips} held-out dense clips, drawn and hidden; "
          f"loading {f.checkpoint}", flush=True)
    model = load_model(f.checkpoint, None)
    step = max(1, len(records) // 10)  # about ten progress lines, each when a tenth more is answered
    result = evaluate_benchmark(model, records, f.frames, "loglik_text", f.batch_size, system_message="none",
                                progress=lambda done, total: print(f"[count_binding] {done}/{total} questions",
                                                                   flush=True)
                                if done == total or done // step > (done - f.batch_size) // step else None)
    answered = answer_counts(result, records)
    cells = {}
    print(f"{'question':22s} {'n':>4s}  accuracy [95% CI]      answered 0 / 1 / 2 / 3")
    for where in ("drawn", "hidden"):
        for target in TARGETS:
            task = f"count_{target}@{where}"
            t = result["per_task"][task]
            lo, hi = wilson(t["correct"], t["total"])
            cells[task] = {"accuracy": t["accuracy"], "n": t["total"], "ci95": [lo, hi], "chance": t["chance"],
                           "answered": answered[task]}
            hist = " / ".join(str(answered[task][k]) for k in COUNTS)
            print(f"{task:22s} {t['total']:4d}  {t['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]   {hist}")
    binding = {where: total_variation(answered[f"count_one_off@{where}"], answered[f"count_absent@{where}"])
               for where in ("drawn", "hidden")}
    print(f"[count_binding] one_off vs absent answers, total-variation distance (0: the name is not read, 1: "
          f"perfect): drawn {binding['drawn']:.3f}, hidden {binding['hidden']:.3f}")
    if f.out:
        write_json(f.out, {"checkpoint": f.checkpoint, "clips": f.clips, "frames": f.frames, "seed": 0,
                           "cells": cells, "binding_tv": binding, "predictions": result["predictions"]})
        print(f"[count_binding] wrote {f.out}")
    return 0


if __name__ == "__main__":
    flags.DEFINE_string("checkpoint", str(_DEFAULT_TEACHER), "Teacher checkpoint (InternVL layout, e.g. the "
                        "shipped tiny teacher or the DIR/model of a configs/teacher_pretrain.py run).")
    flags.DEFINE_integer("clips", 200, "Held-out dense clips (each asked 3 questions, drawn and hidden: 6).")
    flags.DEFINE_integer("frames", 12, "Frames per clip (12: every event of a dense clip seen once).")
    flags.DEFINE_integer("batch_size", 8, "Questions per model call.")
    flags.DEFINE_string("out", None, "Write the results as JSON here.")
    run(main)
