"""`python -m converters.export_internvl3`: help, a successful export with progress lines, one-line errors.

The library behind it (liteframe_jax/checkpoints/export_internvl.py) is tested in tests/checkpoints.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.import_internvl import convert_internvl3, import_internvl3
from testing.tiny_internvl import TinySpec, build_reference, write_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """A tiny teacher imported from the OpenGVLab layout: (our checkpoint, its params)."""
    root = tmp_path_factory.mktemp("cli")
    spec = TinySpec()
    src = write_checkpoint(build_reference(spec), spec, root / "src", "original")
    return convert_internvl3(src, root / "ours"), import_internvl3(src)[1]


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "converters.export_internvl3", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_help_explains_the_flags():
    r = _cli("--help")
    assert r.returncode == 0, r.stderr
    for flag in ("--checkpoint:", "--out:", "--layout:", "--dtype:", "--[no]overwrite:", "--max_shard_gb:"):
        assert flag in r.stdout, flag
    assert "<original|hf>" in r.stdout and "auto|float32|bfloat16" in r.stdout
    assert "remote-code" in r.stdout


def test_export_prints_progress_and_reimports_bit_identical(ours, tmp_path):
    ck, params = ours
    r = _cli("--checkpoint", ck, "--out", tmp_path / "out", "--layout", "original", "--max_shard_gb", "0.001")
    assert r.returncode == 0, r.stderr[-3000:]
    for line in ("exporting ", "config.json (InternVLChatModel", "model-00001-of-00002.safetensors: ",
                 "65 tensors, 373,280 parameters", "keys and shapes checked", "wrote "):
        assert line in r.stdout, line
    assert sorted(os.listdir(tmp_path)) == ["out"]
    _, got, layout = import_internvl3(tmp_path / "out")
    assert layout == "original"
    want = jax.tree_util.tree_flatten_with_path(params)[0]
    assert [p for p, _ in jax.tree_util.tree_flatten_with_path(got)[0]] == [p for p, _ in want]
    for a, (_, b) in zip(jax.tree.leaves(got), want):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("case", ["student", "existing", "layout"])
def test_errors_exit_nonzero_with_one_error_line_and_write_nothing(ours, tmp_path, case):
    ck, dst, args = ours[0], tmp_path / "out", ["--layout", "original"]
    if case == "student":
        ck = store.save_checkpoint(tmp_path / "student", "liteframe", {}, {"student": {"x": np.zeros(2, np.float32)}})
        expect = "converters/export_torch.py"
    elif case == "existing":
        dst.mkdir()
        (dst / "keep.txt").write_text("x")
        expect = "--overwrite"
    else:
        args, expect = ["--layout", "torch"], "--layout"
    before = sorted(os.listdir(tmp_path))
    r = _cli("--checkpoint", ck, "--out", dst, *args)
    assert r.returncode == 1 and expect in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    if case != "layout":  # absl reports a bad enum value itself (not as an `error:` line)
        assert len(_errors(r.stderr)) == 1
    assert sorted(os.listdir(tmp_path)) == before
    if case == "existing":
        assert os.listdir(dst) == ["keep.txt"]
