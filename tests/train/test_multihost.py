"""Multi-process CTD: two processes on localhost (4 CPU devices each) join through jax.distributed, train on one
global 8-device mesh feeding their own halves of every batch, checkpoint from both, resume on a different mesh
shape, and reproduce the single-process run's losses. Only process 0 logs."""

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from liteframe_jax.train.distributed import DistributedConfig, detected_cluster, should_initialize
from tests.train.ctd_cli import ROOT, command, env


def _mesh(data, fsdp, tensor):
    return [f"--config.mesh.data={data}", f"--config.mesh.fsdp={fsdp}", f"--config.mesh.tensor={tensor}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch_two_processes(workdir, logdir, *extra, timeout=600, grace=60):
    """Runs the trainer as 2 processes x 4 devices. Returns [(returncode, stderr text)] in process order; if one
    process fails the other gets `grace` seconds to end on its own (it may be failing too, only later on a loaded
    machine), then is stopped (it would wait for its peer until the coordinator times out)."""
    import time
    port = _free_port()
    logdir.mkdir(parents=True, exist_ok=True)
    logs = [open(logdir / f"process{i}.log", "w+") for i in range(2)]
    procs = [subprocess.Popen(command(workdir, *extra, f"--coordinator_address=localhost:{port}",
                                      "--num_processes=2", f"--process_id={i}"),
                              cwd=ROOT, env=env(4), stdout=logs[i], stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    deadline = time.time() + timeout
    try:
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                deadline = min(deadline, time.time() + grace)
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    out = []
    for p, log in zip(procs, logs):
        log.seek(0)
        out.append((p.returncode, log.read()))
        log.close()
    return out


def train_two_processes(workdir, logdir, *extra):
    outs = launch_two_processes(workdir, logdir, *extra)
    for rc, text in outs:
        assert rc == 0, f"process exited {rc}:\n{text[-6000:]}"
    return [text for _, text in outs]


def losses(workdir):
    recs = [json.loads(line) for line in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs if "loss" in r]


@pytest.fixture(scope="module")
def single_process(ctd_straight_run):
    """The same run in one process: the default mesh, data parallel over all 8 devices."""
    return ctd_straight_run


def test_two_processes_train_checkpoint_and_resume_on_another_mesh_like_one_process(single_process, tmp_path):
    work = tmp_path / "two"
    first = train_two_processes(work, tmp_path / "logs1", *_mesh(4, 2, 1), "--config.train.stop_at_step=3")
    assert "stopping at step 3" in first[0]
    assert "mesh {'data': 4, 'fsdp': 2, 'tensor': 1}" in first[0]
    assert "CTD:" not in first[1] and "stopping at step" not in first[1]  # process 1 does not log
    assert sorted(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == [3]

    # Resume on a different mesh shape. It stays data x fsdp: tensor-parallel matmuls sum in another order, and
    # Adam's first steps (update ~ sign(g)) turn those last-bit differences of near-zero gradients into ~1e-3
    # loss differences a few steps later, even within one process.
    second = train_two_processes(work, tmp_path / "logs2", *_mesh(2, 4, 1))
    assert "resuming at step 3" in second[0]
    assert "mesh {'data': 2, 'fsdp': 4, 'tensor': 1}" in second[0]

    ref, got = losses(single_process), losses(work)
    assert [s for s, _ in got] == [s for s, _ in ref] == list(range(1, 7))  # one record per step: process 0 only
    np.testing.assert_allclose([v for _, v in got], [v for _, v in ref], rtol=1e-5)
    assert (work / "student").is_dir()  # the final encoder, gathered from both processes


def test_resuming_with_another_process_count_is_refused_with_the_reason(single_process, tmp_path):
    """Each process reads its own slice of the input stream, so a 1-process checkpoint cannot continue on 2."""
    import shutil
    work = tmp_path / "other"
    shutil.copytree(single_process, work)
    shutil.rmtree(work / "checkpoints" / "6")
    outs = launch_two_processes(work, tmp_path / "logs", *_mesh(8, 1, 1))
    assert [rc for rc, _ in outs] == [1, 1], [text[-3000:] for _, text in outs]
    assert "written by 1 process(es) and this run has 2" in outs[0][1]


@pytest.mark.parametrize("env,name", [
    ({}, None),
    ({"SLURM_STEP_NUM_TASKS": "1"}, None),
    ({"SLURM_STEP_NUM_TASKS": "4"}, "SLURM"),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, "Open MPI"),
    ({"TPU_WORKER_HOSTNAMES": "t0"}, None),
    ({"TPU_WORKER_HOSTNAMES": "t0,t1"}, "Cloud TPU pod"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1234"}, "JAX_COORDINATOR_ADDRESS"),
])
def test_cluster_detection_decides_auto_initialization(env, name):
    assert detected_cluster(env) == name
    assert should_initialize(DistributedConfig(), env) == (name is not None)
    assert should_initialize(DistributedConfig(mode="off"), env) is False
    assert should_initialize(DistributedConfig(mode="on"), env) is True


def test_partial_or_impossible_process_values_are_rejected():
    with pytest.raises(ValueError, match="together"):
        DistributedConfig(coordinator_address="h:1").validate()
    with pytest.raises(ValueError, match="process_id=2"):
        DistributedConfig(coordinator_address="h:1", num_processes=2, process_id=2).validate()
    with pytest.raises(ValueError, match="host:port"):
        DistributedConfig(coordinator_address="h", num_processes=2, process_id=0).validate()
