"""Importing PyTorch InternVL3 checkpoints: what is accepted, what is refused, and what ends up on disk.

A tiny random transformers InternVL3 (testing/tiny_internvl.py) is written once per module in each key
layout; each test copies the checkpoint it damages. Bad input must give ONE error (of a type the CLI turns into
an `error:` line) that names the problem, and leave nothing at the destination: no output directory and no hidden
`.NAME.partial-*` / `.NAME.old-*` sibling.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy
from safetensors.torch import save_file as save_torch

import liteframe_jax as lf
from liteframe_jax.checkpoints import internvl_layouts as layouts
from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.import_internvl import CheckpointMismatchError, convert_internvl3, import_internvl3
from liteframe_jax.checkpoints.safetensors_stream import CheckpointFormatError, SafetensorsCheckpoint
from liteframe_jax.models.config import ConfigError
from testing.tiny_internvl import (TinySpec, build_reference, hf_runtime_to_original, make_inputs,
                                           write_checkpoint)

ROOT = Path(__file__).resolve().parents[2]
# The exception types converters/import_internvl3.py reports as a one-line `error: ...` (anything else would crash
# the CLI with a traceback).
CLI_ERRORS = (ValueError, FileNotFoundError, FileExistsError)
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
SHARD_2 = "model-00002-of-00002.safetensors"

# A key per layout whose absence / corruption the tests provoke (vision keys differ between layouts).
VISION_KEY = {"original": "vision_model.encoder.layers.1.attn.qkv.weight",
              "hf_single": "vision_tower.encoder.layer.1.attention.k_proj.weight",
              "hf_runtime": "model.vision_tower.encoder.layer.1.attention.k_proj.weight"}
LLM_KEY = {"original": "language_model.model.layers.1.mlp.down_proj.weight",
           "hf_single": "language_model.model.layers.1.mlp.down_proj.weight",
           "hf_runtime": "model.language_model.layers.1.mlp.down_proj.weight"}


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def spec():
    return TinySpec()


@pytest.fixture(scope="module")
def reference(spec):
    return build_reference(spec)


@pytest.fixture(scope="module")
def ckpts(reference, spec, tmp_path_factory):
    """Pristine checkpoints (never modified): name -> directory."""
    root = tmp_path_factory.mktemp("sources")
    return {"original": write_checkpoint(reference, spec, root / "original", "original"),
            "hf": write_checkpoint(reference, spec, root / "hf", "hf", num_shards=2),
            "hf_single": write_checkpoint(reference, spec, root / "hf_single", "hf"),
            "hf_runtime": write_checkpoint(reference, spec, root / "hf_runtime", "hf_runtime")}


@pytest.fixture(scope="module")
def imported(ckpts):
    """import_internvl3 of the 2-shard hf checkpoint: (config, params, layout)."""
    return import_internvl3(ckpts["hf"])


@pytest.fixture(scope="module")
def converted(ckpts, tmp_path_factory):
    return convert_internvl3(ckpts["hf"], tmp_path_factory.mktemp("converted") / "tiny")


# ------------------------------------------------------------------------------------------------ helpers
def copy_of(ckpts, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(ckpts[name], tmp_path / "src"))


def edit_weights(directory: Path, edit) -> None:
    """Rewrites the single-file checkpoint in `directory` with `edit(tensors)` applied (tensors: key -> array)."""
    tensors = load_numpy(str(directory / SINGLE))
    edit(tensors)
    save_numpy(tensors, str(directory / SINGLE), metadata={"format": "pt"})


def convert_fails(src: Path, dst: Path, error_type, **kwargs) -> str:
    """convert_internvl3 must raise `error_type` and write nothing next to `dst`; returns the message."""
    before = sorted(os.listdir(dst.parent))
    with pytest.raises(error_type) as info:
        convert_internvl3(src, dst, **kwargs)
    assert isinstance(info.value, CLI_ERRORS)
    assert_nothing_written(dst, before)
    return str(info.value)


def assert_nothing_written(dst: Path, listing_before: list[str]) -> None:
    assert not dst.exists()
    assert not list(dst.parent.glob(f".{dst.name}.*")), "a hidden partial/old directory was left behind"
    assert sorted(os.listdir(dst.parent)) == listing_before


def flat(params) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}


def assert_bitwise_equal(a, b) -> None:
    fa, fb = flat(a), flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert (fa[k].dtype, fa[k].shape) == (fb[k].dtype, fb[k].shape), k
        assert fa[k].tobytes() == fb[k].tobytes(), f"{k} differs"


def run_cli(*args, drop_xla_flags: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if drop_xla_flags:
        env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "converters.import_internvl3", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def logits_of(model, spec) -> np.ndarray:
    """Logits at the real (non-padding) positions of a left-padded 2-row batch with one frame per row."""
    inputs = make_inputs(spec, num_frames=2, batch_prompts=[5, 7], seed=3)
    mask = inputs.attention_mask.numpy()
    logits = model.logits(inputs.input_ids.numpy(), inputs.pixel_values.numpy().transpose(0, 2, 3, 1), mask)
    return np.asarray(logits)[mask.astype(bool)]


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("layout", ["original", "hf_single", "hf_runtime"])
def test_missing_key_is_reported_and_nothing_is_written(ckpts, tmp_path, layout):
    src = copy_of(ckpts, layout, tmp_path)
    edit_weights(src, lambda t: t.pop(LLM_KEY[layout]))
    msg = convert_fails(src, tmp_path / "out", CheckpointMismatchError)
    assert "missing (1)" in msg
    assert LLM_KEY[layout] in msg  # named as it would appear in this checkpoint's own layout
    assert "llm/layers_1/down/kernel" in msg
    assert "unexpected" not in msg and "wrong shape" not in msg


def test_unexpected_key_is_reported_and_nothing_is_written(ckpts, tmp_path):
    src = copy_of(ckpts, "hf_single", tmp_path)
    extra = "language_model.model.layers.0.mlp.extra_proj.weight"
    edit_weights(src, lambda t: t.update({extra: np.zeros((4, 4), np.float32)}))
    msg = convert_fails(src, tmp_path / "out", CheckpointMismatchError)
    assert "unexpected (1)" in msg and extra in msg
    assert "missing" not in msg and "wrong shape" not in msg


def test_rotary_inv_freq_buffers_are_ignored_not_unexpected(ckpts, tmp_path, imported):
    src = copy_of(ckpts, "hf_single", tmp_path)
    edit_weights(src, lambda t: t.update({"language_model.model.layers.0.self_attn.rotary_emb.inv_freq":
                                          np.ones((8,), np.float32)}))
    assert_bitwise_equal(import_internvl3(src)[1], imported[1])


def test_wrong_shape_is_reported_with_both_shapes_and_nothing_is_written(ckpts, tmp_path):
    src = copy_of(ckpts, "hf_single", tmp_path)
    key = VISION_KEY["hf_single"]  # (64, 64)

    def reshape(t):
        t[key] = np.zeros((64, 32), np.float32)
    edit_weights(src, reshape)
    msg = convert_fails(src, tmp_path / "out", CheckpointMismatchError)
    assert "wrong shape (1)" in msg
    assert f"{key}: checkpoint (64, 32), model expects (64, 64)" in msg
    assert "missing" not in msg and "unexpected" not in msg  # a misshaped tensor is not also reported missing


def test_missing_unexpected_and_misshaped_keys_are_reported_together_in_one_error(ckpts, tmp_path):
    src = copy_of(ckpts, "original", tmp_path)
    missing, extra, misshaped = LLM_KEY["original"], "mlp1.2.weight", VISION_KEY["original"]

    def damage(t):
        del t[missing]
        t[extra] = np.zeros((3,), np.float32)
        t[misshaped] = t[misshaped][:64]
    edit_weights(src, damage)
    msg = convert_fails(src, tmp_path / "out", CheckpointMismatchError)
    assert "original layout" in msg and str(src) in msg
    for section, key in (("missing (1)", missing), ("unexpected (1)", extra), ("wrong shape (1)", misshaped)):
        assert section in msg and key in msg, section
    assert "checkpoint (64, 64), model expects (192, 64)" in msg


@pytest.mark.parametrize("keep", ["all but the last byte", "header only partly"])
def test_truncated_safetensors_file_is_reported_and_nothing_is_written(ckpts, tmp_path, keep):
    src = copy_of(ckpts, "hf", tmp_path)
    shard = src / SHARD_2
    data = shard.read_bytes()
    shard.write_bytes(data[:-1] if keep == "all but the last byte" else data[:20])
    msg = convert_fails(src, tmp_path / "out", CheckpointFormatError)
    assert SHARD_2 in msg and "truncated" in msg


def test_unrecognizable_key_layout_is_reported_and_nothing_is_written(ckpts, tmp_path):
    src = copy_of(ckpts, "hf_single", tmp_path)

    def rename(t):
        for k in list(t):
            t["transformer." + k.replace("vision_tower", "encoder").replace("multi_modal_projector", "proj")] = \
                t.pop(k)
    edit_weights(src, rename)
    msg = convert_fails(src, tmp_path / "out", ValueError)
    assert "unknown checkpoint layout" in msg
    assert "transformer." in msg  # shows the keys it did find


def test_pickle_weights_are_refused_without_allow_pickle_and_nothing_is_written(ckpts, tmp_path, reference):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ckpts["hf_runtime"] / "config.json", src)
    torch.save(reference.state_dict(), src / "pytorch_model.bin")
    msg = convert_fails(src, tmp_path / "out", CheckpointFormatError)
    assert "pytorch_model.bin" in msg and "--allow_pickle" in msg


def test_missing_config_json_is_reported_and_nothing_is_written(ckpts, tmp_path):
    src = copy_of(ckpts, "hf", tmp_path)
    (src / "config.json").unlink()
    msg = convert_fails(src, tmp_path / "out", ConfigError)
    assert "config.json" in msg and str(src) in msg


def test_index_naming_a_shard_that_does_not_exist_is_reported_and_nothing_is_written(ckpts, tmp_path):
    src = copy_of(ckpts, "hf", tmp_path)
    (src / SHARD_2).unlink()
    msg = convert_fails(src, tmp_path / "out", CheckpointFormatError)
    assert INDEX in msg and SHARD_2 in msg and "do not exist" in msg


def test_missing_source_directory_is_reported_and_nothing_is_written(tmp_path):
    msg = convert_fails(tmp_path / "no_such_dir", tmp_path / "out", FileNotFoundError)
    assert "no_such_dir" in msg


def test_existing_destination_is_refused_and_left_untouched(ckpts, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(FileExistsError) as info:
        convert_internvl3(ckpts["hf"], dst)
    assert str(dst) in str(info.value) and "--overwrite" in str(info.value)
    assert os.listdir(dst) == ["keep.txt"] and (dst / "keep.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == before


def test_overwrite_replaces_an_existing_destination_and_leaves_no_sibling(ckpts, tmp_path, imported):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "stale.txt").write_text("old")
    convert_internvl3(ckpts["hf"], dst, overwrite=True)
    assert not (dst / "stale.txt").exists() and (dst / "liteframe.json").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert_bitwise_equal(lf.load(dst).params, imported[1])


def test_failed_overwrite_keeps_the_existing_destination(ckpts, tmp_path):
    src = copy_of(ckpts, "hf", tmp_path)
    (src / "config.json").unlink()
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError):
        convert_internvl3(src, dst, overwrite=True)
    assert os.listdir(dst) == ["keep.txt"] and (dst / "keep.txt").read_text() == "precious"
    assert sorted(os.listdir(tmp_path)) == ["out", "src"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failure_while_writing_leaves_no_partial_directory(ckpts, tmp_path, monkeypatch, overwrite):
    dst = tmp_path / "out"
    if overwrite:
        dst.mkdir()
        (dst / "keep.txt").write_text("precious")

    def disk_full(*args, **kwargs):  # fails after params/ has been written into the hidden partial directory
        raise OSError("No space left on device")
    monkeypatch.setattr(store.shutil, "copy2", disk_full)
    with pytest.raises(OSError, match="No space left"):
        convert_internvl3(ckpts["hf"], dst, overwrite=overwrite)
    assert sorted(os.listdir(tmp_path)) == (["out"] if overwrite else [])
    if overwrite:
        assert os.listdir(dst) == ["keep.txt"] and (dst / "keep.txt").read_text() == "precious"


def test_a_read_failure_midway_through_the_streamed_write_leaves_no_partial_directory(ckpts, tmp_path, monkeypatch):
    real_read, calls = SafetensorsCheckpoint.read, []

    def failing_read(self, key):
        calls.append(key)
        if len(calls) == 5:
            raise OSError("Input/output error")
        return real_read(self, key)
    monkeypatch.setattr(SafetensorsCheckpoint, "read", failing_read)
    with pytest.raises(OSError, match="Input/output error"):
        convert_internvl3(ckpts["hf"], tmp_path / "out")
    assert len(calls) == 5  # tensors are read as they are written (not all up front), and it stopped at the error
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------ pickle weights
def test_pickle_weights_with_allow_pickle_import_the_same_params_as_safetensors(ckpts, tmp_path, reference):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ckpts["original"] / "config.json", src)
    shutil.copy(ckpts["original"] / "tokenizer_config.json", src)
    torch.save(hf_runtime_to_original(reference.state_dict()), src / "pytorch_model.bin")
    cfg, params, layout = import_internvl3(src, allow_pickle=True)
    want_cfg, want, want_layout = import_internvl3(ckpts["original"])
    assert layout == want_layout == "original" and cfg == want_cfg
    assert_bitwise_equal(params, want)


def test_allow_pickle_still_refuses_pickles_that_would_run_code(ckpts, tmp_path):
    marker = tmp_path / "code_ran"

    class Payload:  # unpickling calls open(marker, "w"): creates the marker file
        def __reduce__(self):
            return open, (str(marker), "w")

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ckpts["hf_runtime"] / "config.json", src)
    torch.save({"lm_head.weight": torch.zeros(2), "payload": Payload()}, src / "pytorch_model.bin")
    unsafe = torch.load(src / "pytorch_model.bin", weights_only=False)  # control: a plain unpickle runs it
    unsafe["payload"].close()
    assert marker.exists()
    marker.unlink()
    msg = convert_fails(src, tmp_path / "out", CheckpointFormatError, allow_pickle=True)
    assert not marker.exists()
    assert "pytorch_model.bin" in msg and "weights_only=True" in msg


@pytest.mark.parametrize("payload", ["not a state dict", "corrupt"])
def test_allow_pickle_reports_unreadable_pickles_clearly(ckpts, tmp_path, payload):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ckpts["hf_runtime"] / "config.json", src)
    if payload == "corrupt":
        (src / "pytorch_model.bin").write_bytes(b"definitely not a pickle")
    else:
        torch.save(torch.zeros(3), src / "pytorch_model.bin")
    msg = convert_fails(src, tmp_path / "out", CheckpointFormatError, allow_pickle=True)
    assert "pytorch_model.bin" in msg
    assert ("weights_only=True" if payload == "corrupt" else "expected a state dict (name -> tensor), got a Tensor") \
        in msg


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_converts_a_sharded_hf_checkpoint_loadable_with_identical_params(ckpts, tmp_path, imported):
    dst = tmp_path / "out"
    res = run_cli("--src", ckpts["hf"], "--dst", dst)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not error_lines(res.stderr)
    assert (dst / "liteframe.json").is_file() and (dst / "params").is_dir()
    assert (dst / "tokenizer_config.json").read_text() == (ckpts["hf"] / "tokenizer_config.json").read_text()
    meta = json.loads((dst / "liteframe.json").read_text())
    assert meta["kind"] == "internvl" and meta["source"]["layout"] == "hf"
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no hidden partial sibling left
    model = lf.load(dst)
    assert model.config == imported[0]
    assert_bitwise_equal(model.params, imported[1])


def test_cli_bfloat16_stores_bfloat16_params_and_logits_stay_close(ckpts, tmp_path, imported, spec):
    dst = tmp_path / "out"
    res = run_cli("--src", ckpts["hf"], "--dst", dst, "--dtype", "bfloat16", drop_xla_flags=True)
    assert res.returncode == 0, res.stderr[-3000:]
    model = lf.load(dst)
    assert {x.dtype for x in flat(model.params).values()} == {np.dtype(ml_dtypes.bfloat16)}
    assert_bitwise_equal(model.params, jax.tree.map(lambda x: x.astype(ml_dtypes.bfloat16), imported[1]))
    ref = logits_of(lf.load(ckpts["hf"]), spec)
    got = logits_of(model, spec)
    assert np.all(np.isfinite(got))
    err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert 0 < err < 3e-2, err


@pytest.mark.parametrize("case", ["missing key", "pickle without flag", "pickle with a non-tensor object"])
def test_cli_bad_input_exits_1_with_one_error_line_and_writes_nothing(ckpts, tmp_path, reference, case):
    src = copy_of(ckpts, "hf_single", tmp_path)
    args = []
    if case == "missing key":
        edit_weights(src, lambda t: t.pop(LLM_KEY["hf_single"]))
        expect = LLM_KEY["hf_single"]
    else:
        (src / SINGLE).unlink()
        sd = reference.state_dict()
        if case == "pickle without flag":
            torch.save(sd, src / "pytorch_model.bin")
            expect = "--allow_pickle"
        else:
            torch.save({**sd, "evil": shutil.rmtree}, src / "pytorch_model.bin")
            args, expect = ["--allow_pickle"], "weights_only=True"
    dst = tmp_path / "out"
    res = run_cli("--src", src, "--dst", dst, *args)
    assert res.returncode == 1
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and expect in res.stderr, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    assert not dst.exists() and sorted(os.listdir(tmp_path)) == ["src"]


def test_cli_help_documents_the_flags_and_required_ones_are_enforced(tmp_path):
    res = run_cli("--help")
    assert res.returncode == 0
    for flag in ("--src:", "--dst:", "--dtype:", "--[no]overwrite:", "--[no]allow_pickle:"):
        assert flag in res.stdout, flag
    assert "auto|float32|bfloat16" in res.stdout
    res = run_cli("--dst", tmp_path / "out")
    assert res.returncode != 0 and "--src is required" in res.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ lf.load
def test_load_of_an_hf_directory_equals_load_of_the_converted_checkpoint_bitwise(ckpts, converted):
    listing = sorted(os.listdir(ckpts["hf"]))
    parent = sorted(os.listdir(ckpts["hf"].parent))
    on_the_fly, stored = lf.load(ckpts["hf"]), lf.load(converted)
    assert on_the_fly.config == stored.config
    assert_bitwise_equal(on_the_fly.params, stored.params)
    # importing on the fly writes nothing
    assert sorted(os.listdir(ckpts["hf"])) == listing and sorted(os.listdir(ckpts["hf"].parent)) == parent


# ------------------------------------------------------------------------------------------------ layouts
def test_layout_is_detected_from_original_hf_on_disk_and_hf_in_memory_key_names(ckpts):
    expected = {"original": (layouts.ORIGINAL, False), "hf": (layouts.HF, False),
                "hf_runtime": (layouts.HF, True)}
    for name, want in expected.items():
        assert layouts.detect_layout(SafetensorsCheckpoint(ckpts[name]).tensors) == want, name
    (cfg_o, p_o, l_o), (cfg_h, p_h, l_h), (cfg_r, p_r, l_r) = (import_internvl3(ckpts[n]) for n in expected)
    assert (l_o, l_h, l_r) == ("original", "hf", "hf")
    assert (cfg_o.vision.qkv_layout, cfg_h.vision.qkv_layout) == ("fused", "split")
    assert cfg_h == cfg_r
    assert_bitwise_equal(p_h, p_r)
    assert_bitwise_equal(p_o["llm"], p_h["llm"])
    assert_bitwise_equal(p_o["projector"], p_h["projector"])
    for i in range(cfg_h.vision.num_layers):  # fused [q; k; v] == the split projections
        fused, split = p_o["vision"][f"layers_{i}"]["attn"], p_h["vision"][f"layers_{i}"]["attn"]
        for j, x in enumerate("qkv"):
            np.testing.assert_array_equal(fused["qkv"]["kernel"][:, j], split[x]["kernel"])
            np.testing.assert_array_equal(fused["qkv"]["bias"][j], split[x]["bias"])


@pytest.mark.parametrize("keys, names", [
    (["vision_model.embeddings.class_embedding", "vision_tower.embeddings.cls_token"],
     ["OpenGVLab original", "transformers on-disk"]),
    (["model.vision_tower.embeddings.cls_token", "multi_modal_projector.linear_1.weight"],
     ["transformers in-memory", "transformers on-disk"]),
])
def test_mixed_key_layouts_are_rejected(keys, names):
    with pytest.raises(ValueError) as info:
        layouts.detect_layout(keys)
    msg = str(info.value)
    assert "mixes key layouts" in msg and all(n in msg for n in names)
    assert all(k in msg for k in keys)  # shows which keys belong to which layout


def test_a_stray_key_from_another_layout_is_reported_and_nothing_is_written(ckpts, tmp_path):
    src = copy_of(ckpts, "original", tmp_path)
    stray = "vision_tower.encoder.layer.0.attention.q_proj.weight"
    edit_weights(src, lambda t: t.update({stray: np.zeros((64, 64), np.float32)}))
    msg = convert_fails(src, tmp_path / "out", ValueError)
    assert "mixes key layouts" in msg and stray in msg


# ------------------------------------------------------------------------------------------------ bf16 sources
def test_bfloat16_source_tensors_are_kept_by_auto_and_upcast_exactly_by_float32(ckpts, tmp_path, reference,
                                                                               imported):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("config.json", "tokenizer_config.json"):
        shutil.copy(ckpts["hf_runtime"] / name, src)
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in reference.state_dict().items()}
    save_torch(sd, str(src / SINGLE), metadata={"format": "pt"})
    header = SafetensorsCheckpoint(src).tensors
    assert {np.dtype(i.dtype) for i in header.values()} == {np.dtype(ml_dtypes.bfloat16)}

    _, auto, _ = import_internvl3(src, dtype="auto")
    assert {x.dtype for x in flat(auto).values()} == {np.dtype(ml_dtypes.bfloat16)}
    # torch's and ml_dtypes' fp32 -> bf16 rounding agree: same values as casting the fp32 import
    assert_bitwise_equal(auto, jax.tree.map(lambda x: x.astype(ml_dtypes.bfloat16), imported[1]))

    _, up, _ = import_internvl3(src, dtype="float32")
    assert_bitwise_equal(up, jax.tree.map(lambda x: x.astype(np.float32), auto))
    # spot check against torch's own upcast, through the Linear transpose
    np.testing.assert_array_equal(up["llm"]["lm_head"]["kernel"], sd["lm_head.weight"].float().numpy().T)
