"""Command-line plumbing: checks before long work, and OS errors as one line instead of a traceback."""

import os
import subprocess
import sys
from pathlib import Path

from liteframe_jax.cli import check_destination, check_source, os_error_line

ROOT = Path(__file__).resolve().parents[1]


def test_a_destination_needs_a_writable_existing_parent(tmp_path):
    assert check_destination(tmp_path / "out") is None
    assert "does not exist" in check_destination(tmp_path / "missing" / "out")
    (tmp_path / "file").write_text("x")
    assert "does not exist" in check_destination(tmp_path / "file" / "out")
    # /proc refuses new entries even for root (permission bits would not)
    assert "cannot write into '/proc'" in check_destination("/proc/liteframe-out")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".liteframe-write-check")]


def test_a_source_must_be_readable_and_of_the_right_kind(tmp_path):
    (tmp_path / "f").write_text("x")
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    assert check_source(tmp_path) is None and check_source(tmp_path / "f", "file") is None
    assert "is not a folder" in check_source(tmp_path / "f")
    assert "is a folder, not a file" in check_source(tmp_path, "file")
    assert "Too many levels of symbolic links" in check_source(tmp_path / "loop_a")
    assert "No such file" in check_source(tmp_path / "nothing")


def test_os_errors_read_as_one_line():
    e = OSError(28, "No space left on device", "/data/ckpt")
    assert os_error_line(e) == "OSError: No space left on device: '/data/ckpt'"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_import_refuses_a_symlink_loop_and_an_unwritable_destination_in_one_line(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    out = run_cli("converters.import_internvl3", "--src", str(tmp_path / "a"), "--dst", str(tmp_path / "out"))
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0, out.stderr
    assert out.stderr.startswith("error: cannot read folder") and "symbolic links" in out.stderr
    (tmp_path / "src").mkdir()
    out = run_cli("converters.import_internvl3", "--src", str(tmp_path / "src"), "--dst", "/proc/liteframe-out")
    assert out.returncode == 1 and out.stderr.startswith("error: cannot write into '/proc'"), out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr


def test_export_refuses_an_unwritable_destination_before_reading_the_checkpoint(tmp_path):
    out = run_cli("converters.export_torch", "--checkpoint", str(tmp_path), "--dst", "/proc/liteframe-export")
    assert out.returncode == 1 and "cannot write into '/proc'" in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
