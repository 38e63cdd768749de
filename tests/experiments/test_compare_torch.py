"""experiments.compare_torch: JAX vs PyTorch timing of the teacher encoder and LLM prefill (tiny sizes; the
timings themselves are never asserted, only that they exist and that both sides compute the same function)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import compare_torch as ct

ROOT = Path(__file__).resolve().parents[2]


def _env():
    """The CLI as a user runs it: one CPU device (the test session simulates 8)."""
    return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


def _check_part(record: dict) -> None:
    assert record["flops"] > 0
    assert record["max_rel_err"] < 1e-4
    for fw in ("jax", "torch"):
        assert record[fw]["median_ms"] > 0 and record[fw]["flops_per_s"] > 0
        assert record[fw]["fraction_of_matmul_rate"] > 0
    assert record["ratio_torch_over_jax"] == pytest.approx(record["torch"]["median_ms"] / record["jax"]["median_ms"])


def test_cli_tiny_writes_json_with_both_frameworks(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "experiments.compare_torch", "--size", "tiny", "--repeats", "2",
                           "--warmup", "1", "--matmul_n", "256", "--out", str(out)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "torch/JAX" in proc.stdout and "encoder" in proc.stdout and "prefill" in proc.stdout
    report = json.loads(out.read_text())
    assert set(report["parts"]) == {"encoder", "prefill"}
    for record in report["parts"].values():
        _check_part(record)
        assert record["jax"]["repeats"] == record["torch"]["repeats"] == 2
    for fw in ("jax", "torch"):
        assert report["matmul"][fw]["flops_per_s"] > 0 and report["matmul"][fw]["n"] == 256
    assert report["machine"]["torch_threads"] >= 1 and report["options"]["dtype"] == "float32"


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_real_checkpoint_directory_in_either_layout(tmp_path, layout):
    from testing.tiny_internvl import TinySpec, build_reference, write_checkpoint

    spec = TinySpec()
    src = write_checkpoint(build_reference(spec), spec, tmp_path / layout, layout)
    report = ct.compare(ct.Options(checkpoint=str(src), parts=("encoder",), frames=1, repeats=1, warmup=0,
                                   matmul_n=64), log=lambda _: None)
    _check_part(report["parts"]["encoder"])
    assert report["model"]["vision"]["hidden_size"] == spec.vision_hidden


def test_validate_reports_every_bad_value():
    with pytest.raises(ValueError) as e:
        ct.validate(ct.Options(size="huge", frames=0, repeats=0, parts=("encoder", "decode"), dtype="float16"))
    for word in ("--size", "--frames=0", "--repeats=0", "--parts", "--dtype"):
        assert word in str(e.value)
    opts = ct.validate(ct.Options(size="base"))
    assert (opts.frames, opts.prompt_tokens) == (ct.SIZES["base"].frames, ct.SIZES["base"].prompt_tokens)


def test_real_size_counts_match_internvl3_8b():
    s = ct.SIZES["real"]
    assert 0.28e9 < ct.vision_param_count(s) - 4 * 1024 * 3584 - 3584 ** 2 < 0.32e9  # InternViT-300M
    assert 7.4e9 < ct.text_param_count(s) < 7.8e9  # Qwen2.5-7B (untied head)


def test_bad_flag_exits_1_with_message():
    proc = subprocess.run([sys.executable, "-m", "experiments.compare_torch", "--frames=0"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "error: --frames=0 must be >= 1" in proc.stderr


def test_help_exits_0_and_explains():
    proc = subprocess.run([sys.executable, "-m", "experiments.compare_torch", "--help"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "PyTorch" in proc.stdout and "--prompt_tokens" in proc.stdout and "--checkpoint" in proc.stdout
