"""Agreement and speed of the attention implementations against the plain XLA path, at the models' real shapes.

    python -m experiments.attention_check [--impls cudnn,chunked] [--dtype bfloat16] [--shapes vit,llm_prefill]
        [--out FILE.json]

For every shape and implementation it runs models.layers.attention on the same random q, k, v (and the same
masks) as the reference implementation "xla", in --dtype, and reports the max relative error
max|a - ref| / max|ref| of the output and of the gradients w.r.t. q, k, v (of sum(out * r) for a fixed random r),
plus the median forward and forward+backward times. The fused kernels (cudnn, pallas) need their hardware; an
implementation that fails on this backend is reported with its error instead of numbers.

Shapes (batch, query length, heads, kv heads, head dim, masking):
  vit          8 frames x 1025 tokens of InternViT-300M (16 heads x 64), no mask;
  student      16 frames x 1024 tokens of the 87M student (12 heads x 64), no mask;
  llm_prefill  Qwen2.5-7B prefill of 4096 tokens (28 query / 4 kv heads x 128), causal, the first 100 keys of
               the second sequence padded (left padding).
"""

from __future__ import annotations

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from experiments.timing import time_call
from liteframe_jax.cli import error as cli_error, run
from liteframe_jax.models.config import ATTENTION_IMPLS
from liteframe_jax.models.layers import attention


class Shape(NamedTuple):
    batch: int
    length: int
    heads: int
    kv_heads: int
    head_dim: int
    causal: bool
    left_pad: int  # keys padded at the start of the last sequence


SHAPES = {"vit": Shape(8, 1025, 16, 16, 64, False, 0),
          "student": Shape(16, 1024, 12, 12, 64, False, 0),
          "llm_prefill": Shape(2, 4096, 28, 4, 128, True, 100)}


def inputs(s: Shape, dtype, seed: int = 0):
    """(q, k, v, r, key_valid or None, query_slots or None) for shape `s`."""
    ks = jax.random.split(jax.random.key(seed), 4)
    q = jax.random.normal(ks[0], (s.batch, s.length, s.heads, s.head_dim), jnp.float32).astype(dtype)
    k = jax.random.normal(ks[1], (s.batch, s.length, s.kv_heads, s.head_dim), jnp.float32).astype(dtype)
    v = jax.random.normal(ks[2], (s.batch, s.length, s.kv_heads, s.head_dim), jnp.float32).astype(dtype)
    r = jax.random.normal(ks[3], q.shape, jnp.float32).astype(dtype)
    key_valid = query_slots = None
    if s.left_pad:
        key_valid = jnp.ones((s.batch, s.length), bool).at[-1, :s.left_pad].set(False)
        # padded query rows carry no loss in the models (their outputs are never read): no cotangent there
        r = r.at[-1, :s.left_pad].set(0)
    if s.causal:
        query_slots = jnp.arange(s.length)
    return q, k, v, r, key_valid, query_slots


def functions(impl: str, key_valid, query_slots):
    """(forward (q, k, v) -> out, value_and_grad (q, k, v, r) -> grads), jitted."""
    fwd = jax.jit(lambda q, k, v: attention(q, k, v, key_valid=key_valid, query_slots=query_slots,
                                            implementation=impl))

    def objective(q, k, v, r):
        return jnp.sum(fwd(q, k, v).astype(jnp.float32) * r.astype(jnp.float32))

    return fwd, jax.jit(jax.grad(objective, argnums=(0, 1, 2)))


def max_rel_err(a, ref, valid_rows=None) -> float:
    a, ref = np.asarray(a, np.float32), np.asarray(ref, np.float32)
    if valid_rows is not None:  # padded query rows are garbage in every implementation; compare the rest
        a, ref = a[valid_rows], ref[valid_rows]
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-30))


def check(shape_name: str, impls: list[str], dtype: str, repeats: int = 5, shape: Shape | None = None) -> dict:
    """Compares `impls` with "xla" at SHAPES[shape_name] (or `shape`, labelled shape_name): the report entry."""
    s = shape or SHAPES[shape_name]
    q, k, v, r, key_valid, query_slots = inputs(s, jnp.dtype(dtype))
    rows = None
    if s.left_pad:  # query rows of padded positions attend nothing valid under a causal mask
        rows = np.ones((s.batch, s.length), bool)
        rows[-1, :s.left_pad] = False
    ref_fwd, ref_grad = functions("xla", key_valid, query_slots)
    ref_out, ref_grads = ref_fwd(q, k, v), ref_grad(q, k, v, r)
    report = {"shape": s._asdict(), "dtype": dtype, "results": {}}
    for impl in ["xla", *impls]:
        fwd, grad = functions(impl, key_valid, query_slots)
        try:
            out, grads = fwd(q, k, v), grad(q, k, v, r)
            entry = {"out_max_rel_err": max_rel_err(out, ref_out, rows),
                     "grad_max_rel_err": {n: max_rel_err(g, gr, rows if n == "dq" else None)
                                          for n, g, gr in zip(("dq", "dk", "dv"), grads, ref_grads)},
                     "forward_ms": time_call(lambda: fwd(q, k, v), warmup=1, repeats=repeats)["median_ms"],
                     "forward_backward_ms": time_call(lambda: grad(q, k, v, r), warmup=1,
                                                      repeats=repeats)["median_ms"]}
        except Exception as e:  # noqa: BLE001 - a kernel missing on this backend is a result, not a crash
            entry = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        report["results"][impl] = entry
        print(f"[attention_check] {shape_name:12s} {impl:8s} {json.dumps(entry)}", flush=True)
    return report


def main(argv):
    del argv
    f = flags.FLAGS
    unknown = [i for i in f.impls if i not in ATTENTION_IMPLS]
    bad_shapes = [x for x in f.shapes if x not in SHAPES]
    if unknown or bad_shapes:
        return cli_error(f"unknown --impls {unknown} (known: {ATTENTION_IMPLS}) or --shapes {bad_shapes} "
              f"(known: {sorted(SHAPES)})")
    print(f"[attention_check] backend {jax.default_backend()} {jax.devices()[0].device_kind} jax {jax.__version__}",
          flush=True)
    reports = {name: check(name, list(f.impls), f.dtype, f.repeats) for name in f.shapes}
    if f.out:
        with open(f.out, "w") as fh:
            json.dump({"device": jax.devices()[0].device_kind, "jax": jax.__version__, "shapes": reports}, fh,
                      indent=1)


if __name__ == "__main__":
    flags.DEFINE_list("impls", ["cudnn", "chunked"], "Implementations to compare with xla.")
    flags.DEFINE_list("shapes", list(SHAPES), "Which shapes: " + ", ".join(SHAPES))
    flags.DEFINE_enum("dtype", "bfloat16", ["bfloat16", "float16", "float32"], "q, k, v dtype.")
    flags.DEFINE_integer("repeats", 5, "Timed runs per measurement (median reported).")
    flags.DEFINE_string("out", None, "Write the report as JSON here.")
    run(main)
