"""Times this project's JAX InternVL3 teacher against transformers' PyTorch InternVL on this machine.

    python -m experiments.compare_torch [--size tiny|small|base|real] [--parts encoder,prefill] [--frames N]
        [--prompt_tokens L] [--logits last|full] [--dtype float32|bfloat16] [--attention xla|chunked|...]
        [--repeats 5] [--warmup 2] [--threads T] [--checkpoint DIR] [--out FILE.json]

Two functions are compared, each with the same weights, the same inputs and the same dtype in both frameworks:
  encoder  the image features the LLM sees: InternViT (every block up to the selected layer) + pixel shuffle +
           mlp1 projector, for a batch of --frames images. JAX: `InternVL.encode_images` under jax.jit; PyTorch:
           `InternVLForConditionalGeneration.get_image_features(pixel_values, vision_feature_layer,
           vision_feature_select_strategy="default")`.
  prefill  the Qwen2 LLM over a text prompt of --prompt_tokens tokens (batch 1, no KV cache), logits of the last
           position (--logits last, what generation needs) or of every position (--logits full). JAX:
           `InternVL.__call__` under jax.jit; PyTorch: the model's forward with `logits_to_keep`.
PyTorch runs eager under torch.inference_mode() with attn_implementation="sdpa" (its default fast path).

Weights: without --checkpoint, a random transformers model of the chosen --size is built from configs (nothing
is downloaded), saved as safetensors in a temporary directory and imported with the project's importer, so both
frameworks hold bit-identical weights (bfloat16: both round the same fp32 weights to nearest-even). Sizes:
  tiny   InternViT 2x128 @112px, Qwen2 2x128 (seconds; used by the tests)
  small  InternViT 6x384 @224px, Qwen2 4x512 (seconds on a 2-core CPU)
  base   InternViT 12x768 @448px (ViT-B width), Qwen2 8x1536 (Qwen2.5-1.5B widths, 8 of its 28 layers)
  real   InternVL3-8B: InternViT-300M (24x1024, 16 heads, mlp 4096, 448px, patch 14) and a Qwen2.5-7B-shaped LLM
         (28x3584). Needs a big machine: the LLM alone is 30 GB per fp32 copy and three copies are held (PyTorch,
         imported host arrays, JAX); parts that do not fit in the available memory are skipped with a message.
With --checkpoint DIR (a local InternVL3 directory, transformers or OpenGVLab layout) the real weights are used
and --size is ignored.

Before timing, the outputs of both frameworks are compared (max |jax - torch| / max |torch|); a part whose error
exceeds the tolerance (1e-4 fp32; 0.25 bf16, where rounding alone moves either framework by ~0.1) is an error.
Then, after --warmup untimed calls of each, the runs are interleaved (JAX, PyTorch, JAX, PyTorch, ...) --repeats
times and medians are reported, with the ratio
torch/JAX (> 1: JAX is faster), the FLOPs of one call (XLA's cost analysis of the compiled JAX function; the
same function in both frameworks), the achieved FLOP/s of each framework and, as a yardstick, each framework's
own measured dense-matmul rate on this machine (an --matmul_n square matmul in the same dtype).

Timings are only comparable on an otherwise idle machine: the `others` column is the CPU share other processes
(and the hypervisor) took while a part was timed, from /proc/stat, and a warning is printed above 10%. Under
oversubscription PyTorch's OpenMP threads slow down far more than XLA's thread pool (on a 2-core VM at 50-70%
foreign load PyTorch ran 7-13x slower than on the idle machine, JAX 2-4x), so ratios from a busy machine favour
JAX.

--threads sets torch.set_num_threads (default: PyTorch's own choice, reported); XLA's CPU runtime always uses one
thread per core. Bad flag values print `error: ...` and exit 1; --out FILE also writes everything as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from liteframe_jax.models.config import ATTENTION_IMPLS

PARTS = ("encoder", "prefill")
DTYPES = ("float32", "bfloat16")
LOGITS = ("last", "full")
# bf16 runs differ by their own rounding: at --size base the last-token logits of PyTorch bf16 are 0.125 (max rel)
# from the fp32 result, ours 0.045, hence the loose bf16 bound; it still catches a wrong function (errors ~1).
TOLERANCE = {"float32": 1e-4, "bfloat16": 0.25}
# Host memory one parameter costs while both models are alive: the PyTorch copy (fp32 while it is built, then
# cast), the imported host arrays and the JAX arrays.
_BYTES_PER_PARAM = {"float32": 12, "bfloat16": 8}
_HEADROOM_BYTES = 2 << 30  # activations, compiled programs, the interpreter


@dataclasses.dataclass(frozen=True)
class Size:
    """Architecture of one --size: InternViT (vision_*) and Qwen2 (text_*), plus the default workload."""

    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_mlp: int
    image_size: int
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_mlp: int
    vocab_size: int
    frames: int
    prompt_tokens: int
    patch_size: int = 14


SIZES = {
    "tiny": Size(128, 2, 4, 512, 112, 128, 2, 4, 2, 256, 1024, frames=2, prompt_tokens=64),
    "small": Size(384, 6, 6, 1536, 224, 512, 4, 8, 2, 1536, 8192, frames=2, prompt_tokens=128),
    "base": Size(768, 12, 12, 3072, 448, 1536, 8, 12, 2, 8960, 32000, frames=2, prompt_tokens=256),
    "real": Size(1024, 24, 16, 4096, 448, 3584, 28, 28, 4, 18944, 151674, frames=1, prompt_tokens=256),
}


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything one comparison needs (the CLI flags). frames / prompt_tokens None: the size's default."""

    size: str = "small"
    parts: tuple[str, ...] = PARTS
    frames: int | None = None
    prompt_tokens: int | None = None
    logits: str = "last"
    dtype: str = "float32"
    attention: str = "xla"
    repeats: int = 5
    warmup: int = 2
    threads: int | None = None
    checkpoint: str | None = None
    matmul_n: int = 2048
    seed: int = 0


def validate(opts: Options) -> Options:
    """ValueError naming every bad value; returns `opts` with frames / prompt_tokens filled in."""
    errors = []
    if opts.size not in SIZES:
        errors.append(f"--size={opts.size!r} must be one of {sorted(SIZES)}")
    if not opts.parts or any(p not in PARTS for p in opts.parts) or len(set(opts.parts)) != len(opts.parts):
        errors.append(f"--parts={','.join(opts.parts)!r} must be a non-empty comma list of {PARTS} without repeats")
    for name in ("frames", "prompt_tokens", "threads"):
        value = getattr(opts, name)
        if value is not None and value < 1:
            errors.append(f"--{name}={value} must be >= 1")
    if opts.repeats < 1:
        errors.append(f"--repeats={opts.repeats} must be >= 1")
    if opts.warmup < 0:
        errors.append(f"--warmup={opts.warmup} must be >= 0")
    if opts.matmul_n < 16:
        errors.append(f"--matmul_n={opts.matmul_n} must be >= 16")
    if opts.dtype not in DTYPES:
        errors.append(f"--dtype={opts.dtype!r} must be one of {DTYPES}")
    if opts.logits not in LOGITS:
        errors.append(f"--logits={opts.logits!r} must be one of {LOGITS}")
    if opts.attention not in ATTENTION_IMPLS:
        errors.append(f"--attention={opts.attention!r} must be one of {ATTENTION_IMPLS}")
    if opts.checkpoint is not None:
        ckpt = Path(opts.checkpoint)
        if not ckpt.is_dir() or not (ckpt / "config.json").is_file():
            errors.append(f"--checkpoint={opts.checkpoint!r} is not a directory with a config.json")
    if errors:
        raise ValueError("; ".join(errors))
    size = SIZES[opts.size]
    return dataclasses.replace(opts, frames=opts.frames or size.frames,
                               prompt_tokens=opts.prompt_tokens or size.prompt_tokens)


# ------------------------------------------------------------------------------------------------- memory

def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def vision_param_count(s: Size) -> int:
    """Parameters of InternViT + the mlp1 projector for a Size."""
    d, m, grid = s.vision_hidden, s.vision_mlp, s.image_size // s.patch_size
    embed = 3 * s.patch_size ** 2 * d + d + (grid * grid + 1) * d + d
    block = 4 * d * d + 4 * d + 2 * d * m + m + d + 6 * d  # qkv + out, fc1 + fc2, 2 norms, 2 layer scales
    projector = 8 * d + 4 * d * s.text_hidden + s.text_hidden + s.text_hidden ** 2 + s.text_hidden
    return embed + s.vision_layers * block + projector


def text_param_count(s: Size) -> int:
    """Parameters of the Qwen2 LLM (untied head) for a Size."""
    d, kv = s.text_hidden, s.text_kv_heads * (s.text_hidden // s.text_heads)
    layer = 2 * d * d + d + 2 * (d * kv + kv) + 3 * d * s.text_mlp + 2 * d
    return 2 * s.vocab_size * d + s.text_layers * layer + d


def stub_llm(s: Size) -> Size:
    """`s` with a 1-layer, narrow-MLP, 512-token LLM of the same width: the projector (which maps into the LLM
    width) is unchanged, so the encoder is the real one while the unused LLM costs almost no memory."""
    return dataclasses.replace(s, text_layers=1, text_mlp=64, vocab_size=512)


def check_checkpoint_memory(src: Path, dtype: str) -> None:
    """ValueError when a checkpoint's weights, held by both frameworks, cannot fit in the available memory."""
    import math

    from liteframe_jax.checkpoints.import_internvl import open_weights

    count = sum(math.prod(info.shape) for info in open_weights(src, allow_pickle=False).tensors.values())
    need, avail = count * _BYTES_PER_PARAM[dtype] + _HEADROOM_BYTES, available_bytes()
    if avail is not None and need > avail:
        raise ValueError(f"{src} has {count / 1e9:.2f}B parameters: both frameworks' {dtype} copies need about "
                         f"{need / 2**30:.0f} GiB of host memory, {avail / 2**30:.0f} GiB are available")


def plan_parts(opts: Options, log: Callable[[str], None]) -> tuple[Size, dict[str, str]]:
    """Which requested parts fit in memory at opts.size. Returns (the Size to build, {part: skip reason})."""
    s = SIZES[opts.size]
    avail = available_bytes()
    per_param = _BYTES_PER_PARAM[opts.dtype]
    full = (vision_param_count(s) + text_param_count(s)) * per_param + _HEADROOM_BYTES
    encoder_only = (vision_param_count(s) + text_param_count(stub_llm(s))) * per_param + _HEADROOM_BYTES
    skipped: dict[str, str] = {}
    if avail is not None and "prefill" in opts.parts and full > avail:
        skipped["prefill"] = (f"the {opts.size} LLM needs about {full / 2**30:.0f} GiB of host memory for both "
                              f"frameworks' copies, {avail / 2**30:.0f} GiB are available")
        log(f"skipping prefill: {skipped['prefill']}")
    if avail is not None and "encoder" in opts.parts and encoder_only > avail:
        skipped["encoder"] = (f"the {opts.size} encoder needs about {encoder_only / 2**30:.0f} GiB of host memory, "
                              f"{avail / 2**30:.0f} GiB are available")
        log(f"skipping encoder: {skipped['encoder']}")
    if opts.size == "real" and not skipped:
        log("warning: --size=real builds InternVL3-8B-sized models twice; it needs a big machine")
    need_llm = "prefill" in opts.parts and "prefill" not in skipped
    return (s if need_llm else stub_llm(s)), skipped


# ------------------------------------------------------------------------------------------------- models

def tiny_spec(s: Size, prompt_tokens: int, seed: int):
    """The `testing.tiny_internvl.TinySpec` describing Size `s` (its builder works at any size)."""
    from testing.tiny_internvl import TinySpec
    return TinySpec(vision_hidden=s.vision_hidden, vision_layers=s.vision_layers, vision_heads=s.vision_heads,
                    vision_mlp=s.vision_mlp, image_size=s.image_size, patch_size=s.patch_size,
                    text_hidden=s.text_hidden, text_layers=s.text_layers, text_heads=s.text_heads,
                    text_kv_heads=s.text_kv_heads, text_mlp=s.text_mlp, vocab_size=s.vocab_size, seed=seed,
                    max_position_embeddings=max(4096, prompt_tokens))


def use_sdpa(model) -> None:
    """Switch a transformers model (and its sub-models) to torch's scaled_dot_product_attention."""
    model.set_attn_implementation("sdpa")
    subs = (model.config, model.config.vision_config, model.config.text_config)
    if any(c._attn_implementation != "sdpa" for c in subs):
        raise RuntimeError("transformers did not switch every sub-model to attn_implementation='sdpa'")


def random_models(s: Size, opts: Options, log: Callable[[str], None]):
    """Random PyTorch InternVL of Size `s` and the same weights imported into JAX through safetensors.
    Returns (torch model (eval, opts.dtype), our InternVLConfig, params as nested numpy dict)."""
    import torch

    from testing.tiny_internvl import build_reference, write_checkpoint
    from liteframe_jax.checkpoints.import_internvl import import_internvl3

    spec = tiny_spec(s, opts.prompt_tokens, opts.seed)
    t0 = time.perf_counter()
    model = build_reference(spec)
    with tempfile.TemporaryDirectory(prefix="compare_torch_") as tmp:
        write_checkpoint(model, spec, tmp, "hf")
        cfg, params, _ = import_internvl3(tmp, dtype=opts.dtype)
    model = model.to(getattr(torch, opts.dtype))
    log(f"built random {opts.size} weights and imported them into JAX in {time.perf_counter() - t0:.1f}s")
    return model, cfg, params


def hf_config_from_ours(cfg):
    """Our InternVLConfig -> transformers InternVLConfig (for OpenGVLab-layout checkpoints)."""
    from transformers import InternVLConfig as HFConfig

    from converters.liteframe_torch_layout import text_to_hf

    v = cfg.vision
    if cfg.ps_version != "v2":
        raise ValueError(f"ps_version={cfg.ps_version!r}: transformers' InternVL only implements pixel shuffle v2")
    vision = dict(hidden_size=v.hidden_size, num_hidden_layers=v.num_layers, num_attention_heads=v.num_heads,
                  intermediate_size=v.mlp_dim, image_size=list(v.image_size), patch_size=[v.patch_size] * 2,
                  num_channels=v.num_channels, attention_bias=v.qkv_bias, use_qk_norm=v.qk_norm,
                  norm_type=v.norm_type, layer_norm_eps=v.layer_norm_eps, hidden_act="gelu",
                  use_mean_pooling=True, use_absolute_position_embeddings=True)
    return HFConfig(vision_config=vision, text_config=text_to_hf(cfg.text),
                    tie_word_embeddings=cfg.text.tie_word_embeddings, image_token_id=cfg.image_token_id,
                    image_seq_length=cfg.tokens_per_frame(), downsample_ratio=cfg.downsample_ratio,
                    projector_hidden_act="gelu", vision_feature_layer=v.select_layer,
                    vision_feature_select_strategy="default")


def numpy_to_torch(x):
    """A host array from the safetensors reader -> torch tensor (ml_dtypes bfloat16 has no numpy->torch path)."""
    import ml_dtypes
    import numpy as np
    import torch
    if x.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(np.ascontiguousarray(x).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(x))


def torch_from_original(src: Path, cfg, torch_dtype):
    """Builds transformers' InternVL from an OpenGVLab-layout directory (fused attn.qkv keys)."""
    from transformers import InternVLForConditionalGeneration

    from testing.tiny_internvl import original_to_hf_runtime
    from liteframe_jax.checkpoints.import_internvl import open_weights

    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: pay for the random init
        import contextlib
        no_init_weights = contextlib.nullcontext
    weights = open_weights(src, allow_pickle=False)
    state = {k: numpy_to_torch(weights.read(k)) for k in weights.tensors}
    with no_init_weights():
        model = InternVLForConditionalGeneration(hf_config_from_ours(cfg))
    model.load_state_dict(original_to_hf_runtime(state), strict=True)
    return model.to(torch_dtype)


def checkpoint_models(opts: Options, log: Callable[[str], None]):
    """The checkpoint's weights in both frameworks. Returns (torch model, our InternVLConfig, params)."""
    import torch
    from transformers import InternVLForConditionalGeneration

    from liteframe_jax.checkpoints import internvl_layouts as layouts
    from liteframe_jax.checkpoints.import_internvl import import_internvl3

    src = Path(opts.checkpoint)
    check_checkpoint_memory(src, opts.dtype)
    t0 = time.perf_counter()
    cfg, params, layout = import_internvl3(src, dtype=opts.dtype)
    torch_dtype = getattr(torch, opts.dtype)
    if layout == layouts.ORIGINAL:
        model = torch_from_original(src, cfg, torch_dtype)
    else:
        model = InternVLForConditionalGeneration.from_pretrained(src, dtype=torch_dtype)
    log(f"loaded {src} ({layout} layout) into both frameworks in {time.perf_counter() - t0:.1f}s")
    return model.eval(), cfg, params


# ------------------------------------------------------------------------------------------------- functions

@dataclasses.dataclass
class Part:
    """One compared function: `jax_fn()` / `torch_fn()` run it once and return host-synchronized outputs;
    `flops` is one call's FLOPs; `shape` describes the workload."""

    name: str
    shape: str
    jax_fn: Callable[[], Any]
    torch_fn: Callable[[], Any]
    flops: float | None


def torch_sync(device) -> None:
    """Waits for queued PyTorch work (CUDA is asynchronous, the CPU is not)."""
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def encoder_part(cfg, params, model, frames: int, seed: int, device) -> Part:
    """Image features for `frames` random normalized images: (F, 3, S, S) -> (F, tokens_per_frame, d_llm)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from experiments.timing import block, compiled_flops
    from liteframe_jax.models.internvl import InternVL

    h, w = cfg.vision.image_size
    pixels = np.random.default_rng(seed).standard_normal((frames, 3, h, w)).astype(np.float32)
    x_jax = jnp.asarray(pixels.transpose(0, 2, 3, 1))
    x_torch = torch.from_numpy(pixels).to(device)
    model_jax = InternVL(cfg)
    encode = jax.jit(lambda p, x: model_jax.apply({"params": p}, x, method=InternVL.encode_images))
    layer = cfg.vision.select_layer

    def run_torch():
        out = model.model.get_image_features(pixel_values=x_torch, vision_feature_layer=layer,
                                             vision_feature_select_strategy="default")
        out = getattr(out, "pooler_output", out)  # transformers 5: BaseModelOutputWithPooling; 4.x: tensor
        torch_sync(device)
        return out

    shape = f"{frames} x {h}x{w}px -> ({frames}, {cfg.tokens_per_frame()}, {cfg.text.hidden_size})"
    return Part("encoder", shape, lambda: block(encode(params, x_jax)), run_torch,
                compiled_flops(encode, params, x_jax))


def prefill_part(cfg, params, model, prompt_tokens: int, logits: str, seed: int, device) -> Part:
    """Qwen2 forward over (1, L) random text ids -> logits (1, 1 or L, vocab); no KV cache."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from experiments.timing import block, compiled_flops
    from liteframe_jax.models.internvl import InternVL

    # plain text ids: below the three InternVL image ids that sit at the top of the vocabulary
    ids = np.random.default_rng(seed + 1).integers(3, max(cfg.text.vocab_size - 3, 4), (1, prompt_tokens))
    ids_jax = jnp.asarray(ids, jnp.int32)
    ids_torch = torch.from_numpy(ids).to(device)
    positions = jnp.arange(prompt_tokens, dtype=jnp.int32)[None]
    key_valid = jnp.ones((1, prompt_tokens), bool)
    last = logits == "last"
    model_jax = InternVL(cfg)
    forward = jax.jit(lambda p, t: model_jax.apply({"params": p}, t, None, positions, key_valid,
                                                    last_only=last)[0])

    def run_torch():
        out = model(input_ids=ids_torch, use_cache=False, logits_to_keep=1 if last else 0).logits
        torch_sync(device)
        return out

    shape = f"1 x {prompt_tokens} tokens -> {'last' if last else 'all'} logits (vocab {cfg.text.vocab_size})"
    return Part("prefill", shape, lambda: block(forward(params, ids_jax)), run_torch,
                compiled_flops(forward, params, ids_jax))


# ------------------------------------------------------------------------------------------------- measuring

def max_rel_err(ours, ref) -> float:
    """max |ours - ref| / max |ref| over all elements (float64)."""
    import numpy as np
    a = np.asarray(ours, np.float64)
    b = np.asarray(ref, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"output shapes differ: JAX {a.shape}, PyTorch {b.shape}")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def torch_to_numpy(t):
    """A torch tensor (any dtype, any device) -> float32 numpy."""
    import torch
    return t.detach().to(torch.float32).cpu().numpy()


def cpu_counters() -> tuple[float, float, float] | None:
    """(busy CPU seconds of the whole machine, hypervisor steal seconds, this process's CPU seconds), from
    /proc/stat and os.times(); None where /proc/stat is missing."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    own = os.times()
    return (user + nice + system + irq + softirq) / hz, steal / hz, own.user + own.system


def foreign_load(before, after, wall_s: float) -> dict | None:
    """Share of the machine's CPU capacity used by other processes (and stolen by the hypervisor) between two
    `cpu_counters()` samples `wall_s` seconds apart: anything well above 0 means the timings are contended."""
    if before is None or after is None or wall_s <= 0:
        return None
    capacity = wall_s * (os.cpu_count() or 1)
    others = (after[0] - before[0]) - (after[2] - before[2])
    return {"others_cpu_share": max(others, 0.0) / capacity, "steal_share": (after[1] - before[1]) / capacity,
            "load_average_1min": os.getloadavg()[0]}


def interleaved_times(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, dict]:
    """`warmup` untimed calls of each fn, then `repeats` rounds calling each fn once in order, timed.
    Returns {name: experiments.timing.summarize(ms)}."""
    from experiments.timing import summarize

    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: summarize(ms) for name, ms in times.items()}


def torch_matmul_rate(n: int, dtype: str, device, repeats: int = 5) -> dict:
    """PyTorch's dense (n, n) @ (n, n) rate in FLOP/s, the counterpart of experiments.timing.matmul_rate.
    Returns {"flops_per_s", "n", "dtype", "median_ms"}."""
    import torch

    from experiments.timing import summarize

    gen = torch.Generator().manual_seed(0)
    a = torch.randn((n, n), generator=gen).to(device=device, dtype=getattr(torch, dtype))
    times = []
    with torch.inference_mode():
        for i in range(2 + repeats):
            t0 = time.perf_counter()
            a @ a
            torch_sync(device)
            if i >= 2:
                times.append((time.perf_counter() - t0) * 1e3)
    median = summarize(times)["median_ms"]
    return {"flops_per_s": 2.0 * n ** 3 / (median / 1e3), "n": n, "dtype": dtype, "median_ms": median}


def matmul_rates(n: int, dtype: str, device) -> dict[str, dict]:
    """Both frameworks' measured matmul rate on this machine, same size and dtype."""
    import jax.numpy as jnp

    from experiments.timing import matmul_rate
    return {"jax": matmul_rate(n, getattr(jnp, dtype)), "torch": torch_matmul_rate(n, dtype, device)}


def measure(part: Part, opts: Options, rates: dict[str, dict], log: Callable[[str], None]) -> dict:
    """Parity check, then interleaved timing. Returns the part's JSON record; ValueError on a parity failure."""
    from experiments.timing import rate

    err = max_rel_err(part.jax_fn(), torch_to_numpy(part.torch_fn()))
    tol = TOLERANCE[opts.dtype]
    log(f"{part.name}: {part.shape}; JAX vs PyTorch max rel err {err:.2e} (tolerance {tol:g})")
    if not err <= tol:
        raise ValueError(f"{part.name}: JAX and PyTorch outputs differ (max rel err {err:.3e} > {tol:g}); "
                         "not timing different functions")
    t0, before = time.perf_counter(), cpu_counters()
    times = interleaved_times({"jax": part.jax_fn, "torch": part.torch_fn}, opts.warmup, opts.repeats)
    load = foreign_load(before, cpu_counters(), time.perf_counter() - t0)
    record = {"shape": part.shape, "flops": part.flops, "max_rel_err": err, "tolerance": tol, "foreign_load": load}
    if load and load["others_cpu_share"] + load["steal_share"] > 0.1:
        log(f"warning: other processes used {100 * load['others_cpu_share']:.0f}% of the CPUs (steal "
            f"{100 * load['steal_share']:.0f}%) while {part.name} was timed; these timings are contended")
    for fw, t in times.items():
        achieved = rate(part.flops, t["median_ms"])
        peak = rates[fw]["flops_per_s"]
        record[fw] = {**t, "flops_per_s": achieved,
                      "fraction_of_matmul_rate": None if achieved is None else achieved / peak}
    record["ratio_torch_over_jax"] = times["torch"]["median_ms"] / times["jax"]["median_ms"]
    log(f"{part.name}: JAX {times['jax']['median_ms']:.2f} ms, PyTorch {times['torch']['median_ms']:.2f} ms "
        f"(median of {opts.repeats})")
    return record


# ------------------------------------------------------------------------------------------------- driver

def machine_info(device) -> dict:
    """Where the numbers come from: backends, versions, thread counts, XLA flags."""
    import jax
    import torch
    import transformers

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "jax_backend": jax.default_backend(), "jax_device": str(jax.devices()[0]),
            "torch_device": str(device), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "versions": {"jax": jax.__version__, "torch": torch.__version__,
                         "transformers": transformers.__version__, "python": platform.python_version()}}


def torch_device():
    """PyTorch runs where JAX runs: CUDA when JAX's default backend is a GPU and torch sees one, else CPU."""
    import jax
    import torch
    return torch.device("cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu")


def compare(opts: Options, log: Callable[[str], None] = print) -> dict:
    """Runs the whole comparison (opts validated here). Returns the JSON-able report:
    {"options", "machine", "matmul": {"jax", "torch"}, "parts": {name: record | {"skipped": reason}}}."""
    import jax
    import torch

    opts = validate(opts)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    device = torch_device()
    if opts.checkpoint:
        skipped = {}
        model, cfg, params = checkpoint_models(opts, log)
    else:
        size, skipped = plan_parts(opts, log)
        if len(skipped) == len(opts.parts):
            raise ValueError("nothing to compare: " + "; ".join(skipped.values()))
        model, cfg, params = random_models(size, opts, log)
    cfg = cfg.replace(dtype=opts.dtype, attention_impl=opts.attention).validate()
    use_sdpa(model)
    model = model.to(device).eval()
    params = jax.tree.map(jax.numpy.asarray, params)
    report: dict = {"options": dataclasses.asdict(opts), "machine": machine_info(device), "parts": {}}
    t0, before = time.perf_counter(), cpu_counters()
    report["matmul"] = matmul_rates(opts.matmul_n, opts.dtype, device)
    report["matmul"]["foreign_load"] = foreign_load(before, cpu_counters(), time.perf_counter() - t0)
    with torch.inference_mode():
        for name in opts.parts:
            if name in skipped:
                report["parts"][name] = {"skipped": skipped[name]}
                continue
            part = (encoder_part(cfg, params, model, opts.frames, opts.seed, device) if name == "encoder" else
                    prefill_part(cfg, params, model, opts.prompt_tokens, opts.logits, opts.seed, device))
            report["parts"][name] = measure(part, opts, report["matmul"], log)
    report["model"] = cfg.to_dict()
    return report


def _gflops(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 1e9:.1f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def format_table(report: dict) -> str:
    """The human-readable summary of a `compare` report."""
    o, m, mm = report["options"], report["machine"], report["matmul"]
    lines = [f"compare_torch: {'checkpoint ' + o['checkpoint'] if o['checkpoint'] else 'size ' + o['size']}, "
             f"{o['dtype']}, JAX attention {o['attention']}, JAX on {m['jax_device']} / PyTorch on {m['torch_device']} "
             f"({m['cpu_count']} cores, torch threads {m['torch_threads']}), jax {m['versions']['jax']}, "
             f"torch {m['versions']['torch']}, transformers {m['versions']['transformers']}",
             f"matmul rate ({mm['jax']['n']}^2 {mm['jax']['dtype']}): JAX {_gflops(mm['jax']['flops_per_s'])} "
             f"GFLOP/s, PyTorch {_gflops(mm['torch']['flops_per_s'])} GFLOP/s"]
    head = (f"{'part':8s} {'JAX ms':>10s} {'torch ms':>10s} {'torch/JAX':>9s} {'GFLOP/call':>10s} "
            f"{'JAX GFLOP/s':>16s} {'torch GFLOP/s':>16s} {'max rel err':>11s} {'others':>6s}  workload")
    lines += [head, "-" * len(head)]
    for name, r in report["parts"].items():
        if "skipped" in r:
            lines.append(f"{name:8s} skipped: {r['skipped']}")
            continue
        j, t = r["jax"], r["torch"]
        rate_j = f"{_gflops(j['flops_per_s'])} ({_pct(j['fraction_of_matmul_rate'])})"
        rate_t = f"{_gflops(t['flops_per_s'])} ({_pct(t['fraction_of_matmul_rate'])})"
        load = r["foreign_load"]
        others = "n/a" if load is None else _pct(load["others_cpu_share"] + load["steal_share"])
        lines.append(f"{name:8s} {j['median_ms']:10.2f} {t['median_ms']:10.2f} {r['ratio_torch_over_jax']:9.2f} "
                     f"{_gflops(r['flops']):>10s} {rate_j:>16s} {rate_t:>16s} {r['max_rel_err']:11.2e} "
                     f"{others:>6s}  {r['shape']}")
    lines.append("torch/JAX > 1: JAX is faster; (x%) = achieved FLOP/s as a share of that framework's matmul rate; "
                 "others = CPU share used by other processes (and hypervisor steal) while timing")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- CLI

def _define_flags():
    """Flags exist only when this module is the program, so importing it (tests) defines nothing."""
    from absl import flags
    flags.DEFINE_enum("size", "small", list(SIZES), "Model size for random weights (ignored with --checkpoint).")
    flags.DEFINE_list("parts", list(PARTS), "What to compare: encoder, prefill or both.")
    flags.DEFINE_integer("frames", None, "Images per encoder call (default: the size's, 2; 1 for real).")
    flags.DEFINE_integer("prompt_tokens", None, "Prompt length L for the prefill (default: the size's).")
    flags.DEFINE_enum("logits", "last", list(LOGITS), "Prefill logits: last position or every position.")
    flags.DEFINE_enum("dtype", "float32", list(DTYPES), "Weights and compute dtype, both frameworks.")
    flags.DEFINE_enum("attention", "xla", list(ATTENTION_IMPLS), "The JAX model's attention kernel "
                      "(models.layers.attention): xla, chunked (query blocks), cudnn (GPU), pallas (TPU).")
    flags.DEFINE_integer("repeats", 5, "Timed runs per framework (interleaved; medians reported).")
    flags.DEFINE_integer("warmup", 2, "Untimed runs per framework first (JAX compiles in the first).")
    flags.DEFINE_integer("threads", None, "torch.set_num_threads(T); default: leave PyTorch's choice.")
    flags.DEFINE_string("checkpoint", None, "A local InternVL3 directory (transformers or OpenGVLab layout) to "
                        "use instead of random weights.")
    flags.DEFINE_integer("matmul_n", 2048, "Side of the square matmul that measures the machine's rate.")
    flags.DEFINE_integer("seed", 0, "Seed of the random weights and inputs.")
    flags.DEFINE_string("out", None, "Also write the report as JSON to this file.")


def main(argv):
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    opts = Options(size=f.size, parts=tuple(p.strip() for p in f.parts if p.strip()), frames=f.frames,
                   prompt_tokens=f.prompt_tokens, logits=f.logits, dtype=f.dtype, attention=f.attention,
                   repeats=f.repeats,
                   warmup=f.warmup, threads=f.threads, checkpoint=f.checkpoint, matmul_n=f.matmul_n, seed=f.seed)
    try:
        validate(opts)
        if f.out and not Path(f.out).absolute().parent.is_dir():
            raise ValueError(f"--out={f.out!r}: directory {str(Path(f.out).absolute().parent)!r} does not exist")
        report = compare(opts, log=lambda msg: print(msg, flush=True))
    except (ValueError, FileNotFoundError) as e:  # config / checkpoint / parity problems are all ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_table(report))
    if f.out:
        Path(f.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {f.out}")
    return 0


if __name__ == "__main__":
    from liteframe_jax.cli import run
    _define_flags()
    run(main)
