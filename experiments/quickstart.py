"""The main job, end to end on the embedded default (no downloads, a few minutes on a laptop CPU).

    python -m experiments.quickstart --workdir runs/quickstart

1. builds a tiny random InternVL3-shaped PyTorch teacher (OpenGVLab layout) with a small real tokenizer and
   imports it through the real converter (converters.import_internvl3);
2. checks the imported teacher against transformers' PyTorch InternVL (logits, greedy tokens);
3. CTD: distils the LiteFrame student from the teacher on synthetic videos;
4. LMA: adapts projector + LoRA on the synthetic video-QA train split for three visual paths: the teacher
   (tokens per frame as InternVL3), the teacher + post-hoc WAP, and the LiteFrame student;
5. evaluates the three on the held-out synthetic benchmark: tokens per frame, accuracy vs chance, and
   encode + prefill latency (jitted, median of repeated runs);
6. exports the LiteFrame model to a PyTorch / Hugging Face directory and checks it against JAX;
7. prints the comparison table and writes WORKDIR/summary.json and WORKDIR/comparison.png.
Exits non-zero when a parity check fails.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from absl import app, flags

from liteframe_jax.cli import run

_WORKDIR = flags.DEFINE_string("workdir", "runs/quickstart", "Output directory (replaced if it exists).")
_FRAMES = flags.DEFINE_integer("frames", 8, "Frames per clip for LMA and evaluation.")
_CTD_STEPS = flags.DEFINE_integer("ctd_steps", 60, "CTD steps.")
_LMA_STEPS = flags.DEFINE_integer("lma_steps", 150, "LMA steps per pipeline.")
_TRAIN_VIDEOS = flags.DEFINE_integer("train_videos", 400, "Synthetic videos in the QA train split.")
_TEST_VIDEOS = flags.DEFINE_integer("test_videos", 40, "Synthetic videos in the held-out QA benchmark.")
_REPEATS = flags.DEFINE_integer("latency_repeats", 5, "Timed runs per latency measurement (median reported).")

ENCODERS = ("teacher", "teacher_wap", "student")  # the LMA runs, one per visual path


def log(step: str, msg: str) -> None:
    print(f"[{step}] {msg}", flush=True)


def rel_err(a, b) -> float:
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def build_teacher(work: Path, summary: dict):
    """Tiny PyTorch InternVL3 + tokenizer -> imported teacher; parity against transformers."""
    import numpy as np
    import torch

    import liteframe_jax as lf
    from testing.tiny_internvl import TinySpec, build_reference, reference_outputs, write_checkpoint
    from liteframe_jax.checkpoints.import_internvl import convert_internvl3
    from liteframe_jax.data.frames import moving_square_clip, normalize_frames
    from liteframe_jax.data.tokenizer import save_tiny_tokenizer

    spec = TinySpec(image_size=56, vision_layers=2, text_layers=2, vocab_size=512)
    log("1/7", f"building a tiny InternVL3-shaped PyTorch teacher + tokenizer in {work / 'hf_teacher'}")
    torch_model = build_reference(spec)
    write_checkpoint(torch_model, spec, work / "hf_teacher", "original")
    save_tiny_tokenizer(work / "hf_teacher", spec.vocab_size)
    convert_internvl3(work / "hf_teacher", work / "teacher")
    log("1/7", f"imported through the converter -> {work / 'teacher'}")

    model = lf.load(work / "teacher")
    pixels = normalize_frames(moving_square_clip(4, spec.image_size))
    t = model.config.tokens_per_frame()
    ids = np.array([[5, 6] + ([spec.img_start] + [spec.image_token_id] * t + [spec.img_end]) * 4 + [8, 9]])
    logits = np.asarray(model.logits(ids, pixels))
    tokens = model.generate(ids, pixels, max_new_tokens=6, eos_token_id=None)
    ref = reference_outputs(torch_model, spec, torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()),
                            torch.from_numpy(ids), max_new_tokens=6)
    summary["teacher_parity"] = {"logits_max_rel_err": rel_err(logits, ref["logits"]),
                                 "identical_greedy_tokens": bool((tokens == ref["generated"]).all())}
    log("2/7", f"teacher vs PyTorch: logits max rel err {summary['teacher_parity']['logits_max_rel_err']:.2e}, "
               f"greedy tokens identical: {summary['teacher_parity']['identical_greedy_tokens']}")
    return summary["teacher_parity"]["logits_max_rel_err"] <= 1e-5 and summary["teacher_parity"][
        "identical_greedy_tokens"]


def run_ctd(work: Path, summary: dict) -> Path:
    from configs import ctd as ctd_config
    from liteframe_jax.train import ctd

    c = ctd_config.get_config(f"variant=tiny,steps={_CTD_STEPS.value}")
    c.teacher.checkpoint = str(work / "teacher")
    c.train.eval_every = _CTD_STEPS.value
    log("3/7", f"CTD: {_CTD_STEPS.value} steps on synthetic videos -> {work / 'ctd'}")
    ctd.run(c, work / "ctd")
    recs = [json.loads(x) for x in (work / "ctd" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in recs if "loss" in r]
    cos = [r["eval/cosine"] for r in recs if "eval/cosine" in r]
    summary["ctd"] = {"first_loss": losses[0], "last_loss": losses[-1], "eval_cosine": cos[-1]}
    log("3/7", f"CTD loss {losses[0]:.3f} -> {losses[-1]:.3f}, held-out cosine fidelity {cos[-1]:.3f}")
    return work / "ctd" / "student"


def run_lma(work: Path, encoder: str, student: Path, summary: dict) -> Path:
    from configs import lma as lma_config
    from liteframe_jax.models.visual_path import configs_needed
    from liteframe_jax.train import lma

    c = lma_config.get_config(f"variant=tiny,encoder={encoder}")
    c.teacher.checkpoint = str(work / "teacher")
    c.student.checkpoint = str(student) if "liteframe" in configs_needed(encoder) else ""
    c.curriculum = f"{_FRAMES.value}:{_LMA_STEPS.value}"
    c.train.eval_every = _LMA_STEPS.value
    c.data.synthetic_train_videos = _TRAIN_VIDEOS.value
    c.data.synthetic_test_videos = _TEST_VIDEOS.value
    out = work / f"lma_{encoder}"
    log("4/7", f"LMA ({encoder}): projector + LoRA, {_LMA_STEPS.value} steps at {_FRAMES.value} frames -> {out}")
    last = lma.run(c, out)
    summary.setdefault("lma", {})[encoder] = {k: last[k] for k in ("loss", "eval/loss") if k in last}
    return out / "model"


def latency_ms(model, ids, pixels, repeats: int) -> dict:
    """Median ms of the jitted visual encoding and of encoding + LLM prefill (logits of the whole prompt)."""
    from experiments.timing import time_call

    def timed(fn):
        return time_call(fn, warmup=1, repeats=repeats)["median_ms"]

    return {"encode_ms": timed(lambda: model.encode_frames(pixels)),
            "encode_prefill_ms": timed(lambda: model.logits(ids, pixels))}


def evaluate_pipelines(work: Path, models: dict, summary: dict) -> list[dict]:
    import liteframe_jax as lf
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.data.qa_pipeline import PromptLayout, prompt_ids, question_text, record_frames
    from liteframe_jax.data.synthetic import SyntheticVideoSpec
    from liteframe_jax.data.video_qa import chance_level, synthetic_splits, write_records
    from liteframe_jax.evaluate import evaluate_benchmark

    _, test = synthetic_splits(SyntheticVideoSpec(), 0, _TEST_VIDEOS.value)
    write_records(work / "benchmark_test.jsonl", test)
    chance = chance_level(test)["overall"]
    rows = []
    for encoder in ENCODERS:
        model = lf.load(models[encoder])
        name = model.visual.label
        log("5/7", f"evaluating {name} on {len(test)} held-out questions ({_FRAMES.value} frames)")
        result = evaluate_benchmark(model, test, _FRAMES.value, method="generate", system_message=None)
        rec = test[0]
        pixels = normalize_frames(record_frames(rec, _FRAMES.value, model.image_size))
        layout = PromptLayout(model.tokens_per_group(), model.frames_per_group)
        ids = prompt_ids(model.tokenizer, question_text(rec), _FRAMES.value, layout, None)[None]
        lat = latency_ms(model, ids, pixels, _REPEATS.value)
        rows.append({"pipeline": name, "encoder": encoder,
                     "visual_tokens": model.num_visual_tokens(_FRAMES.value),
                     "tokens_per_frame": model.num_visual_tokens(_FRAMES.value) / _FRAMES.value,
                     "prompt_tokens": int(ids.shape[1]), "accuracy": result["overall"]["accuracy"],
                     "chance": chance, "per_task": {k: v["accuracy"] for k, v in result["per_task"].items()},
                     **lat})
    summary["benchmark"] = {"questions": len(test), "chance": chance, "frames": _FRAMES.value}
    summary["pipelines"] = rows
    return rows


def export_and_check(work: Path, model_dir: Path, summary: dict) -> bool:
    """Export the LiteFrame model to PyTorch and compare logits and greedy tokens with JAX (fp32)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    import liteframe_jax as lf
    from converters.export_torch import export_liteframe
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.data.qa_pipeline import PromptLayout, prompt_ids, question_text, record_frames
    from liteframe_jax.data.synthetic import SyntheticVideoSpec
    from liteframe_jax.data.video_qa import synthetic_splits

    dst = work / "liteframe_hf"
    log("6/7", f"exporting the LiteFrame model to PyTorch -> {dst}")
    export_liteframe(model_dir, dst)
    jax_model = lf.load(model_dir)
    torch_model = AutoModelForCausalLM.from_pretrained(dst, trust_remote_code=True, dtype=torch.float32).eval()
    _, test = synthetic_splits(SyntheticVideoSpec(), 0, 1)
    rec = test[0]
    pixels = normalize_frames(record_frames(rec, _FRAMES.value, jax_model.image_size))
    layout = PromptLayout(jax_model.tokens_per_group(), jax_model.frames_per_group)
    ids = prompt_ids(jax_model.tokenizer, question_text(rec), _FRAMES.value, layout, None)[None]
    jax_logits = np.asarray(jax_model.logits(ids, pixels))
    jax_tokens = jax_model.generate(ids, pixels, max_new_tokens=6, eos_token_id=None)
    tp = torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())[None]  # (B, T, 3, H, W)
    ti = torch.from_numpy(ids.astype(np.int64))
    with torch.no_grad():
        t_logits = torch_model(input_ids=ti, pixel_values=tp).logits.numpy()
        t_tokens = torch_model.generate(input_ids=ti, pixel_values=tp, max_new_tokens=6, do_sample=False,
                                        eos_token_id=None, min_new_tokens=6)[:, ids.shape[1]:].numpy()
    err = rel_err(t_logits, jax_logits)
    same = bool((t_tokens == jax_tokens).all())
    summary["export_parity"] = {"logits_max_rel_err": err, "identical_greedy_tokens": same}
    log("6/7", f"exported PyTorch vs JAX: logits max rel err {err:.2e}, greedy tokens identical: {same}")
    return err <= 1e-5 and same


def report(work: Path, rows: list[dict]) -> None:
    header = f"{'pipeline':<26}{'tok/frame':>10}{'accuracy':>10}{'chance':>8}{'encode ms':>11}{'enc+prefill ms':>16}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['pipeline']:<26}{r['tokens_per_frame']:>10.2f}{r['accuracy']:>10.3f}{r['chance']:>8.3f}"
                     f"{r['encode_ms']:>11.2f}{r['encode_prefill_ms']:>16.2f}")
    table = "\n".join(lines)
    print(table, flush=True)
    (work / "comparison.txt").write_text(table + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["encode_prefill_ms"], r["accuracy"], s=40 + 4 * r["tokens_per_frame"])
        ax.annotate(f"{r['pipeline']}\n{r['tokens_per_frame']:.2f} tok/frame", (r["encode_prefill_ms"], r["accuracy"]),
                    fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.axhline(rows[0]["chance"], color="grey", linestyle="--", label="chance")
    ax.set_xlabel(f"encode + prefill latency (ms, {_FRAMES.value} frames)")
    ax.set_ylabel("accuracy (held-out synthetic video QA)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(work / "comparison.png", dpi=120)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name, flag in (("frames", _FRAMES), ("ctd_steps", _CTD_STEPS), ("lma_steps", _LMA_STEPS),
                       ("train_videos", _TRAIN_VIDEOS), ("test_videos", _TEST_VIDEOS),
                       ("latency_repeats", _REPEATS)):
        if flag.value < 1:
            raise app.UsageError(f"--{name} must be a positive integer")
    if _LMA_STEPS.value < 2 or _CTD_STEPS.value < 2:
        raise app.UsageError("--ctd_steps and --lma_steps must be >= 2 (warmup + decay)")
    work = Path(_WORKDIR.value)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.time()
    summary: dict = {"flags": {"frames": _FRAMES.value, "ctd_steps": _CTD_STEPS.value, "lma_steps": _LMA_STEPS.value,
                               "train_videos": _TRAIN_VIDEOS.value, "test_videos": _TEST_VIDEOS.value}}
    ok = build_teacher(work, summary)
    student = run_ctd(work, summary)
    models = {encoder: run_lma(work, encoder, student, summary) for encoder in ENCODERS}
    rows = evaluate_pipelines(work, models, summary)
    ok = export_and_check(work, models["student"], summary) and ok
    log("7/7", "comparison on the held-out synthetic benchmark:")
    report(work, rows)
    summary["total_seconds"] = round(time.time() - t0, 1)
    summary["ok"] = ok
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log("7/7", f"wrote {work / 'summary.json'}, {work / 'comparison.png'} ({summary['total_seconds']} s)")
    print("quickstart: OK" if ok else "quickstart: PARITY FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    run(main)
