"""Throughput and model FLOP utilization (MFU) of the CTD train step on this host's devices.

    python -m experiments.train_throughput --config configs/ctd.py:variant=8b [--batch_sizes 8,32]
        [--attention xla|chunked|cudnn] [--targets online|cached] [--peak_tflops 989] [--out FILE.json]
        [--config.X=V ...]

Builds the library's CTD train step (liteframe_jax.train.ctd_step, the run's shardings and donation) at the
config's sizes with random weights (no checkpoint is read: the teacher's architecture comes from
config.teacher.model, or from teacher.checkpoint's metadata when set), on a mesh with every local device on the
batch axes (data). For each batch size it times --steps steps after --warmup (median step time) and reports:
  - clips/s and frames/s;
  - model FLOPs per step, analytic (experiments/flops.py): 3 x the student's forward (forward + backward), plus
    the frozen teacher's InternViT and WAP when targets are computed online (forward only);
  - XLA's FLOP count of the compiled step (cost analysis; includes elementwise work);
  - MFU = analytic FLOPs / (step time x devices x --peak_tflops), and the same against the measured bf16 matmul
    rate of this device (experiments.timing.matmul_rate), which is what the hardware really delivers.
The default peak is the H100/H200 SXM dense bf16 datasheet rate (989 TFLOP/s).

--targets cached feeds random targets of the right shape in the batch, as a run with train.target_cache does:
the step then trains the student only (the teacher is not on the devices' critical path).
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
from absl import flags
from flax import linen as nn

from experiments import flops
from experiments.memory_plan import PlanError, as_dtype, ctd_spec
from experiments.timing import matmul_rate, summarize
from liteframe_jax.cli import define_config_flag, error as cli_error, run
from liteframe_jax.sharding import batch_shardings, make_mesh, rules_from_config
from liteframe_jax.train import ctd_step

H100_BF16_DENSE_TFLOPS = 989.0


def analytic_step_flops(setup: ctd_step.CTDSetup, batch: int, frames: int, online: bool) -> dict:
    """Model FLOPs of one CTD step over `batch` clips of `frames` frames: {"student", "teacher", "total"}."""
    student = 3 * flops.student_encoder(setup.student, frames)["total"] * batch
    teacher = 0.0
    if online:
        vit = flops.internvit(setup.teacher.vision, frames)["total"]
        gh, gw = setup.teacher.vision.grid
        pool = flops.wap_pooling(setup.wap, (frames, gh, gw, setup.teacher.vision.hidden_size))["total"]
        teacher = (vit + pool) * batch
    return {"student": student, "teacher": teacher, "total": student + teacher}


def random_like(abstract_tree, shardings, seed: int, scale: float = 0.02):
    """Random normal arrays (times `scale`) of the shapes/dtypes of `abstract_tree`, created in `shardings`."""
    leaves, treedef = jax.tree.flatten(abstract_tree)

    def make():
        key = jax.random.key(seed)
        return treedef.unflatten([(scale * jax.random.normal(jax.random.fold_in(key, i), x.shape, jnp.float32)
                                   ).astype(x.dtype) for i, x in enumerate(leaves)])

    return jax.jit(make, out_shardings=shardings)()


def measure(config, batch_size: int, frames: int | None, online: bool, steps: int, warmup: int,
            frozen_dtype: str | None = "bfloat16", log=print) -> dict:
    """Times the CTD step at `batch_size` clips; returns the report entry for it."""
    config = config.copy_and_resolve_references()
    config.train.batch_size = batch_size
    config.train.target_cache = "" if online else "cached"
    spec = ctd_spec(config, frames)
    setup, tx = spec.setup, spec.tx
    n = jax.device_count()
    if batch_size % n:
        raise PlanError(f"batch size {batch_size} is not a multiple of the {n} devices")
    mesh = make_mesh({"data": n, "fsdp": 1, "tensor": 1})
    rules = rules_from_config(config.sharding_rules)
    # Random parameters + a fresh optimizer state: as fast to build as the run's init and the same step cost
    # (the library's init, with its per-leaf initializers, compiled for minutes on one GPU).
    abstract_state, state_sh = ctd_step.state_shardings(setup, tx, mesh, rules)
    params = random_like(abstract_state["params"], state_sh["params"], config.seed)
    state = {"step": jax.device_put(jnp.zeros((), jnp.int32), state_sh["step"]), "params": params,
             "opt": jax.jit(tx.init, out_shardings=state_sh["opt"])(params)}
    teacher_abstract = as_dtype(nn.unbox(ctd_step.abstract_teacher(setup)), frozen_dtype)
    teacher = random_like(teacher_abstract, ctd_step.teacher_shardings(setup, mesh, rules), 1)
    c = setup.student.out_dim
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    stats = jax.device_put((jnp.zeros((c,), jnp.float32), jnp.ones((c,), jnp.float32)), replicated)
    batch = random_like(spec.batch, batch_shardings(mesh, spec.batch, rules), 2, scale=1.0)
    step = ctd_step.make_train_step(setup, tx, mesh, spec.batch, rules)

    t0 = time.perf_counter()
    compiled = step.lower(state, teacher, stats, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    xla_flops = float(cost["flops"]) if cost and "flops" in cost else None
    log(f"[train_throughput] batch {batch_size}: compiled in {compile_s:.1f} s")

    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, teacher, stats, batch)
        jax.block_until_ready((state, metrics))
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    t = summarize(times)
    model = analytic_step_flops(setup, batch_size, spec.frames, online)
    sec = t["median_ms"] / 1e3
    entry = {"batch_size": batch_size, "frames": spec.frames, "targets": "online" if online else "cached",
             "step_ms": t, "compile_s": compile_s, "clips_per_s": batch_size / sec,
             "frames_per_s": batch_size * spec.frames / sec, "analytic_flops": model,
             "xla_flops_per_device": xla_flops, "achieved_tflops_per_device": model["total"] / sec / n / 1e12,
             "loss": float(metrics["loss"]) if "loss" in metrics else None}
    log(f"[train_throughput] batch {batch_size}: {t['median_ms']:.1f} ms/step, {entry['clips_per_s']:.1f} clips/s, "
        f"{entry['achieved_tflops_per_device']:.1f} TFLOP/s per device")
    return entry


def main(argv):
    del argv
    f = flags.FLAGS
    config = f.config
    if config.kind != "ctd":
        return cli_error(f"config.kind={config.kind!r}: this benchmark times the CTD step (configs/ctd.py)")
    try:
        sizes = [int(b) for b in f.batch_sizes]
    except ValueError:
        return cli_error(f"--batch_sizes {f.batch_sizes} must be integers")
    if any(b < 1 for b in sizes) or f.steps < 1 or f.warmup < 0 or f.peak_tflops <= 0:
        return cli_error("--batch_sizes and --steps must be >= 1, --warmup >= 0, --peak_tflops > 0")
    if f.attention:
        config.teacher.model.attention_impl = f.attention
        config.student.attention_impl = f.attention
    dev = jax.devices()[0]
    print(f"[train_throughput] {jax.device_count()} x {dev.device_kind} ({jax.default_backend()}), jax "
          f"{jax.__version__}; student dtype {config.student.dtype}, teacher dtype {config.teacher.model.dtype}, "
          f"attention {config.student.attention_impl}", flush=True)
    rate = matmul_rate(f.matmul_n, jnp.bfloat16)
    print(f"[train_throughput] measured bf16 matmul rate: {rate['flops_per_s'] / 1e12:.1f} TFLOP/s", flush=True)
    entries = []
    for b in sizes:
        try:
            e = measure(config, b, f.frames, f.targets == "online", f.steps, f.warmup, f.frozen_dtype)
        except PlanError as err:
            return cli_error(str(err))
        except Exception as err:  # noqa: BLE001 - out of memory at a large batch is a result
            msg = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            print(f"[train_throughput] batch {b}: failed: {msg}", flush=True)
            entries.append({"batch_size": b, "error": msg})
            continue
        per_dev = e["analytic_flops"]["total"] / (e["step_ms"]["median_ms"] / 1e3) / jax.device_count()
        e["mfu_vs_peak"] = per_dev / (f.peak_tflops * 1e12)
        e["mfu_vs_measured_matmul"] = per_dev / rate["flops_per_s"]
        print(f"[train_throughput] batch {b}: MFU {100 * e['mfu_vs_peak']:.1f}% of {f.peak_tflops:g} TFLOP/s, "
              f"{100 * e['mfu_vs_measured_matmul']:.1f}% of the measured matmul rate", flush=True)
        entries.append(e)
    report = {"device": dev.device_kind, "devices": jax.device_count(), "jax": jax.__version__,
              "peak_tflops": f.peak_tflops, "matmul_rate": rate, "entries": entries}
    if f.out:
        with open(f.out, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    define_config_flag("config", "A CTD config, e.g. configs/ctd.py:variant=8b; --config.a.b=VALUE sets a field.")
    flags.DEFINE_list("batch_sizes", ["8"], "Global batch sizes to time (clips per step).")
    flags.DEFINE_integer("frames", None, "Frames per clip (default: the config's data.num_frames).")
    flags.DEFINE_enum("targets", "online", ["online", "cached"], "Teacher targets computed in the step or fed.")
    flags.DEFINE_string("attention", None, "Attention implementation for teacher and student (default: config's).")
    flags.DEFINE_enum("frozen_dtype", "bfloat16", ["bfloat16", "float32"],
                      "Stored dtype of the frozen teacher (imported InternVL3 releases are bfloat16).")
    flags.DEFINE_integer("steps", 5, "Timed steps per batch size.")
    flags.DEFINE_integer("warmup", 2, "Untimed steps first.")
    flags.DEFINE_float("peak_tflops", H100_BF16_DENSE_TFLOPS, "Per-device peak for MFU (TFLOP/s).")
    flags.DEFINE_integer("matmul_n", 8192, "Side of the bf16 matmul that measures the device's rate.")
    flags.DEFINE_string("out", None, "Write the report as JSON here.")
    flags.mark_flags_as_required(["config"])
    run(main)
