"""Latency of the three visual pipelines of a Video LLM, split into vision encoding and LLM prefill.

    python -m experiments.latency --config configs/latency.py[:size=real|small|tiny,...] --out DIR \\
        [--accuracy teacher=EVAL.json,teacher_wap=EVAL.json,student=EVAL.json,...] [--config.FIELD=VALUE ...]

Sizes (real: InternVL3-8B + the 87M student, for an accelerator; small: a scaled-down copy that runs in about two
minutes on a 2-core CPU; tiny: tests) and every field: configs/latency.py.

For every frame count of config.frames and every pipeline of config.pipelines:
  teacher      InternViT per frame + pixel shuffle + projector (256 tokens per 448 px frame, InternVL3);
  teacher_wap  the same, then post-hoc WAP compression (as lf.load(..., wap=...) encodes);
  student      the LiteFrame student over the whole clip + pixel shuffle + the projector;
it times (jitted, warmed up, median of config.repeats runs, block_until_ready, batch 1, config.dtype)
  vision   pixels (T, H, W, 3) -> LLM-ready visual tokens (N_visual, d_llm),
  prefill  one forward of the LLM over the prompt (the fixed text of config.text_tokens tokens, one
           `<img>...</img>` block per frame group holding the visual tokens) up to the last position's logits,
and reports total = vision + prefill, analytic FLOPs per stage (experiments/flops.py) beside XLA's count, the
achieved FLOP/s and the machine's measured matmul rate, and speedups against the teacher (same frames, and the
other pipelines at config.frames_multiple x the teacher's frames). Points whose LLM sequence exceeds
config.max_llm_tokens, or that run out of memory, are recorded as skipped with the reason (larger frame counts of
a stage that ran out of memory are skipped too).

Writes DIR/latency.json and DIR/latency.png (latency vs frames). With --accuracy (result JSONs written by
`python -m liteframe_jax.evaluate --out`, each named by the pipeline its checkpoint runs; a name may repeat for
results at several frame counts) also DIR/pareto.png: accuracy vs total latency at each result's frame count, with
the Pareto frontier, and the points in latency.json. Errors (bad config, unreadable accuracy file, a result at a
frame count that was not measured) print `error: ...` and exit 1.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from liteframe_jax.cli import error as cli_error
from liteframe_jax.files import write_json

if TYPE_CHECKING:  # the heavy imports wait until something runs, so --help stays fast
    from liteframe_jax.compression.wap import WAPConfig
    from liteframe_jax.models.config import InternVLConfig
    from liteframe_jax.models.liteframe import LiteFrameConfig

PIPELINES = ("teacher", "teacher_wap", "student")
STAGES = ("vision", "prefill")
LABELS = {"teacher": "InternVL3 teacher", "teacher_wap": "teacher + post-hoc WAP", "student": "LiteFrame student"}
COLORS = {"teacher": "tab:red", "teacher_wap": "tab:orange", "student": "tab:blue"}
DTYPES = ("float32", "bfloat16")
_FIELDS = ("frames", "pipelines", "stages", "dtype", "attention", "text_tokens", "group_text_tokens", "repeats",
           "warmup", "seed", "max_llm_tokens", "fused", "frames_multiple", "matmul_n", "teacher", "student",
           "location", "wap")


# ------------------------------------------------------------------------------------------------ config

@dataclasses.dataclass(frozen=True)
class Plan:
    """A validated benchmark config: model configs built (dtype and attention applied), lists normalized."""

    teacher: InternVLConfig
    student: LiteFrameConfig
    wap: WAPConfig
    frames: tuple[int, ...]
    pipelines: tuple[str, ...]
    stages: tuple[str, ...]
    dtype: str
    attention: str
    text_tokens: int
    group_text_tokens: int
    repeats: int
    warmup: int
    seed: int
    max_llm_tokens: int
    fused: bool
    frames_multiple: int
    matmul_n: int


def _split(value) -> list:
    """A list field given as a sequence and/or "+"- / ","-joined strings -> flat list of items."""
    out = []
    for x in [value] if isinstance(value, str) else list(value):
        out += [y.strip() for y in x.replace(",", "+").split("+") if y.strip()] if isinstance(x, str) else [x]
    return out


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _names(value, allowed: tuple[str, ...], field: str, errors: list) -> tuple[str, ...]:
    names = _split(value)
    bad = [n for n in names if n not in allowed]
    if not names or bad or len(set(names)) != len(names):
        errors.append(f"{field}={value!r} must be a non-empty list of distinct names from {allowed}")
        return ()
    return tuple(names)


def _int_field(c: dict, name: str, minimum: int, errors: list) -> int:
    v = c[name]
    if not _is_int(v) or v < minimum:
        errors.append(f"{name}={v!r} must be an integer >= {minimum}")
        return minimum
    return int(v)


def _frames(value, errors: list) -> tuple[int, ...]:
    try:
        frames = [int(x) if isinstance(x, str) else x for x in _split(value)]
    except ValueError:
        frames = [None]
    if not frames or not all(_is_int(f) and f > 0 for f in frames):
        errors.append(f"frames={value!r} must be a non-empty list of positive integers")
        return ()
    return tuple(sorted(set(int(f) for f in frames)))


def _models(c: dict, errors: list):
    """(teacher InternVLConfig, LiteFrameConfig, WAPConfig) with dtype/attention applied, or Nones on errors."""
    from liteframe_jax.compression.wap import WAPConfig, compressed_grid_shape
    from liteframe_jax.models.config import InternVLConfig, StudentConfig
    from liteframe_jax.models.liteframe import LiteFrameConfig

    def attempt(fn):
        try:
            return fn()
        except (ValueError, TypeError, KeyError) as e:
            errors.append(str(e))
            return None

    overrides = {"dtype": c["dtype"], "attention_impl": c["attention"]}
    teacher = attempt(lambda: InternVLConfig.from_dict(_plain(c["teacher"])).replace(**overrides).validate())
    student = attempt(lambda: StudentConfig.from_dict(_plain(c["student"])).replace(**overrides))
    wap = attempt(lambda: WAPConfig.from_dict(_plain(c["wap"])).validate())
    lf = None
    if teacher is not None and student is not None:
        lf = attempt(lambda: LiteFrameConfig(student, teacher, c["location"]).validate())
        if lf is not None and tuple(student.image_size) != tuple(teacher.vision.image_size):
            errors.append(f"student.image_size={tuple(student.image_size)} must equal teacher.vision.image_size="
                          f"{tuple(teacher.vision.image_size)} (every pipeline encodes the same frames)")
    if teacher is not None and wap is not None:
        shape = attempt(lambda: compressed_grid_shape(wap, teacher, wap.window[0]))
        f = teacher.shuffle_factor
        if shape is not None and wap.location == "pre_shuffle" and (shape[1] % f or shape[2] % f):
            errors.append(f"WAP window {wap.window} leaves a {shape[1]}x{shape[2]} grid, not divisible by the "
                          f"pixel-shuffle factor {f}")
    return teacher, lf, wap


def _plain(x):
    return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def validate(config) -> Plan:
    """Checks a latency config (a ConfigDict or mapping, configs/latency.py) before anything is compiled.
    Returns the Plan; raises ConfigError (a ValueError) listing every problem."""
    from liteframe_jax.models.config import ConfigError
    c = _plain(config)
    missing = [k for k in _FIELDS if k not in c]
    if missing:
        raise ConfigError(f"invalid latency config: missing field(s) {missing} (start from configs/latency.py)")
    errors: list[str] = []
    frames = _frames(c["frames"], errors)
    pipelines = _names(c["pipelines"], PIPELINES, "pipelines", errors)
    stages = _names(c["stages"], STAGES, "stages", errors)
    if c["dtype"] not in DTYPES:
        errors.append(f"dtype={c['dtype']!r} must be one of {DTYPES}")
    if not isinstance(c["attention"], str) or not c["attention"]:
        errors.append(f"attention={c['attention']!r} must name an attention implementation")
    ints = {name: _int_field(c, name, low, errors) for name, low in (
        ("text_tokens", 1), ("group_text_tokens", 0), ("repeats", 1), ("warmup", 1), ("seed", 0),
        ("max_llm_tokens", 1), ("frames_multiple", 2), ("matmul_n", 1))}
    if not isinstance(c["fused"], bool):
        errors.append(f"fused={c['fused']!r} must be true or false")
    teacher = student = wap = None
    if c["dtype"] in DTYPES and isinstance(c["attention"], str):  # else every model config repeats the error
        teacher, student, wap = _models(c, errors)
    if errors:
        raise ConfigError("invalid latency config:\n  - " + "\n  - ".join(errors))
    return Plan(teacher, student, wap, frames, pipelines, stages, c["dtype"], c["attention"], fused=c["fused"],
                **ints)


# ------------------------------------------------------------------------------------------------ prompt layout

def visual_path(plan: Plan, pipeline: str):
    """The visual path (models.visual_path) that `pipeline` names, on the plan's models."""
    from liteframe_jax.models.visual_path import make_visual_path
    return make_visual_path(pipeline, plan.teacher, liteframe=plan.student, wap=plan.wap)


def layout(plan: Plan, pipeline: str, frames: int) -> tuple[int, int]:
    """(frame groups, LLM tokens per group) of a `frames`-frame clip in `pipeline`'s prompt."""
    path = visual_path(plan, pipeline)
    return path.num_groups(frames), path.tokens_per_group()


def _markers(plan: Plan) -> list[int]:
    t = plan.teacher
    return [i for i in (t.img_start_token_id, t.img_end_token_id) if i is not None]


def llm_length(plan: Plan, groups: int, tokens_per_group: int) -> int:
    """Prompt length: the fixed text + per group its label, <img>, the visual tokens and </img>."""
    return plan.text_tokens + groups * (tokens_per_group + len(_markers(plan)) + plan.group_text_tokens)


def prompt_ids(plan: Plan, groups: int, tokens_per_group: int) -> np.ndarray:
    """int32 (1, L) ids: half the text, `groups` x [label, <img>, <IMG_CONTEXT> x tokens_per_group, </img>], the
    other half of the text. Text ids are arbitrary ordinary tokens (values do not change the compute)."""
    t = plan.teacher
    special = [i for i in (t.image_token_id, t.img_start_token_id, t.img_end_token_id, t.eos_token_id,
                           t.pad_token_id) if i is not None]
    rng = np.random.default_rng(plan.seed)
    plain = next(i for i in range(1, t.text.vocab_size) if i not in special)

    def filler(n: int) -> np.ndarray:
        ids = rng.integers(1, t.text.vocab_size, n, dtype=np.int32)
        return np.where(np.isin(ids, special), plain, ids).astype(np.int32)

    start = [t.img_start_token_id] if t.img_start_token_id is not None else []
    end = [t.img_end_token_id] if t.img_end_token_id is not None else []
    block = []
    for _ in range(groups):
        block += [filler(plan.group_text_tokens), np.array(start, np.int32),
                  np.full(tokens_per_group, t.image_token_id, np.int32), np.array(end, np.int32)]
    half = plan.text_tokens // 2
    ids = np.concatenate([filler(half), *block, filler(plan.text_tokens - half)])
    assert ids.size == llm_length(plan, groups, tokens_per_group)
    return ids[None]


# ------------------------------------------------------------------------------------------------ jitted stages

def _prefill_impl(cfg: InternVLConfig, llm_params, ids, visual):
    """ids (1, L) holding N_visual <IMG_CONTEXT> placeholders, visual (N_visual, d_llm) -> the last position's
    logits (1, vocab) fp32: embed + merge + every decoder layer over all L positions (no KV cache kept)."""
    import jax.numpy as jnp
    from liteframe_jax.models.llm_front import prompt_logits
    return prompt_logits(cfg, llm_params, ids, visual, jnp.ones(ids.shape, jnp.int32), last_only=True)[:, -1]


@functools.lru_cache(maxsize=None)
def _jitted():
    """The jitted stage functions (built on first use, so importing this module does not import jax). The vision
    stage is `visual_path.encode_frames`, exactly how lf.load'ed models encode frames: (path, encoder params,
    (F, H, W, 3)) -> (N_visual, d_llm)."""
    import jax
    from liteframe_jax.models.visual_path import encode_frames

    prefill = jax.jit(_prefill_impl, static_argnums=0)

    @functools.partial(jax.jit, static_argnums=(0, 1))
    def end_to_end(path, llm_cfg, enc_params, llm_params, pixels, ids):
        return _prefill_impl(llm_cfg, llm_params, ids, encode_frames(path, enc_params, pixels))

    return {"vision": encode_frames, "prefill": prefill, "end_to_end": end_to_end}


def random_params(abstract, dtype, seed: int) -> dict:
    """Parameters shaped like the boxed ShapeDtypeStruct tree `abstract`, in `dtype`, made on the default device
    by one small jitted program: matrices and kernels are slices of one normal random pool scaled by
    1/sqrt(fan-in), norm scales are 1, everything else 0. Values do not change the compute; the models' own init
    (one random initializer per parameter) takes 10-30 s to compile on a 2-core CPU even at toy sizes, and would
    build a 7B LLM in fp32 first."""
    import jax
    import jax.numpy as jnp
    from flax import linen as nn

    leaves, treedef = jax.tree_util.tree_flatten_with_path(nn.unbox(abstract))
    pool_size = max([math.prod(x.shape) for _, x in leaves if len(x.shape) >= 2] + [1])

    def name(path) -> str:
        last = path[-1]
        return str(getattr(last, "key", getattr(last, "name", last)))

    @jax.jit
    def make(key):
        pool = jax.random.normal(key, (pool_size,), dtype)
        out = []
        for path, x in leaves:
            if len(x.shape) >= 2:
                fan_in = math.prod(x.shape[:-1])
                out.append(pool[:math.prod(x.shape)].reshape(x.shape) * (1.0 / math.sqrt(fan_in)))
            else:
                out.append(jnp.full(x.shape, 1.0 if name(path) == "scale" else 0.0, dtype))
        return jax.tree_util.tree_unflatten(treedef, out)

    return make(jax.random.key(seed))


def init_params(plan: Plan, pipelines, llm: bool) -> dict:
    """Random weights in the compute dtype (`random_params`) for the encoders of `pipelines` and, with `llm`, the
    LLM -> {path.encoder_weights ("teacher": {vision, projector}, "student": {student, projector}): params,
    "llm": Qwen2 params}. Pipelines that run the same encoder weights share them, and the LLM is shared by all
    (the student pipeline's projector has the teacher's shape)."""
    import jax
    from liteframe_jax.models import internvl
    from liteframe_jax.models.layers import compute_dtype

    dtype = compute_dtype(plan.dtype)
    out = {}
    for i, name in enumerate(pipelines):
        path = visual_path(plan, name)
        if path.encoder_weights not in out:
            out[path.encoder_weights] = random_params(path.abstract_encoder_params(), dtype, plan.seed + 2 * i)
    if llm:
        out["llm"] = random_params(internvl.abstract_params(plan.teacher)["llm"], dtype, plan.seed + 1)
    return jax.block_until_ready(out)


# ------------------------------------------------------------------------------------------------ measuring

def is_out_of_memory(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return isinstance(e, MemoryError) or any(s in text for s in ("resource_exhausted", "resource exhausted",
                                                                  "out of memory", "oom when allocating"))


def _short(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def measure(fn, args: tuple, plan: Plan, flops: float) -> dict:
    """Compiles `fn(*args)` (XLA's FLOP count on the way; the call below reuses the executable), then times it
    (time_call: warmup, median of repeats, block_until_ready). Returns time_call's dict + compile_s,
    compiled_flops and flops_per_s (the analytic `flops` / median time)."""
    from experiments.timing import compiled_flops, rate, time_call
    t0 = time.perf_counter()
    counted = compiled_flops(fn, *args)
    compile_s = time.perf_counter() - t0
    timing = time_call(lambda: fn(*args), warmup=plan.warmup, repeats=plan.repeats)
    return {**timing, "compile_s": round(compile_s, 3), "compiled_flops": counted,
            "flops_per_s": rate(flops, timing["median_ms"])}


def measure_point(plan: Plan, pipeline: str, frames: int, params: dict, out_of_memory: dict) -> dict:
    """All stages of one (pipeline, frames) point: {"pipeline", "frames", "groups", "tokens_per_group",
    "visual_tokens", "llm_tokens", "stages": {stage: {"flops", "flops_parts", + measure()'s dict or "skipped"}}}
    plus the flat numbers of `_summarize_point`. `out_of_memory` maps stage -> the smallest frame count that ran
    out of memory (updated); larger counts of that stage are then skipped without running."""
    import jax
    import jax.numpy as jnp
    from experiments import flops as analytic
    from liteframe_jax.models.layers import compute_dtype

    fns = _jitted()
    path = visual_path(plan, pipeline)
    groups, per_group = path.num_groups(frames), path.tokens_per_group()
    n_visual, n_llm = groups * per_group, llm_length(plan, groups, per_group)
    d_llm = plan.teacher.text.hidden_size
    parts = {"vision": analytic.vision(path, frames),
             "prefill": analytic.qwen2_prefill(plan.teacher.text, n_llm)}
    parts["end_to_end"] = {"vision": parts["vision"]["total"], "prefill": parts["prefill"]["total"],
                           "total": parts["vision"]["total"] + parts["prefill"]["total"]}
    stages = {s: {"flops": parts[s]["total"], "flops_parts": parts[s]} for s in plan.stages}
    if plan.fused and len(plan.stages) == 2:
        stages["end_to_end"] = {"flops": parts["end_to_end"]["total"], "flops_parts": parts["end_to_end"]}
    point = {"pipeline": pipeline, "frames": frames, "groups": groups, "tokens_per_group": per_group,
             "visual_tokens": n_visual, "llm_tokens": n_llm, "stages": stages}
    enc_params = params.get(path.encoder_weights)  # None when the vision stage is not measured
    h, w = plan.teacher.vision.image_size
    key = jax.random.key(plan.seed + frames)
    arrays = {}  # the vision stage's pixels and output, reused by the later stages

    def run_stage(stage: str, body: Callable[[], dict]) -> None:
        limit = out_of_memory.get(stage)
        if limit is not None and frames > limit:
            stages[stage]["skipped"] = f"out of memory already at {limit} frames"
            return
        try:
            stages[stage].update(body())
        except Exception as e:  # noqa: BLE001 - only out-of-memory is recoverable; anything else re-raises
            if not is_out_of_memory(e):
                raise
            out_of_memory[stage] = min(frames, out_of_memory.get(stage, frames))
            stages[stage]["skipped"] = f"out of memory: {_short(e)}"

    def vision_stage() -> dict:
        pixels = jax.jit(lambda k: jax.random.normal(k, (frames, h, w, 3), jnp.float32))(key)
        args = (path, enc_params, pixels)
        result = measure(fns["vision"], args, plan, stages["vision"]["flops"])
        visual = fns["vision"](*args)
        if visual.shape != (n_visual, d_llm):
            raise AssertionError(f"{pipeline} at {frames} frames gave visual tokens {visual.shape}, expected "
                                 f"({n_visual}, {d_llm})")
        arrays.update(pixels=pixels, visual=visual)
        return result

    too_long = n_llm > plan.max_llm_tokens
    ids = None if too_long else jnp.asarray(prompt_ids(plan, groups, per_group))

    def prefill_stage() -> dict:
        visual = arrays.get("visual")
        if visual is None:  # prefill alone: stand-in visual tokens of the right shape
            visual = jax.random.normal(key, (n_visual, d_llm), compute_dtype(plan.dtype))
        return measure(fns["prefill"], (plan.teacher, params["llm"], ids, visual), plan, stages["prefill"]["flops"])

    def end_to_end_stage() -> dict:
        args = (path, plan.teacher, enc_params, params["llm"], arrays["pixels"], ids)
        return measure(fns["end_to_end"], args, plan, stages["end_to_end"]["flops"])

    if "vision" in stages:
        run_stage("vision", vision_stage)
    if "prefill" in stages:
        if too_long:
            stages["prefill"]["skipped"] = (f"LLM sequence of {n_llm} tokens exceeds max_llm_tokens="
                                            f"{plan.max_llm_tokens}")
        else:
            run_stage("prefill", prefill_stage)
    if "end_to_end" in stages:
        if all("skipped" not in stages[s] for s in STAGES):
            run_stage("end_to_end", end_to_end_stage)
        else:
            stages["end_to_end"]["skipped"] = "a stage was skipped"
    arrays.clear()
    _summarize_point(point)
    return point


def _summarize_point(point: dict) -> None:
    """Adds the flat numbers {stage}_ms, {stage}_flops (analytic), {stage}_compiled_flops, {stage}_flops_per_s
    for every stage run (None where skipped), total_* = vision + prefill (None unless both ran) and `skipped`:
    None or the reasons of the stages that did not run."""
    from experiments.timing import rate
    stages = point["stages"]
    for s in dict.fromkeys((*STAGES, *stages)):
        r = stages.get(s, {})
        point[f"{s}_ms"] = r.get("median_ms")
        point[f"{s}_flops"] = r.get("flops")
        point[f"{s}_compiled_flops"] = r.get("compiled_flops")
        point[f"{s}_flops_per_s"] = r.get("flops_per_s")
    both = all(point.get(f"{s}_ms") is not None for s in STAGES)
    point["total_ms"] = point["vision_ms"] + point["prefill_ms"] if both else None
    point["total_flops"] = point["vision_flops"] + point["prefill_flops"] if set(STAGES) <= set(stages) else None
    point["total_flops_per_s"] = rate(point["total_flops"], point["total_ms"]) if both else None
    reasons = [f"{s}: {r['skipped']}" for s, r in stages.items() if "skipped" in r]
    point["skipped"] = "; ".join(reasons) or None


def _fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def progress_line(p: dict) -> str:
    """"teacher 64 frames: vision 123.4 ms, prefill 456.7 ms, total 580.1 ms [16384 visual tokens, LLM 16484]"
    (end_to_end: the fused program, with config.fused)."""
    parts = [f"{s} skipped ({r['skipped']})" if "skipped" in r else f"{s} {p[s + '_ms']:.1f} ms"
             for s, r in p["stages"].items()]
    if p["total_ms"] is not None:
        parts.append(f"total {p['total_ms']:.1f} ms")
    return (f"{p['pipeline']} {p['frames']} frames: {', '.join(parts)} "
            f"[{p['visual_tokens']} visual tokens, LLM {p['llm_tokens']}]")


# ------------------------------------------------------------------------------------------------ reporting

def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def speedups(points: list[dict], plan: Plan) -> dict:
    """Teacher time / pipeline time (> 1: faster than the teacher) per stage, at equal frames and with the
    pipeline at `frames_multiple` x the teacher's frames (LiteFrame's claim: 8x the frames, still faster)."""
    at = {(p["pipeline"], p["frames"]): p for p in points}

    def row(t, o):
        return {s: _ratio(t[f"{s}_ms"], o[f"{s}_ms"]) for s in (*STAGES, "total")}

    same, more = [], []
    k = plan.frames_multiple
    for name in plan.pipelines:
        if name == "teacher":
            continue
        for f in plan.frames:
            t = at.get(("teacher", f))
            if t is None:
                continue
            if (name, f) in at:
                same.append({"pipeline": name, "frames": f, **row(t, at[(name, f)])})
            if (name, k * f) in at:
                more.append({"pipeline": name, "teacher_frames": f, "frames": k * f, **row(t, at[(name, k * f)])})
    return {"same_frames": same, "frames_multiple": k, "more_frames": more}


def format_table(points: list[dict], matmul: dict) -> str:
    head = (f"{'pipeline':<12}{'frames':>7}{'visual':>8}{'LLM len':>9}{'vision ms':>11}{'prefill ms':>12}"
            f"{'total ms':>11}{'vis GFLOP':>11}{'pre GFLOP':>11}{'vis GF/s':>10}{'pre GF/s':>10}")
    lines = [head, "-" * len(head)]
    def g(x):
        return None if x is None else x / 1e9

    for p in points:
        lines.append(f"{p['pipeline']:<12}{p['frames']:>7}{p['visual_tokens']:>8}{p['llm_tokens']:>9}"
                     f"{_fmt(p['vision_ms']):>11}{_fmt(p['prefill_ms']):>12}{_fmt(p['total_ms']):>11}"
                     f"{_fmt(g(p['vision_flops']), '.2f'):>11}{_fmt(g(p['prefill_flops']), '.2f'):>11}"
                     f"{_fmt(g(p['vision_flops_per_s'])):>10}{_fmt(g(p['prefill_flops_per_s'])):>10}")
        if p["skipped"]:
            lines.append(f"{'':<12}skipped: {p['skipped']}")
    lines.append(f"matmul yardstick ({matmul['n']}^2 {matmul['dtype']}): {matmul['flops_per_s'] / 1e9:.1f} GFLOP/s")
    return "\n".join(lines)


def format_speedups(s: dict) -> str:
    def ratios(r):
        return ", ".join(f"{k} {'-' if r[k] is None else format(r[k], '.2f') + 'x'}" for k in (*STAGES, "total"))

    lines = ["speedup vs the teacher (teacher ms / pipeline ms):"]
    lines += [f"  {r['pipeline']:<12}{r['frames']:>5} frames: {ratios(r)}" for r in s["same_frames"]]
    lines += [f"  {r['pipeline']} at {r['frames']} frames ({s['frames_multiple']}x) vs teacher at "
              f"{r['teacher_frames']}: {ratios(r)}" for r in s["more_frames"]]
    return "\n".join(lines)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _scale(ax, axis: str, values: list[float]) -> None:
    """Log scale when the values span a decade or more (else minor-tick labels of a log axis collide)."""
    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) >= 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def plot_latency(points: list[dict], plan: Plan, path: Path, title: str) -> None:
    """One panel per measured stage and the total: median ms vs frames (log-log), a line per pipeline."""
    plt = _pyplot()
    panels = [s for s in STAGES if s in plan.stages] + (["total"] if len(plan.stages) == 2 else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False)
    for ax, stage in zip(axes[0], panels):
        for name in plan.pipelines:
            pts = [(p["frames"], p[f"{stage}_ms"]) for p in points
                   if p["pipeline"] == name and p[f"{stage}_ms"] is not None]
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, "o-" if stage == "total" else "o--", color=COLORS[name], label=LABELS[name])
        ax.set_xscale("log", base=2)
        _scale(ax, "y", [p[f"{stage}_ms"] for p in points])
        ax.set_xticks(plan.frames, [str(f) for f in plan.frames])
        ax.set_xlabel("frames")
        ax.set_ylabel("median latency (ms)")
        ax.set_title({"vision": "vision encoding", "prefill": "LLM prefill", "total": "vision + prefill"}[stage])
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ accuracy

@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """One `liteframe_jax.evaluate --out` result, named by the pipeline its checkpoint runs."""

    pipeline: str
    frames: int
    accuracy: float
    path: str
    visual_tokens: int | None = None
    benchmark: str | None = None


def parse_accuracy(spec: str, plan: Plan) -> list[AccuracyResult]:
    """"teacher=a.json,student=b.json,..." -> the results, checked against the plan (before anything runs)."""
    from liteframe_jax.models.config import ConfigError
    out, errors = [], []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        name, sep, path = item.partition("=")
        if not sep or not path:
            errors.append(f"--accuracy item {item!r} must look like PIPELINE=EVAL.json")
            continue
        if name not in plan.pipelines:
            errors.append(f"--accuracy {item!r}: {name!r} is not a measured pipeline {plan.pipelines}")
            continue
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            frames, acc = data["num_frames"], data["overall"]["accuracy"]
        except (OSError, ValueError) as e:
            errors.append(f"--accuracy {name}: cannot read {path}: {e}")
            continue
        except (KeyError, TypeError):
            errors.append(f"--accuracy {name}: {path} is not a result of `python -m liteframe_jax.evaluate --out` "
                          "(needs num_frames and overall.accuracy)")
            continue
        if not _is_int(frames) or not isinstance(acc, (int, float)):
            errors.append(f"--accuracy {name}: {path} has num_frames={frames!r}, accuracy={acc!r}")
            continue
        if frames not in plan.frames:
            errors.append(f"--accuracy {name}: {path} was evaluated at {frames} frames, which config.frames "
                          f"{plan.frames} does not measure; add it (e.g. --config.frames=...)")
            continue
        out.append(AccuracyResult(name, int(frames), float(acc), str(path), data.get("visual_tokens"),
                                  data.get("benchmark")))
    if not errors and not out:
        errors.append("--accuracy names no result")
    if not errors and "prefill" not in plan.stages:
        errors.append("--accuracy needs total latency: config.stages must include prefill")
    if errors:
        raise ConfigError("\n".join(errors))
    return out


def pareto(points: list[dict], results: list[AccuracyResult]) -> dict:
    """Accuracy vs total latency of each result's (pipeline, frames) point, and the Pareto frontier (points no
    other point beats on both). ValueError when a result's point was not measured (skipped)."""
    at = {(p["pipeline"], p["frames"]): p for p in points}
    rows, missing = [], []
    for r in results:
        p = at.get((r.pipeline, r.frames))
        if p is None or p["total_ms"] is None:
            why = p["skipped"] if p is not None else "not measured"
            missing.append(f"{r.pipeline} at {r.frames} frames ({r.path}): {why}")
            continue
        note = None
        if r.visual_tokens is not None and r.visual_tokens != p["visual_tokens"]:
            note = (f"the evaluated model gave {r.visual_tokens} visual tokens, the latency config "
                    f"{p['visual_tokens']}: the configs differ")
        rows.append({"pipeline": r.pipeline, "frames": r.frames, "accuracy": r.accuracy, "total_ms": p["total_ms"],
                     "visual_tokens": p["visual_tokens"], "path": r.path, "benchmark": r.benchmark, "note": note})
    if missing:
        raise ValueError("no latency for accuracy result(s): " + "; ".join(missing))
    best = -math.inf
    for row in sorted(rows, key=lambda x: (x["total_ms"], -x["accuracy"])):
        row["on_frontier"] = row["accuracy"] > best
        best = max(best, row["accuracy"])
    return {"points": rows, "frontier": [f"{r['pipeline']}@{r['frames']}" for r in
                                         sorted(rows, key=lambda x: x["total_ms"]) if r["on_frontier"]]}


def plot_pareto(front: dict, path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    rows = front["points"]
    for name in PIPELINES:
        pts = [r for r in rows if r["pipeline"] == name]
        if pts:
            ax.scatter([r["total_ms"] for r in pts], [r["accuracy"] for r in pts], color=COLORS[name],
                       label=LABELS[name], zorder=3)
    for r in rows:
        ax.annotate(f"{r['frames']}f", (r["total_ms"], r["accuracy"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    frontier = sorted((r for r in rows if r["on_frontier"]), key=lambda x: x["total_ms"])
    ax.step([r["total_ms"] for r in frontier], [r["accuracy"] for r in frontier], where="post", color="black",
            linewidth=1, alpha=0.7, label="Pareto frontier", zorder=2)
    _scale(ax, "x", [r["total_ms"] for r in rows])
    ax.set_xlabel("vision + prefill latency (ms)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ run

def device_info() -> dict:
    import jax
    d = jax.devices()[0]
    return {"platform": d.platform, "device_kind": d.device_kind, "device_count": jax.device_count(),
            "jax": jax.__version__, "host": platform.node(), "cpu_count": os.cpu_count()}


def run_benchmark(plan: Plan, out_dir: str | os.PathLike, accuracy: list[AccuracyResult] = (), *,
                  config: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """Measures every (pipeline, frames) point of the plan, prints progress and the tables, writes
    out_dir/latency.json, latency.png (and pareto.png with `accuracy`). Returns the JSON dict. Raises
    ValueError (after writing the files) when an accuracy result has no latency point."""
    import jax.numpy as jnp
    from experiments.timing import matmul_rate

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    info = device_info()
    log(f"device: {info['device_kind']} ({info['platform']}), dtype {plan.dtype}, attention {plan.attention}")
    matmul = matmul_rate(plan.matmul_n, jnp.dtype(plan.dtype), repeats=plan.repeats)
    log(f"matmul yardstick: {matmul['flops_per_s'] / 1e9:.1f} GFLOP/s ({plan.matmul_n}^2, {plan.dtype})")
    t0 = time.perf_counter()
    params = init_params(plan, plan.pipelines if "vision" in plan.stages else (), "prefill" in plan.stages)
    log(f"random parameters ({', '.join(sorted(params))}) in {time.perf_counter() - t0:.1f} s")
    points = []
    for name in plan.pipelines:
        out_of_memory: dict = {}
        for frames in plan.frames:
            points.append(measure_point(plan, name, frames, params, out_of_memory))
            log(progress_line(points[-1]))
    result = {"config": config, "plan": _plan_dict(plan), "device": info, "dtype": plan.dtype,
              "attention": plan.attention, "matmul_rate": matmul, "points": points,
              "speedups": speedups(points, plan)}
    log(format_table(points, matmul))
    log(format_speedups(result["speedups"]))
    title = f"{info['device_kind']}, {plan.dtype}, attention={plan.attention}"
    error = None
    if accuracy:
        try:
            result["pareto"] = pareto(points, accuracy)
        except ValueError as e:
            error, result["pareto"] = e, {"error": str(e)}
        else:
            plot_pareto(result["pareto"], out / "pareto.png", title)
            log("Pareto frontier (fastest first): " + ", ".join(result["pareto"]["frontier"]))
    result["seconds"] = round(time.perf_counter() - t_start, 2)
    write_json(out / "latency.json", result, ensure_ascii=True, default=_json_default)
    plot_latency(points, plan, out / "latency.png", title)
    log(f"wrote {out / 'latency.json'}, {out / 'latency.png'}" + (", pareto.png" if "points" in
                                                                    result.get("pareto", {}) else "")
        + f" ({result['seconds']:.1f} s)")
    if error is not None:
        raise error
    return result


def _plan_dict(plan: Plan) -> dict:
    d = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    d.update(teacher=plan.teacher.to_dict(), student=plan.student.to_dict(), wap=plan.wap.to_dict())
    return d


def _json_default(x):
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


# ------------------------------------------------------------------------------------------------ CLI

def _define_flags():
    from absl import flags
    from liteframe_jax.cli import define_config_flag
    define_config_flag("config", "Benchmark config, e.g. configs/latency.py:size=small; --config.a.b=VALUE sets a "
                       "field.")
    flags.DEFINE_string("out", None, "Output directory (created): latency.json, latency.png[, pareto.png].")
    flags.DEFINE_string("accuracy", None, "Comma-separated PIPELINE=EVAL.json results of `python -m "
                        "liteframe_jax.evaluate --out` (pipeline: teacher, teacher_wap or student) for the "
                        "accuracy-vs-latency Pareto plot.")


def main(argv) -> int:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    if f.config is None:
        return cli_error("--config is required, e.g. --config configs/latency.py:size=small")
    if not f.out:
        return cli_error("--out is required (the output directory)")
    try:
        plan = validate(f.config)
        accuracy = parse_accuracy(f.accuracy, plan) if f.accuracy else []
    except ValueError as e:
        return cli_error(str(e))
    try:
        run_benchmark(plan, f.out, accuracy, config=f.config.to_dict())
    except ValueError as e:
        return cli_error(str(e))
    return 0


if __name__ == "__main__":
    from liteframe_jax.cli import run
    _define_flags()
    run(main)
