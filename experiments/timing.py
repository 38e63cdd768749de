"""Shared measuring tools for the benchmarks: wall-clock timing of jitted functions, compiler-counted FLOPs, and
the machine's measured matmul rate (the yardstick for achieved FLOP/s)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def block(tree: Any) -> Any:
    """Waits for every array in `tree` (jax.block_until_ready on a pytree)."""
    return jax.block_until_ready(tree)


def time_call(fn: Callable[[], Any], *, warmup: int = 1, repeats: int = 5) -> dict:
    """Runs `fn()` `warmup` times untimed, then `repeats` times timed, blocking on the result each time.
    Returns {"median_ms", "min_ms", "max_ms", "repeats", "times_ms"}."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be >= 1")
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(fn())
        times.append((time.perf_counter() - t0) * 1e3)
    return summarize(times)


def summarize(times_ms: list[float]) -> dict:
    """Median / min / max of a list of per-run milliseconds."""
    return {"median_ms": statistics.median(times_ms), "min_ms": min(times_ms), "max_ms": max(times_ms),
            "repeats": len(times_ms), "times_ms": [round(t, 4) for t in times_ms]}


def compiled_flops(jitted, *args, **kwargs) -> float | None:
    """FLOPs of one call as counted by XLA's cost analysis of the compiled program (args may be abstract
    `jax.ShapeDtypeStruct`s). None when the backend does not report them."""
    compiled = jitted.lower(*args, **kwargs).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per program
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def matmul_rate(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> dict:
    """The machine's measured dense matmul rate in FLOP/s for an (n, n) @ (n, n) product on the default
    device, jitted. Returns {"flops_per_s", "n", "dtype", "median_ms"}."""
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    f = jax.jit(lambda x, y: x @ y)
    t = time_call(lambda: f(a, a), warmup=2, repeats=repeats)
    return {"flops_per_s": 2.0 * n ** 3 / (t["median_ms"] / 1e3), "n": n, "dtype": jnp.dtype(dtype).name,
            "median_ms": t["median_ms"]}


def rate(flops: float | None, ms: float) -> float | None:
    """Achieved FLOP/s for `flops` done in `ms` milliseconds."""
    if flops is None or ms <= 0:
        return None
    return flops / (ms / 1e3)
