"""Faults met by `python -m liteframe_jax.train` from outside (issue 12): a corrupted newest checkpoint and a disk
that fills up during training. Each must end in one clear line, not in pages of orbax tracebacks."""

import resource
import subprocess

import jax
import numpy as np
import orbax.checkpoint as ocp

from tests.train.ctd_cli import ROOT, command, env, train


def progress_free(stderr: str) -> list[str]:
    """The lines of `stderr` that are not progress-bar redraws."""
    lines = stderr.replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("train:")]


def state_params(step_dir):
    return ocp.StandardCheckpointer().restore(step_dir / "state")["params"]


def truncate_arrays(step_dir):
    """What a crash mid-copy or a full disk leaves: every array file of the step cut to a third."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.name != "_METADATA"]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def test_a_truncated_newest_checkpoint_is_moved_aside_in_one_line_and_the_rerun_ends_where_the_run_did(tmp_path):
    work = tmp_path / "run"
    train(work)  # checkpoints at steps 3 and 6
    reference = state_params(work / "checkpoints" / "6")
    truncate_arrays(work / "checkpoints" / "6")
    proc = subprocess.run(command(work), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line for line in progress_free(proc.stderr) if "cannot be read" in line]
    assert len(said) == 1 and "checkpoint step 6 cannot be read" in said[0], progress_free(proc.stderr)
    assert "moved to" in said[0] and said[0].endswith("resuming from step 3")
    assert "Traceback" not in proc.stderr and "Event loop is closed" not in proc.stderr, proc.stderr[-3000:]
    assert len(progress_free(proc.stderr)) <= 4, progress_free(proc.stderr)  # the line, the banner, the export
    assert [p.name.split("-")[0] for p in (work / "checkpoints.unreadable").iterdir()] == ["6"]  # kept
    jax.tree.map(np.testing.assert_array_equal, state_params(work / "checkpoints" / "6"), reference)


def test_a_disk_that_fills_up_during_training_ends_in_one_error_line(tmp_path):
    """Files may not grow past 32 KiB (RLIMIT_FSIZE; Python ignores SIGXFSZ, so writes fail with EFBIG as they
    would with ENOSPC): the first checkpoint cannot be written. No compilation cache: its entries are larger."""
    work = tmp_path / "run"
    quiet_env = {k: v for k, v in env().items() if k != "JAX_COMPILATION_CACHE_DIR"}
    limit = 32 * 1024
    proc = subprocess.run(command(work), cwd=ROOT, env=quiet_env, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    lines = progress_free(proc.stderr)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) <= 2 and lines[-1].startswith("error: writing checkpoint step 3 to "), lines[-10:]
    assert "File too large" in lines[-1] and "Traceback" not in proc.stderr
