"""experiments.memory_plan: AOT-compiled train steps of the tiny CTD/LMA configs report per-device memory that
follows the mesh; bad meshes, batches and frame counts fail before compiling; the CLI's --help and errors."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from configs import ctd, lma
from experiments import memory_plan as mp

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_ctd_plan_reports_compiler_memory_and_flops():
    report = mp.plan(ctd.get_config("variant=tiny"), mp.parse_mesh("data=2,fsdp=2,tensor=2"), devices=jax.devices())
    m = report["memory_analysis"]
    assert report["kind"] == "ctd" and report["num_devices"] == 8 and report["frames"] == 4
    assert m["argument_size_in_bytes"] > 0 and m["temp_size_in_bytes"] > 0
    a = report["analytic"]
    inputs = a["all_inputs"]["bytes_per_device"]
    assert inputs == sum(a[k]["bytes_per_device"] for k in a if k != "all_inputs") + 4 + 2 * 4 * 64  # step, stats
    # the compiled program's arguments are the inputs it reads; the rest (the teacher's LLM) the run still holds
    assert m["argument_size_in_bytes"] + m["unread_input_bytes"] == inputs
    assert m["peak_estimate_bytes"] == (m["argument_size_in_bytes"] + m["output_size_in_bytes"]
                                        - m["alias_size_in_bytes"] + m["temp_size_in_bytes"]
                                        + m["unread_input_bytes"])
    assert 0 < a["batch"]["bytes_per_device"] * 4 == a["batch"]["bytes"]  # batch over data x fsdp = 4 shards
    assert report["flops_per_device"] is None or report["flops_per_device"] > 0
    json.dumps(mp.add_fit(report, 80.0))
    assert report["fits"] is True and "DOES NOT FIT" not in mp.format_report(report)
    assert "DOES NOT FIT" in mp.format_report(mp.add_fit(dict(report), 1e-6))


@pytest.fixture(scope="module")
def lma_fsdp4():
    """The tiny LMA step planned (compiled) for mesh fsdp=4 with fp32 frozen params, shared by two tests."""
    return mp.plan(lma.get_config("variant=tiny"), mp.parse_mesh("fsdp=4"), devices=jax.devices())


def test_tiny_lma_params_per_device_shrink_with_fsdp(lma_fsdp4):
    config = lma.get_config("variant=tiny")
    replicated = mp.plan(config, mp.parse_mesh("data=4"), devices=jax.devices())
    sharded = lma_fsdp4
    assert replicated["visual_tokens"] == sharded["visual_tokens"] > 0
    for key in ("frozen_params", "trainable_params", "optimizer_state"):
        r, s = replicated["analytic"][key], sharded["analytic"][key]
        assert r["count"] == s["count"] and r["bytes_per_device"] == r["bytes"]  # data parallel: full copies
        assert s["bytes_per_device"] < 0.5 * r["bytes_per_device"], key
    rm, sm = replicated["memory_analysis"], sharded["memory_analysis"]
    assert sm["argument_size_in_bytes"] < rm["argument_size_in_bytes"] and sm["temp_size_in_bytes"] > 0


def test_invalid_inputs_fail_before_compiling():
    with pytest.raises(mp.PlanError, match="unknown mesh axis 'model'"):
        mp.parse_mesh("data=2,model=4")
    with pytest.raises(mp.PlanError, match="must be >= 1"):
        mp.parse_mesh("data=0")
    assert mp.parse_mesh("fsdp=4") == {"data": 1, "fsdp": 4, "tensor": 1}
    with pytest.raises(mp.PlanError, match="batch_size=8 must be a positive multiple"):
        mp.check_batch(lma.get_config("variant=tiny"), mp.parse_mesh("data=3"))
    with pytest.raises(mp.PlanError, match="--frames must be >= 1"):
        mp.step_spec(ctd.get_config("variant=tiny"), 0)
    with pytest.raises(mp.PlanError, match="do not fit data.max_length=224"):  # 64 frames x 4 tokens > 224
        mp.step_spec(lma.get_config("variant=tiny,encoder=teacher"), 64)
    fitted = lma.get_config("variant=tiny")
    fitted.data.max_length = 0
    with pytest.raises(mp.PlanError, match="fitted to the records when the run starts"):
        mp.step_spec(fitted)
    with pytest.raises(mp.PlanError, match="give the mesh to plan with --mesh"):
        mp.mesh_from_config(ctd.get_config("variant=tiny"))  # data=-1


def test_cpu_devices_come_from_a_rerun_only_when_missing():
    env = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert not mp.needs_rerun(8, "cpu", env) and mp.needs_rerun(16, "cpu", env)
    assert mp.needs_rerun(2, "cpu", {}) and not mp.needs_rerun(2, "native", {})
    assert not mp.needs_rerun(16, "cpu", {**env, mp.CHILD_ENV: "1"})


def test_cli_help_and_bad_mesh():
    proc = subprocess.run([sys.executable, "-m", "experiments.memory_plan", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--mesh" in proc.stdout and "--device_memory_gb" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "experiments.memory_plan", "--config", "configs/ctd.py:variant=tiny",
                           "--mesh", "data=2,pipeline=2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "error: unknown mesh axis 'pipeline'" in proc.stderr, proc.stderr[-2000:]


def test_bf16_frozen_params_take_half_the_bytes(lma_fsdp4):
    fp32 = lma_fsdp4
    bf16 = mp.plan(lma.get_config("variant=tiny"), mp.parse_mesh("fsdp=4"), devices=jax.devices(),
                   frozen_dtype="bfloat16")
    assert (fp32["frozen_dtype"], bf16["frozen_dtype"]) == ("float32", "bfloat16")
    a, b = fp32["analytic"], bf16["analytic"]
    assert b["frozen_params"]["bytes"] * 2 == a["frozen_params"]["bytes"]
    assert b["trainable_params"]["bytes"] == a["trainable_params"]["bytes"]  # trained params stay fp32
