"""The README's main job runs end to end (reduced sizes): the shipped pre-trained teacher exported to both PyTorch
InternVL3 layouts and imported back with parity, CTD, LMA for the student and the teacher + post-hoc WAP, the
five-row comparison with intervals, ceilings, FLOPs and latency, the LiteFrame export with parity, and the
table/JSON/PNG outputs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_quickstart(work: Path, *args: str) -> subprocess.CompletedProcess:
    """The main job at T = 4, 8T = 8, with the given step counts and sizes; asserts it exits 0."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", "--workdir", str(work), "--frames", "4",
                           "--scale", "2", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    return proc


def test_quickstart_runs_every_stage_and_reports_parity(tmp_path):
    work = tmp_path / "qs"
    proc = _run_quickstart(work, "--ctd_steps", "4", "--lma_steps", "4", "--train_videos", "10",
                           "--lma_shape_videos", "6", "--test_videos", "3", "--latency_repeats", "2")
    assert "quickstart: OK" in proc.stdout and "[8/8]" in proc.stdout
    summary = json.loads((work / "summary.json").read_text())
    teacher, export = summary["teacher_parity"], summary["export_parity"]
    assert teacher["identical_greedy_tokens"] and teacher["original_import_bit_identical"]
    assert teacher["logits_max_rel_err"] <= 1e-5
    assert export["identical_greedy_tokens"] and export["logits_max_rel_err"] <= 1e-5
    rows = [(r["pipeline"], r["frames"], r["visual_tokens"]) for r in summary["pipelines"]]
    # 56 px frames: the teacher gives 4 tokens per frame, WAP (2, 2, 2) and the student 1 token per 2 frames
    assert rows == [("teacher (InternVL3 layout)", 4, 16), ("teacher + post-hoc WAP", 4, 2),
                    ("teacher + post-hoc WAP", 8, 4), ("LiteFrame student", 4, 2), ("LiteFrame student", 8, 4)]
    for r in summary["pipelines"]:
        assert r["n"] == 21 and r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
        assert 0 <= r["ceiling"] <= 1 and r["encode_prefill_ms_q25"] <= r["encode_prefill_ms"] > 0
        assert r["vision_gflops"] > 0 and r["prefill_gflops"] > 0 and r["real_vision_gflops"] > 0
    assert summary["control_shuffled_clips"]["n"] == 21
    # by default WAP pools after the projector, so LMA trains the full LLM alone; the student's last stage strides
    # 4 x 4 in space and emits the LLM's width
    assert {e: (v["steps"], v["shape_videos"], v["trainable"]) for e, v in summary["lma"].items()} == \
        {"student": (4, 6, "llm"), "teacher_wap": (4, 6, "llm")}
    assert summary["ctd"]["wap_location"] == "post_projector"
    student = json.loads((work / "ctd" / "student" / "liteframe.json").read_text())["model"]
    assert student["location"] == "post_projector"
    assert student["student"]["downsample"][-1]["stride"] == [2, 4, 4]
    assert student["student"]["out_dim"] == 96  # the tiny teacher's LLM width
    # both LMA runs read the clips rendered once, removed after them
    stores = {json.loads((work / f"lma_{e}" / "config.json").read_text())["data"]["frame_store"]
              for e in ("student", "teacher_wap")}
    assert stores == {str(work / "lma_frames")} and not (work / "lma_frames").exists()
    # LMA asks every question with the always-visible object drawn, as the benchmark does, on sequences fitted to
    # the records
    for e in ("student", "teacher_wap"):
        data = json.loads((work / f"lma_{e}" / "config.json").read_text())["data"]
        assert data["synthetic_separate_persistent"] is False and data["max_length"] == 0
        assert summary["lma"][e]["separate_persistent"] is False
    # the goals' comparisons on the same questions, with paired intervals
    acc = {(r["pipeline"], r["frames"]): r["accuracy"] for r in summary["pipelines"]}
    diffs = summary["paired_differences"]
    pairs = ((("LiteFrame student", 8), ("teacher (InternVL3 layout)", 4)),
             (("LiteFrame student", 8), ("teacher + post-hoc WAP", 8)),
             (("LiteFrame student", 4), ("teacher + post-hoc WAP", 4)))
    assert [(d["first"], d["second"]) for d in diffs] == [(f"{a} @ {t}", f"{b} @ {u}") for (a, t), (b, u) in pairs]
    for d, (first, second) in zip(diffs, pairs):
        assert d["n"] == 21 and abs(d["difference"] - (acc[first] - acc[second])) < 1e-9
        assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
    assert "LiteFrame student @ 8 minus teacher (InternVL3 layout) @ 4" in (work / "comparison.txt").read_text()
    assert (work / "comparison.png").stat().st_size > 1000 and (work / "comparison.txt").is_file()
    assert (work / "teacher_original" / "config.json").is_file() and (work / "liteframe_hf" / "config.json").is_file()


@pytest.mark.parametrize("location,stride,out_dim,trainable", [
    ("pre_shuffle", [2, 2, 2], 64, "projector+lora"),  # the tiny teacher's ViT width
    ("post_shuffle", [2, 4, 4], 4 * 64, "projector+llm"),  # its ViT features, 2 x 2 shuffled
])
def test_other_wap_locations_keep_the_token_counts_with_a_student_of_that_locations_width(tmp_path, location, stride,
                                                                                         out_dim, trainable):
    """--wap_location pre_shuffle (the real-size configs' pooling): post-hoc WAP and CTD pool the ViT's patch
    features before pixel shuffle and the student strides 2 x 2 in space. post_shuffle: they pool after pixel
    shuffle, the student strides 4 x 4. Before the projector, LMA trains it with LoRA or the LLM (here on the
    separated split, --lma_separate). Every pipeline keeps its token count."""
    work = tmp_path / "qs"
    _run_quickstart(work, "--ctd_steps", "3", "--lma_steps", "2", "--train_videos", "6", "--test_videos", "2",
                    "--latency_repeats", "1", "--wap_location", location, "--lma_trainable", trainable,
                    "--lma_separate")
    summary = json.loads((work / "summary.json").read_text())
    assert summary["ctd"]["wap_location"] == location
    assert summary["lma"]["student"]["separate_persistent"] is True  # the separated split, asked for
    assert [r["visual_tokens"] for r in summary["pipelines"]] == [16, 2, 4, 2, 4]
    assert {e: v["trainable"] for e, v in summary["lma"].items()} == {"student": trainable, "teacher_wap": trainable}
    student = json.loads((work / "ctd" / "student" / "liteframe.json").read_text())["model"]
    assert student["location"] == location
    assert student["student"]["downsample"][-1]["stride"] == stride
    assert student["student"]["out_dim"] == out_dim
    assert (work / "liteframe_hf" / "config.json").is_file()


def test_quickstart_help_exits_zero_and_bad_flags_fail():
    proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--lma_steps" in proc.stdout and "--pretrain_steps" in proc.stdout
    for flag, value, message in (("--lma_steps", "0", "lma_steps"), ("--scale", "32", "frames x --scale"),
                                 ("--teacher", "/nonexistent", "not a checkpoint directory"),
                                 ("--lma_trainable", "llm", "projector+lora"),
                                 ("--lma_shape_videos", "-1", "lma_shape_videos must be >= 0")):
        proc = subprocess.run([sys.executable, "-m", "experiments.quickstart", flag, value], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
