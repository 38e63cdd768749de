"""Test-session setup: 8 simulated CPU devices, set before jax initializes its backend."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")




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
