"""Multi-process start-up: when and how to call `jax.distributed.initialize` (before any other jax call).

One process per host (or per GPU group); every process runs the same command. The coordinator address, process
count and process id come from explicit values (flags) or, left unset, from the cluster environment that jax
detects itself (SLURM, Open MPI, Cloud TPU pods, Kubernetes JobSets, JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID).
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

from liteframe_jax.config_base import ConfigBase

MODES = ("auto", "on", "off")

# Environment variables whose presence means this process is one of several (jax reads the details itself).
_CLUSTER_HINTS = {
    "JAX_COORDINATOR_ADDRESS": "JAX_COORDINATOR_ADDRESS",
    "SLURM_STEP_NUM_TASKS": "SLURM",
    "OMPI_COMM_WORLD_SIZE": "Open MPI",
    "MEGASCALE_COORDINATOR_ADDRESS": "Cloud TPU multislice",
    "TPU_WORKER_HOSTNAMES": "Cloud TPU pod",
}


@dataclasses.dataclass(frozen=True)
class DistributedConfig(ConfigBase):
    """mode: "auto" (initialize when values are given or a multi-process cluster is detected), "on" (always;
    jax must find the missing values in the environment), "off" (single process)."""

    config_name: ClassVar[str] = "distributed setup"
    mode: str = "auto"
    coordinator_address: str | None = None  # host:port of process 0
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None  # devices this process drives (e.g. one GPU per process)

    def problems(self) -> list[str]:
        e = []
        if self.mode not in MODES:
            e.append(f"distributed mode {self.mode!r} must be one of {MODES}")
        if self.num_processes is not None and self.num_processes < 1:
            e.append(f"num_processes={self.num_processes} must be >= 1")
        if self.process_id is not None and self.num_processes is not None and not (
                0 <= self.process_id < self.num_processes):
            e.append(f"process_id={self.process_id} must be in [0, num_processes={self.num_processes})")
        if self.coordinator_address is not None and ":" not in self.coordinator_address:
            e.append(f"coordinator_address={self.coordinator_address!r} must be host:port")
        explicit = (self.coordinator_address, self.num_processes, self.process_id)
        if any(v is not None for v in explicit) and not all(v is not None for v in explicit):
            e.append("give coordinator_address, num_processes and process_id together (or none of them, to let "
                     "jax read the cluster environment)")
        if self.mode == "off" and any(v is not None for v in explicit):
            e.append("distributed mode 'off' with coordinator/process values: drop them or use 'auto'")
        return e


def detected_cluster(environ=None) -> str | None:
    """The name of the multi-process environment this process runs in, or None (a single process)."""
    env = os.environ if environ is None else environ
    for var, name in _CLUSTER_HINTS.items():
        value = env.get(var)
        if value is None:
            continue
        if var in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE") and value.strip() in ("", "1"):
            continue  # a one-task job is a single process
        if var == "TPU_WORKER_HOSTNAMES" and "," not in value:
            continue  # a single-host TPU VM
        return name
    return None


def should_initialize(cfg: DistributedConfig, environ=None) -> bool:
    if cfg.mode == "off":
        return False
    if cfg.mode == "on" or cfg.coordinator_address is not None:
        return True
    return detected_cluster(environ) is not None


def initialize(cfg: DistributedConfig) -> bool:
    """Calls `jax.distributed.initialize` when `should_initialize`; must run before anything touches jax devices.
    Returns whether it did. Afterwards jax.process_index()/process_count() and jax.devices() are global."""
    cfg.validate()
    if not should_initialize(cfg):
        return False
    import jax

    kwargs = {k: v for k, v in (("coordinator_address", cfg.coordinator_address),
                                ("num_processes", cfg.num_processes), ("process_id", cfg.process_id),
                                ("local_device_ids", list(cfg.local_device_ids) if cfg.local_device_ids else None))
              if v is not None}
    jax.distributed.initialize(**kwargs)
    return True
