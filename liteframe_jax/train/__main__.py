"""Train LiteFrame models.

    python -m liteframe_jax.train --config configs/ctd.py[:variant=tiny] --workdir DIR [--config.FIELD=VALUE ...]

Runs the experiment the config describes (config.kind: "ctd" = Compressed Token Distillation, configs/ctd.py;
"lma" = Language Model Adaptation, configs/lma.py). Re-running the
same command resumes from the latest checkpoint in DIR (train state and data iterator), so an interrupted run
continues exactly. Writes DIR/metrics.jsonl, DIR/tensorboard/, DIR/checkpoints/, DIR/config.json.

Multi-host: start the same command on every host (one process per host, or per GPU with --local_device_ids);
DIR must be on a filesystem all hosts share (orbax writes one checkpoint from all of them). The processes join
through `jax.distributed.initialize`: under SLURM, Open MPI, Cloud TPU pods or Kubernetes JobSets jax reads the
cluster environment by itself; elsewhere pass --coordinator_address=HOST0:PORT --num_processes=N
--process_id=I. The config's mesh spans all processes' devices; each process feeds its slice of every global
batch; only process 0 logs and writes files other than checkpoints.
"""

from __future__ import annotations

import sys

from absl import app, flags

from liteframe_jax.cli import define_config_flag
from liteframe_jax.cli import run as run_cli

_CONFIG = define_config_flag("config", "Experiment config file, e.g. configs/ctd.py:variant=tiny; any field can "
                                       "be set with --config.a.b=VALUE (lists as 32,32 or '[32, 32]').")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created; re-use it to resume).")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                                  "Call jax.distributed.initialize: auto = when the flags below are given or a "
                                  "multi-process cluster (SLURM, Open MPI, TPU pod, JAX_COORDINATOR_ADDRESS) is "
                                  "detected; on = always; off = never.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id in [0, num_processes).")
_LOCAL_DEVICES = flags.DEFINE_list("local_device_ids", None, "Devices this process drives, e.g. 0 for one GPU "
                                   "per process (default: all local devices).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from liteframe_jax.train.distributed import DistributedConfig, initialize

    try:
        dist = DistributedConfig(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                 tuple(int(d) for d in _LOCAL_DEVICES.value) if _LOCAL_DEVICES.value else None)
        initialize(dist.validate())
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    config = _CONFIG.value
    from liteframe_jax.train import ctd, lma, loop
    from liteframe_jax.train.checkpointing import CheckpointError

    tasks = {"ctd": ctd.CTDTask, "lma": lma.LMATask}  # config.kind -> task (liteframe_jax.train.loop: adding one)
    if config.kind not in tasks:
        print(f"error: unknown config.kind={config.kind!r} (supported: {', '.join(tasks)})", file=sys.stderr)
        return 1
    try:
        loop.run(tasks[config.kind](config), _WORKDIR.value)
    except (ValueError, FileNotFoundError, loop.NonFiniteLossError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
