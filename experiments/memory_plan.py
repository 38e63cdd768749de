"""Plan per-device memory of a CTD or LMA train step for a device mesh, without the hardware or checkpoints.

    python -m experiments.memory_plan --config configs/lma.py:variant=8b,encoder=student \\
        --mesh data=2,fsdp=4 [--frames 512] [--device_memory_gb 80] [--out plan.json] [--config.X=V ...]

Builds the experiment's train step at its real sizes from the config alone (parsed by
liteframe_jax.train.experiment as a run parses it, without the checks only a run needs: the model shapes in
config.teacher.model / config.student; a set teacher.checkpoint / student.checkpoint is only read for its
metadata, never its weights), gives it abstract inputs (jax.ShapeDtypeStruct carrying the run's shardings: train
state, frozen params, batch), ahead-of-time compiles it for the mesh and reports per device:

  - analytic bytes: trainable params, frozen params (CTD: the teacher; LMA: the frozen part of the pipeline),
    optimizer state and the batch, each as the sum over leaves of the bytes of one shard
    (`sharding.shard_shape(shape)`);
  - the compiler's memory analysis: argument, output, alias (outputs written into donated inputs), temp
    (XLA's arena for intermediates, sized for the peak of its schedule) and generated code;
    compiled peak = argument + output - alias + temp: everything that is live at once at the worst point of the
    step (inputs stay allocated, outputs not aliased to a donated input are new buffers, temp is the arena);
    peak estimate = compiled peak + unread inputs: jit leaves arguments the step never reads out of the compiled
    program, but the run still holds them on every device;
  - FLOPs per device from the compiler's cost analysis, when the backend reports them.

--mesh: comma-separated axis=size over data, fsdp, tensor (missing axes are 1; it replaces config.mesh, which is
  used when --mesh is absent and has no -1). train.batch_size must be a multiple of the batch axes (data x fsdp).
--frames: CTD: the clip length (data.num_frames = student.num_frames); LMA: the frame count of the curriculum
  stage to plan (default: the largest stage; every stage compiles its own step).

Devices. The mesh needs data x fsdp x tensor devices. With --platform=cpu (default) the step is compiled for
simulated CPU devices: the process must start with JAX_PLATFORMS=cpu and
XLA_FLAGS=--xla_force_host_platform_device_count=N, which JAX reads once when its backend starts, so when the
environment does not already provide them this command re-runs itself once in a subprocess with them set (same
arguments and working directory; nothing is set in the calling process). --platform=native compiles for this
host's real accelerators (jax.devices(), at least N of them) and never re-runs.

These are estimates. The CPU compiler fuses, schedules and rematerializes differently from the GPU/TPU compilers
(and treats bfloat16 math differently), so its temp size can be far from a GPU's or TPU's; compile with
--platform=native on the target hardware for the numbers that count there. Nothing outside the step is
counted: runtime/framework overhead, communication buffers, data prefetching, a checkpoint being saved, nor JAX's
GPU preallocation fraction (XLA_PYTHON_CLIENT_MEM_FRACTION, 0.75 by default). When a backend gives no memory
analysis, only the analytic bytes are reported (and said so).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import linen as nn

from liteframe_jax.sharding import MESH_AXES, batch_shardings, make_mesh, rules_from_config
from liteframe_jax.train import ctd_step, experiment, lma_step
from liteframe_jax.train.checkpointing import abstract_with_shardings
from liteframe_jax.train.optim import make_optimizer
from liteframe_jax.cli import error as cli_error

GIB = 2 ** 30
CHILD_ENV = "LITEFRAME_MEMORY_PLAN_CHILD"  # set in the re-run subprocess: never re-run twice
MEMORY_FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes", "temp_size_in_bytes",
                 "generated_code_size_in_bytes")
CPU_NOTE = ("estimate: compiled by the CPU compiler; GPU/TPU compilers fuse, schedule and rematerialize differently "
            "(plan with --platform=native on the target hardware), and runtime overhead, communication buffers and "
            "JAX's GPU preallocation fraction are not counted")
NATIVE_NOTE = ("compiled for {device_kind}; runtime overhead, communication buffers and JAX's GPU preallocation "
               "fraction are not counted")


class PlanError(ValueError):
    """A mesh, config or --frames value that cannot be planned; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything needed to build and lower one train step, made from the config alone (no devices touched).

    batch: {name: jax.ShapeDtypeStruct} of the global batch, e.g. CTD pixels (B, T, H, W, 3) float32;
    LMA pixels (B, T, H, W, 3) float32 + input_ids / attention_mask (B, L) int32 + loss_mask (B, L) float32.
    """

    kind: str  # "ctd" | "lma"
    setup: object  # CTDSetup | LMASetup
    tx: object  # optax.GradientTransformation
    batch: dict
    frames: int
    info: dict  # descriptive fields for the report (encoder, trainable, visual tokens, ...)


# ------------------------------------------------------------------------------------------------ validation

def parse_mesh(text: str) -> dict[str, int]:
    """"data=2,fsdp=4" -> {"data": 2, "fsdp": 4, "tensor": 1} (every known axis, in MESH_AXES order)."""
    sizes: dict[str, int] = {}
    for item in filter(None, text.replace(" ", "").split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise PlanError(f"--mesh item {item!r} must look like axis=size (axes: {', '.join(MESH_AXES)})")
        if name not in MESH_AXES:
            raise PlanError(f"unknown mesh axis {name!r} in --mesh; known axes: {', '.join(MESH_AXES)}")
        if name in sizes:
            raise PlanError(f"mesh axis {name!r} given twice in --mesh")
        try:
            sizes[name] = int(value)
        except ValueError:
            raise PlanError(f"--mesh size {value!r} of axis {name!r} is not an integer") from None
        if sizes[name] < 1:
            raise PlanError(f"--mesh size of axis {name!r} must be >= 1, got {sizes[name]}")
    if not sizes:
        raise PlanError(f"--mesh is empty; give axis=size pairs, e.g. data=2,fsdp=4 (axes: {', '.join(MESH_AXES)})")
    return {a: sizes.get(a, 1) for a in MESH_AXES}


def mesh_from_config(config) -> dict[str, int]:
    """config.mesh when every size is explicit, in MESH_AXES order; PlanError when it holds -1 (give --mesh)."""
    sizes = {k: int(v) for k, v in dict(config.mesh).items()}
    if any(v < 1 for v in sizes.values()):
        raise PlanError(f"config.mesh {sizes} depends on the device count; give the mesh to plan with --mesh, "
                        "e.g. --mesh data=2,fsdp=4")
    return parse_mesh(",".join(f"{k}={v}" for k, v in sizes.items()))


def batch_axes(config, mesh_axes: dict[str, int]) -> tuple[str, ...]:
    """The mesh axes the batch dimension is split over (config.sharding_rules' "batch" rule)."""
    target = dict(rules_from_config(config.sharding_rules)).get("batch")
    axes = (target,) if isinstance(target, str) else tuple(target or ())
    return tuple(a for a in axes if a in mesh_axes)


def check_batch(config, mesh_axes: dict[str, int]) -> None:
    """PlanError unless train.batch_size is a positive multiple of the product of the batch axes."""
    b = int(config.train.batch_size)
    axes = batch_axes(config, mesh_axes)
    shards = math.prod(mesh_axes[a] for a in axes)
    if b < 1 or b % shards:
        raise PlanError(f"train.batch_size={b} must be a positive multiple of the batch shards "
                        f"{' x '.join(f'{a}={mesh_axes[a]}' for a in axes) or '1'} = {shards}; change "
                        "--config.train.batch_size or --mesh")


# ------------------------------------------------------------------------------------------------ step specs

def ctd_spec(config, frames: int | None = None) -> StepSpec:
    """CTD step spec for clips of `frames` frames (default data.num_frames); pixels (B, T, H, W, 3) float32,
    + targets (B, T', H', W', C) when train.target_cache is set (the run then feeds cached targets)."""
    exp = experiment.parse_ctd(config, frames, for_run=False)
    student, t = exp.setup.student, exp.data.num_frames
    b = int(config.train.batch_size)
    batch = {"pixels": jax.ShapeDtypeStruct((b, t, *student.image_size, 3), jnp.float32)}
    if config.train.target_cache:
        batch["targets"] = jax.ShapeDtypeStruct((b, *student.output_shape(t)), jnp.float32)
    info = {"student_frames": t, "targets": "cached" if config.train.target_cache else "teacher online",
            "target_shape": list(student.output_shape(t))}
    return StepSpec("ctd", exp.setup, make_optimizer(exp.optim), batch, t, info)


def lma_spec(config, frames: int | None = None) -> StepSpec:
    """LMA step spec for the curriculum stage of `frames` frames (default: the largest stage). Batch: pixels
    (B, T, H, W, 3) float32, input_ids (B, L) int32, loss_mask (B, L) float32, attention_mask (B, L) int32 with
    L = data.max_length (the layout of liteframe_jax.train.qa_data.example_batch)."""
    exp = experiment.parse_lma(config, for_run=False)
    setup = exp.setup
    t = int(frames or max(f for f, _ in exp.curriculum))
    length = int(config.data.max_length)
    if length == 0:
        raise PlanError("data.max_length=0 is fitted to the records when the run starts (its log states the "
                        "length); plan for a length: --config.data.max_length=N")
    visual = setup.visual.num_visual_tokens(t)
    if visual >= length:
        raise PlanError(f"{t} frames give {visual} visual tokens ({setup.encoder} encoder), which do not fit "
                        f"data.max_length={length} (every prompt would be skipped); lower --frames or raise "
                        "--config.data.max_length")
    b = int(config.train.batch_size)
    batch = {"pixels": jax.ShapeDtypeStruct((b, t, *tuple(config.data.image_size), 3), jnp.float32),
             "input_ids": jax.ShapeDtypeStruct((b, length), jnp.int32),
             "loss_mask": jax.ShapeDtypeStruct((b, length), jnp.float32),
             "attention_mask": jax.ShapeDtypeStruct((b, length), jnp.int32)}
    info = {"encoder": setup.encoder, "trainable": list(setup.trainable), "curriculum": config.curriculum,
            "visual_tokens": visual, "sequence_length": length}
    return StepSpec("lma", setup, make_optimizer(exp.optim, exp.group_lrs), batch, t, info)


def step_spec(config, frames: int | None = None) -> StepSpec:
    """The step spec of config.kind; PlanError for an unknown kind, bad --frames or an inconsistent config."""
    if frames is not None and frames < 1:
        raise PlanError(f"--frames must be >= 1, got {frames}")
    if config.kind not in ("ctd", "lma"):
        raise PlanError(f"config.kind={config.kind!r} cannot be planned (supported: ctd, lma)")
    try:
        return (ctd_spec if config.kind == "ctd" else lma_spec)(config, frames)
    except PlanError:
        raise
    except (ValueError, FileNotFoundError, KeyError) as e:  # ConfigError is a ValueError
        raise PlanError(f"cannot plan this {config.kind.upper()} config"
                        f"{f' at {frames} frames' if frames else ''}: {e}") from None


# ------------------------------------------------------------------------------------------------ abstract inputs

def with_shardings(tree, shardings):
    """ShapeDtypeStructs of `tree` (arrays or ShapeDtypeStructs) carrying `shardings`."""
    return abstract_with_shardings(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree), shardings)


def as_dtype(tree, dtype: str | None):
    """Floating leaves of `tree` (ShapeDtypeStructs) in `dtype` (None: unchanged)."""
    if dtype is None:
        return tree
    cast = lambda x: jax.ShapeDtypeStruct(x.shape, jnp.dtype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                                          else x.dtype)
    return jax.tree.map(cast, tree)


def abstract_args(spec: StepSpec, mesh, rules, frozen_dtype: str | None = None) -> tuple:
    """The step's arguments as sharded ShapeDtypeStructs, in call order.
    CTD: (state, teacher params, (mean (C,), std (C,)), batch); LMA: (state, frozen params, batch).
    frozen_dtype: the stored dtype of the frozen parameters (teacher / frozen part); None = the model's fp32."""
    batch = with_shardings(spec.batch, batch_shardings(mesh, spec.batch, rules))
    if spec.kind == "ctd":
        abstract, sh = ctd_step.state_shardings(spec.setup, spec.tx, mesh, rules)
        teacher = with_shardings(as_dtype(nn.unbox(ctd_step.abstract_teacher(spec.setup)), frozen_dtype),
                                 ctd_step.teacher_shardings(spec.setup, mesh, rules))
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        c = spec.setup.student.out_dim
        stats = tuple(jax.ShapeDtypeStruct((c,), jnp.float32, sharding=replicated) for _ in range(2))
        return with_shardings(abstract, sh), teacher, stats, batch
    abstract, sh, frozen_sh = lma_step.state_shardings(spec.setup, spec.tx, mesh, rules)
    frozen = as_dtype(nn.unbox(lma_step.split_abstract(spec.setup)[1]), frozen_dtype)
    return with_shardings(abstract, sh), with_shardings(frozen, frozen_sh), batch


def make_step(spec: StepSpec, mesh, rules):
    """The library's jitted train step (same shardings and donation as the training run)."""
    if spec.kind == "ctd":
        return ctd_step.make_train_step(spec.setup, spec.tx, mesh, spec.batch, rules)
    return lma_step.make_train_step(spec.setup, spec.tx, mesh, spec.batch, rules)


def tree_bytes(tree) -> dict:
    """{"count": elements, "bytes": total bytes, "bytes_per_device": bytes of one shard summed over leaves}
    for a tree of sharded ShapeDtypeStructs (a leaf's shard: sharding.shard_shape(shape))."""
    count = total = per_device = 0
    for x in jax.tree.leaves(tree):
        size = jnp.dtype(x.dtype).itemsize
        count += math.prod(x.shape)
        total += math.prod(x.shape) * size
        per_device += math.prod(x.sharding.shard_shape(x.shape)) * size
    return {"count": int(count), "bytes": int(total), "bytes_per_device": int(per_device)}


def analytic_bytes(args: tuple) -> dict:
    """Per-device bytes of trainable params, frozen params, optimizer state, batch and all step arguments
    together (from the shardings)."""
    state, frozen, batch = args[0], args[1], args[-1]
    return {"trainable_params": tree_bytes(state["params"]), "frozen_params": tree_bytes(frozen),
            "optimizer_state": tree_bytes(state["opt"]), "batch": tree_bytes(batch), "all_inputs": tree_bytes(args)}


# ------------------------------------------------------------------------------------------------ compile + report

def memory_stats(compiled, input_bytes: int) -> dict | None:
    """The compiler's memory analysis (bytes per device) + compiled_peak_bytes (argument + output - alias + temp),
    unread_input_bytes (bytes of the `input_bytes` of all step arguments that the compiled program dropped as
    unused but the run keeps on device) and peak_estimate_bytes (their sum); None when unavailable."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backends without it raise various errors
        return None
    if m is None:
        return None
    out = {k: int(getattr(m, k)) for k in MEMORY_FIELDS if getattr(m, k, None) is not None}
    if not all(k in out for k in MEMORY_FIELDS[:4]):
        return None
    out["compiled_peak_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                                  - out["alias_size_in_bytes"] + out["temp_size_in_bytes"])
    out["unread_input_bytes"] = max(0, int(input_bytes) - out["argument_size_in_bytes"])
    out["peak_estimate_bytes"] = out["compiled_peak_bytes"] + out["unread_input_bytes"]
    return out


def flops(compiled) -> float | None:
    """FLOPs per device from the compiler's cost analysis; None when not reported."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    return float(cost["flops"]) if cost and "flops" in cost else None


def plan(config, mesh_axes: dict[str, int], frames: int | None = None, devices=None, log=None,
         frozen_dtype: str | None = None) -> dict:
    """Compiles the config's train step for `mesh_axes` on `devices` (default: the first N of jax.devices())
    with abstract inputs and returns the report dict (bytes are per device). Raises PlanError before compiling
    when the mesh, batch, frames or config cannot work."""
    log = log or (lambda message: None)
    check_batch(config, mesh_axes)
    spec = step_spec(config, frames)
    n = math.prod(mesh_axes.values())
    devices = list(devices if devices is not None else jax.devices())
    if len(devices) < n:
        raise PlanError(f"mesh {mesh_axes} needs {n} devices but {len(devices)} are available")
    mesh = make_mesh(mesh_axes, devices[:n])
    rules = rules_from_config(config.sharding_rules)
    args = abstract_args(spec, mesh, rules, frozen_dtype)
    analytic = analytic_bytes(args)
    platform = devices[0].platform
    slow = " (this takes a minute or more at 8B on a CPU)" if config.variant != "tiny" and platform == "cpu" else ""
    log(f"compiling {spec.kind.upper()} train step for mesh {mesh_axes} ({n} {platform} devices), "
        f"{spec.frames} frames, batch {config.train.batch_size}{slow}")
    t0 = time.perf_counter()
    lowered = make_step(spec, mesh, rules).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    log(f"compiled in {t2 - t0:.1f} s (lowering {t1 - t0:.1f} s)")
    memory = memory_stats(compiled, analytic["all_inputs"]["bytes_per_device"])
    note = CPU_NOTE if platform == "cpu" else NATIVE_NOTE.format(device_kind=devices[0].device_kind)
    shards = math.prod(mesh_axes[a] for a in batch_axes(config, mesh_axes))
    return {"kind": spec.kind, "variant": config.variant, "mesh": dict(mesh_axes), "num_devices": n,
            "platform": platform, "device_kind": devices[0].device_kind, "frames": spec.frames,
            "batch_size": int(config.train.batch_size), "batch_per_shard": int(config.train.batch_size) // shards,
            "frozen_dtype": frozen_dtype or "float32",
            **spec.info, "lower_seconds": round(t1 - t0, 2), "compile_seconds": round(t2 - t0, 2),
            "analytic": analytic, "memory_analysis": memory,
            "memory_note": note if memory else
            f"the {platform} backend gave no memory analysis: only the analytic bytes are known",
            "flops_per_device": flops(compiled)}


def add_fit(report: dict, device_memory_gb: float | None) -> dict:
    """Adds device_memory_gb, fits and headroom_gib (device memory - peak estimate) when both are known."""
    if device_memory_gb is None:
        return report
    report["device_memory_gb"] = device_memory_gb
    memory = report.get("memory_analysis")
    if memory is None:
        report["fits"] = None
        return report
    headroom = device_memory_gb - memory["peak_estimate_bytes"] / GIB
    report["fits"], report["headroom_gib"] = bool(headroom >= 0), round(headroom, 3)
    return report


def gib(n: float | None) -> str:
    return "-" if n is None else f"{n / GIB:10.3f}"


def format_report(report: dict) -> str:
    """The human-readable table of a report (GiB per device)."""
    a, m = report["analytic"], report["memory_analysis"]
    head = (f"{report['kind'].upper()} ({report['variant']}) on mesh "
            f"{','.join(f'{k}={v}' for k, v in report['mesh'].items())} ({report['num_devices']} "
            f"{report['platform']} devices), {report['frames']} frames, batch {report['batch_size']} "
            f"({report['batch_per_shard']} per batch shard)")
    if report["kind"] == "lma":
        head += (f"\n  encoder {report['encoder']}, training {'+'.join(report['trainable'])}, "
                 f"{report['visual_tokens']} visual tokens in sequences of {report['sequence_length']}")
    else:
        head += f"\n  targets {tuple(report['target_shape'])} per clip ({report['targets']})"
    lines = [head, f"  compiled in {report['compile_seconds']:.1f} s", "",
             f"  {'per device':34s} {'GiB':>10s}   {'total params/elements':>22s}"]
    for key, label in (("trainable_params", "trainable params"), ("frozen_params", "frozen params"),
                       ("optimizer_state", "optimizer state"), ("batch", "batch"),
                       ("all_inputs", "all step inputs (as the run holds)")):
        lines.append(f"  {label:34s} {gib(a[key]['bytes_per_device'])}   {a[key]['count']:22,d}")
    if m is None:
        lines.append(f"  {report['memory_note']}")
    else:
        lines.append("  compiler memory analysis:")
        for key in MEMORY_FIELDS:
            lines.append(f"    {key:32s} {gib(m.get(key))}")
        lines.append(f"  {'compiled peak (arg+out-alias+temp)':34s} {gib(m['compiled_peak_bytes'])}")
        if m["unread_input_bytes"]:
            lines.append(f"  {'+ inputs the step never reads':34s} {gib(m['unread_input_bytes'])}   "
                         "(dropped by jit, still held on device by the run)")
        lines.append(f"  {'peak estimate':34s} {gib(m['peak_estimate_bytes'])}")
    if report.get("flops_per_device") is not None:
        lines.append(f"  {'TFLOP per device per step':34s} {report['flops_per_device'] / 1e12:10.3f}")
    if "device_memory_gb" in report:
        if report["fits"] is None:
            lines.append(f"  device memory {report['device_memory_gb']} GiB: unknown whether it fits "
                         "(no memory analysis)")
        else:
            verdict = "FITS" if report["fits"] else "DOES NOT FIT"
            lines.append(f"  device memory {report['device_memory_gb']} GiB: {verdict} "
                         f"(headroom {report['headroom_gib']:+.2f} GiB)")
    if m is not None:
        lines.append(f"  ({report['memory_note']})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ devices

def forced_cpu_devices(env) -> int | None:
    """The --xla_force_host_platform_device_count in env's XLA_FLAGS, or None."""
    found = re.findall(r"--xla_force_host_platform_device_count=(\d+)", env.get("XLA_FLAGS", ""))
    return int(found[-1]) if found else None


def needs_rerun(n: int, platform: str, env=None) -> bool:
    """True when --platform=cpu needs a fresh process to get `n` CPU devices (this one was started without
    JAX_PLATFORMS=cpu and enough forced host devices, and is not itself the re-run)."""
    env = os.environ if env is None else env
    if platform != "cpu" or env.get(CHILD_ENV):
        return False
    return not (env.get("JAX_PLATFORMS") == "cpu" and (forced_cpu_devices(env) or 1) >= n)


def rerun_with_devices(n: int) -> int:
    """Runs this command again in a subprocess with n simulated CPU devices; returns its exit code."""
    env = dict(os.environ)
    flags_ = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags_} --xla_force_host_platform_device_count={n}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env[CHILD_ENV] = "1"
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    return subprocess.run([sys.executable, "-m", "experiments.memory_plan", *sys.argv[1:]], env=env).returncode


def plan_devices(platform: str):
    """CPU devices for --platform=cpu, the default backend's devices for native."""
    return jax.devices("cpu") if platform == "cpu" else jax.devices()


# ------------------------------------------------------------------------------------------------ CLI

def _define_flags():
    """Flags are defined only when run as a program (tests import this module)."""
    from absl import flags
    from liteframe_jax.cli import define_config_flag
    define_config_flag("config", "Experiment config, e.g. configs/lma.py:variant=8b; --config.a.b=VALUE sets a "
                       "field.")
    flags.DEFINE_string("mesh", None, "Mesh to plan, e.g. data=2,fsdp=4,tensor=1 (default: config.mesh).")
    flags.DEFINE_integer("frames", None, "Clip length (CTD) / curriculum stage frames (LMA; default the largest).")
    flags.DEFINE_float("device_memory_gb", None, "Memory of one device in GiB (e.g. 80 for an H100): report "
                       "whether the peak estimate fits.")
    flags.DEFINE_string("out", None, "Write the report as JSON here.")
    flags.DEFINE_enum("frozen_dtype", "bfloat16", ["bfloat16", "float32"],
                      "Stored dtype of the frozen parameters (CTD teacher, LMA frozen LLM/encoder): the run keeps a "
                      "checkpoint's dtype, and InternVL3 releases imported with --dtype auto are bfloat16.")
    flags.DEFINE_enum("platform", "cpu", ["cpu", "native"], "cpu: simulated CPU devices (no hardware needed); "
                      "native: this host's accelerators.")


def main(argv):
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if f.config is None:
        return cli_error("--config is required, e.g. --config configs/lma.py:variant=8b")
    config = f.config
    try:
        mesh_axes = parse_mesh(f.mesh) if f.mesh is not None else mesh_from_config(config)
        if f.device_memory_gb is not None and f.device_memory_gb <= 0:
            raise PlanError(f"--device_memory_gb must be > 0, got {f.device_memory_gb}")
        check_batch(config, mesh_axes)
        step_spec(config, f.frames)  # fail on bad frames / config before any compile or re-run
        n = math.prod(mesh_axes.values())
        if needs_rerun(n, f.platform):
            print(f"starting a process with {n} simulated CPU devices ...", file=sys.stderr, flush=True)
            return rerun_with_devices(n)
        devices = plan_devices(f.platform)
        if len(devices) < n:
            hint = "" if f.platform == "cpu" else " (use --platform=cpu to plan with simulated devices)"
            raise PlanError(f"mesh {mesh_axes} needs {n} devices, {len(devices)} {devices[0].platform} devices "
                            f"are available{hint}")
        report = plan(config, mesh_axes, f.frames, devices, log=lambda s: print(s, file=sys.stderr, flush=True),
                      frozen_dtype=None if f.frozen_dtype == "float32" else f.frozen_dtype)
    except PlanError as e:
        return cli_error(str(e))
    add_fit(report, f.device_memory_gb)
    print(format_report(report))
    if f.out:
        Path(f.out).parent.mkdir(parents=True, exist_ok=True)
        Path(f.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {f.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from liteframe_jax.cli import run

    _define_flags()
    run(main)
