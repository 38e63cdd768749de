"""Leftovers of killed writers (issue 12, defect 9): a process killed with -9 inside an atomic write (import,
export and checkpoint saves share store.atomic_directory; precompute has its TargetCacheWriter) leaves its
unfinished folder; the next write of the same destination removes it and says so in one line, and leaves alone
what may still be in use."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from liteframe_jax.checkpoints.store import atomic_directory
from liteframe_jax.data.target_cache import TargetCacheWriter

ROOT = Path(__file__).resolve().parents[2]


def killed_while_writing(code: str) -> None:
    """Runs `code` (it prints 'ready' once its unfinished write exists, then waits) and kills it with -9."""
    proc = subprocess.Popen([sys.executable, "-c", code + "\nprint('ready', flush=True)\nimport time\ntime.sleep(600)"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def test_an_atomic_write_removes_what_a_killed_writer_of_the_same_destination_left(tmp_path, capfd):
    dst = tmp_path / "out"
    killed_while_writing("from liteframe_jax.checkpoints.store import atomic_directory\n"
                         f"w = atomic_directory({str(dst)!r})\n(w.__enter__() / 'config.json').write_text('{{}}')")
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")]
    assert len(left) == 1 and (left[0] / "config.json").exists() and not dst.exists()
    live = tmp_path / f".out.partial-{socket.gethostname()}-{os.getpid()}-0000beef"  # a writer still at work
    unknown = tmp_path / ".out.partial-1234abcd"  # named by an older version: whose is it?
    other = tmp_path / ".other.partial-nohost-1-00000000"  # another destination
    for p in (live, unknown, other):
        p.mkdir()
    capfd.readouterr()
    with atomic_directory(dst) as tmp:
        (tmp / "config.json").write_text("{}")
    err = capfd.readouterr().err.strip().splitlines()
    assert not left[0].exists() and live.exists() and unknown.exists() and other.exists() and dst.is_dir()
    assert len(err) == 2 and err[0].startswith(f"removed 1 unfinished write(s) of {dst}") and str(left[0]) in err[0]
    assert err[1].startswith("left alone 1 unfinished write(s)") and str(unknown) in err[1]


def test_a_target_cache_writer_removes_what_a_killed_writer_of_the_same_cache_left(tmp_path, capfd):
    path = tmp_path / "cache"
    killed_while_writing("from liteframe_jax.data.target_cache import TargetCacheWriter\n"
                         f"w = TargetCacheWriter({str(path)!r}, 4, (1, 2, 2, 3), num_frames=2)")
    left = list(tmp_path.glob("cache.partial-*"))
    assert len(left) == 1
    capfd.readouterr()
    with TargetCacheWriter(path, 4, (1, 2, 2, 3), num_frames=2) as w:
        w.write(np.arange(4), np.zeros((4, 1, 2, 2, 3), np.float32))
    err = capfd.readouterr().err
    assert not left[0].exists() and path.is_dir() and not list(tmp_path.glob("cache.partial-*"))
    assert f"removed 1 unfinished write(s) of target cache {path}" in err
