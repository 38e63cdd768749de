"""Evidence ceilings of an embedded synthetic benchmark, and how fast its clips render.

    python -m experiments.evidence_ceiling [--benchmark events|shapes] [--videos 200] [--frames 8,16,32,64]
        [--num_frames N] [--size 112] [--seed 0] [--out FILE.json]

Builds the benchmark's test split (`video_qa.synthetic_splits`, --videos clips, default clip length unless
--num_frames) and prints, for each frame count T, the share of questions per task whose evidence frames the T
segment-middle frames contain (`liteframe_jax.data.evidence.evidence_ceiling`), then the median time to render
one clip on one core.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from absl import flags

from liteframe_jax.cli import error as cli_error, run
from liteframe_jax.data.evidence import evidence_ceiling
from liteframe_jax.data.video_qa import SYNTHETIC_BENCHMARKS, render_synthetic, synthetic_spec, synthetic_splits

RENDER_REPEATS = 20


def render_seconds(spec, repeats: int = RENDER_REPEATS) -> float:
    """Median seconds to render one clip of the spec's family (the first clip is rendered once untimed)."""
    render_synthetic(0, spec)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        render_synthetic(i, spec)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv):
    del argv
    f = flags.FLAGS
    try:
        counts = [int(t) for t in f.frames]
    except ValueError:
        return cli_error(f"--frames must be integers, got {f.frames}")
    if f.videos < 1 or any(t < 1 for t in counts):
        return cli_error("--videos and every --frames must be >= 1")
    fields = {"size": f.size, "seed": f.seed} | ({"num_frames": f.num_frames} if f.num_frames else {})
    try:
        spec = synthetic_spec(f.benchmark, **fields)
    except ValueError as e:
        return cli_error(str(e))
    _, records = synthetic_splits(spec, 0, f.videos, seed=f.seed)
    print(f"[evidence] {f.benchmark}: {f.videos} clips of {spec.num_frames} frames, {len(records)} questions")
    rows = []
    for t in counts:
        c = evidence_ceiling(records, t)
        rows.append({"frames": t, "overall": c.overall, "per_task": c.per_task, "questions": c.questions,
                     "without_evidence": c.without_evidence})
        tasks = " ".join(f"{task} {share:.2f}" for task, share in c.per_task.items())
        print(f"[evidence] T={t:3d}: overall {c.overall:.3f} | {tasks}", flush=True)
    seconds = render_seconds(spec)
    print(f"[evidence] render: {seconds * 1e3:.1f} ms per clip ({spec.num_frames} x {spec.size} x {spec.size})")
    if f.out:
        Path(f.out).write_text(json.dumps({"benchmark": f.benchmark, "videos": f.videos,
                                           "num_frames": spec.num_frames, "size": spec.size,
                                           "questions": len(records), "rows": rows,
                                           "render_seconds": seconds}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    flags.DEFINE_enum("benchmark", "events", sorted(SYNTHETIC_BENCHMARKS), "Which synthetic benchmark.")
    flags.DEFINE_integer("videos", 200, "Clips in the test split.")
    flags.DEFINE_list("frames", ["8", "16", "32", "64"], "Sampled frame counts T.")
    flags.DEFINE_integer("num_frames", 0, "Clip length in frames (0 = the benchmark's default).")
    flags.DEFINE_integer("size", 112, "Clip side in pixels.")
    flags.DEFINE_integer("seed", 0, "Spec and question seed.")
    flags.DEFINE_string("out", None, "Write the results as JSON here.")
    run(main)
