"""The CTD training command as the CLI tests start it (test_ctd_run, test_multihost): a short tiny run, and the
subprocess environment with a chosen number of simulated CPU devices."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# 6 steps: a checkpoint at 3 to stop and resume from, evaluation and the final checkpoint at 6
STEPS = ["--config.train.total_steps=6", "--config.optim.total_steps=6", "--config.optim.warmup_steps=2",
         "--config.train.checkpoint_every=3", "--config.train.eval_every=6", "--config.train.log_every=1",
         "--config.train.stats_batches=2", "--config.train.eval_batches=1"]


def env(devices=8):
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}


def command(workdir, *extra):
    return [sys.executable, "-m", "liteframe_jax.train", "--config", "configs/ctd.py", "--workdir", str(workdir),
            *STEPS, *extra]


def train(workdir, *overrides, expect_ok=True):
    """Runs `python -m liteframe_jax.train --config configs/ctd.py` (STEPS, then `overrides`) on 8 devices."""
    proc = subprocess.run(command(workdir, *overrides), cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=600)
    if expect_ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return proc
