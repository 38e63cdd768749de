"""Train LiteFrame models.

    python -m liteframe_jax.train --config configs/ctd.py[:variant=tiny] --workdir DIR [--config.FIELD=VALUE ...]

Runs the experiment the config describes (config.kind: "ctd" = Compressed Token Distillation, configs/ctd.py;
"lma" = Language Model Adaptation, configs/lma.py). Re-running the
same command resumes from the latest checkpoint in DIR (train state and data iterator), so an interrupted run
continues exactly. Writes DIR/metrics.jsonl, DIR/tensorboard/, DIR/checkpoints/, DIR/config.json.
"""

from __future__ import annotations

import sys

from absl import app, flags
from ml_collections import config_flags

from liteframe_jax.cli import run as run_cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file, e.g. configs/ctd.py:variant=tiny.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; re-use it to resume).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if config.kind not in ("ctd", "lma"):
        print(f"error: unknown config.kind={config.kind!r} (supported: ctd, lma)", file=sys.stderr)
        return 1
    from liteframe_jax.train import ctd, lma
    try:
        (ctd if config.kind == "ctd" else lma).run(config, _WORKDIR.value)
    except (ValueError, FileNotFoundError, ctd.NonFiniteLossError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
