"""Test-session setup: 8 simulated CPU devices, set before jax initializes its backend, and one persistent XLA
compilation cache for the session."""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Most of the suite's time is XLA compiling the same small programs again: the training-run and CLI tests start
# subprocesses (they inherit os.environ) that compile what earlier runs compiled, and tests re-jit identical
# closures. One fresh on-disk cache per session, removed at exit, so every program still compiles once per run;
# set JAX_COMPILATION_CACHE_DIR yourself to keep one across runs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache_dir = tempfile.mkdtemp(prefix="liteframe-tests-xla-cache-")
    atexit.register(shutil.rmtree, _cache_dir, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache_dir
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_terminal_summary(terminalreporter):
    """Print the parity errors the tests recorded (record_property), so CI logs carry the measured numbers."""
    rows = []
    for report in terminalreporter.stats.get("passed", []) + terminalreporter.stats.get("failed", []):
        if report.when == "call":
            rows += [(k, v) for k, v in report.user_properties if isinstance(v, float)]
    if rows:
        terminalreporter.section("measured errors (max relative)")
        for k, v in rows:
            terminalreporter.write_line(f"{k:60s} {v:.3e}")
        terminalreporter.write_line(f"{'overall max':60s} {max(v for _, v in rows):.3e}")
