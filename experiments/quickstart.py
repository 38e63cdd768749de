"""The main job on the embedded default: a tiny InternVL3-shaped teacher, end to end, checked against PyTorch.

    python -m experiments.quickstart --workdir runs/quickstart

1. builds a tiny random InternVL3-shaped PyTorch checkpoint in the OpenGVLab layout (as InternVL3-8B ships),
2. imports it with the real converter (converters.import_internvl3),
3. loads it with `lf.load`, encodes a synthetic clip and generates greedily with the KV cache in JAX,
4. runs transformers' PyTorch InternVL on the same weights and inputs and reports the max relative errors and
   whether the greedy tokens are identical. Writes WORKDIR/summary.json. Exits non-zero if parity fails.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from absl import app, flags

from liteframe_jax.cli import run

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Output directory (replaced if it exists).")
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames in the synthetic clip.")
_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 8, "Tokens to generate.")


def log(step: str, msg: str) -> None:
    print(f"[{step}] {msg}", flush=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _FRAMES.value < 1 or _NEW_TOKENS.value < 1:
        raise app.UsageError("--frames and --max_new_tokens must be positive")
    import numpy as np
    import torch

    import liteframe_jax as lf
    from experiments.tiny_internvl import TinySpec, build_reference, reference_outputs, write_checkpoint
    from liteframe_jax.checkpoints.import_internvl import convert_internvl3
    from liteframe_jax.data.frames import moving_square_clip, normalize_frames

    work = Path(_WORKDIR.value)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    spec = TinySpec(image_size=56, vision_layers=2, text_layers=2)
    summary: dict = {"spec": spec.__dict__.copy()}

    t0 = time.time()
    log("1/4", f"building a tiny InternVL3-shaped PyTorch checkpoint (OpenGVLab layout) in {work / 'hf_teacher'}")
    torch_model = build_reference(spec)
    write_checkpoint(torch_model, spec, work / "hf_teacher", "original")

    log("2/4", f"importing it through the converter -> {work / 'teacher'}")
    convert_internvl3(work / "hf_teacher", work / "teacher")
    summary["import_seconds"] = round(time.time() - t0, 2)

    log("3/4", f"encoding a {_FRAMES.value}-frame synthetic clip and generating {_NEW_TOKENS.value} tokens in JAX")
    model = lf.load(work / "teacher")
    pixels = normalize_frames(moving_square_clip(_FRAMES.value, spec.image_size))
    t = model.config.tokens_per_frame()
    frame_ids = [[spec.img_start] + [spec.image_token_id] * t + [spec.img_end] for _ in range(_FRAMES.value)]
    ids = np.array([[5, 6, 7] + sum(frame_ids, []) + [8, 9]])
    t1 = time.time()
    visual = np.asarray(model.encode_frames(pixels))
    logits = np.asarray(model.logits(ids, pixels))
    tokens = model.generate(ids, pixels, max_new_tokens=_NEW_TOKENS.value, eos_token_id=None)
    summary["jax_seconds_incl_compile"] = round(time.time() - t1, 2)
    log("3/4", f"{visual.shape[0]} visual tokens ({t}/frame), prompt {ids.shape[1]} tokens, generated {tokens[0].tolist()}")

    log("4/4", "comparing with transformers' PyTorch InternVL on the same weights")
    ref = reference_outputs(torch_model, spec, torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()),
                            torch.from_numpy(ids), max_new_tokens=_NEW_TOKENS.value)
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    summary["max_rel_err"] = {"visual_tokens": rel(visual, ref["image_features"].reshape(visual.shape)),
                              "logits": rel(logits, ref["logits"])}
    summary["identical_greedy_tokens"] = bool((tokens == ref["generated"]).all())
    summary["total_seconds"] = round(time.time() - t0, 2)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for k, v in summary["max_rel_err"].items():
        log("4/4", f"max relative error {k}: {v:.2e}")
    log("4/4", f"greedy tokens identical: {summary['identical_greedy_tokens']}; wrote {work / 'summary.json'}")
    ok = max(summary["max_rel_err"].values()) <= 1e-5 and summary["identical_greedy_tokens"]
    print("quickstart: OK" if ok else "quickstart: PARITY FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    run(main)
