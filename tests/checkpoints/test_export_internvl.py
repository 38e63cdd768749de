"""Exporting our InternVL checkpoints (InternVL3 / Qwen2, InternVL3.5 / Qwen3 and InternVL3-9B / InternLM3 LLMs)
to the PyTorch layouts:
exact round trips, parity in transformers, refusals.

A tiny random transformers InternVL3 (testing/tiny_internvl.py) is written once per module in both layouts and
imported; each import is exported to both layouts (the hf-sourced ones in several shards). Parity errors are
max|torch - jax| / max|jax| over the real (non-padding) positions, recorded with record_property.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest
import torch

import liteframe_jax as lf
from liteframe_jax.checkpoints import export_internvl, store
from liteframe_jax.checkpoints.export_internvl import ExportError, export_internvl3, export_params
from liteframe_jax.checkpoints.import_internvl import convert_internvl3, import_internvl3
from liteframe_jax.checkpoints.safetensors_stream import SafetensorsCheckpoint
from liteframe_jax.compression.wap import WAPConfig
from testing.tiny_internvl import (TinySpec, build_reference, make_inputs, original_to_hf_runtime,
                                   reference_outputs, write_checkpoint)

transformers = pytest.importorskip("transformers")

LAYOUTS = ("original", "hf")
PAIRS = [(a, b) for a in LAYOUTS for b in LAYOUTS]
SHARD_BYTES = 200_000  # the tiny model (1.5 MB fp32) in several files
TOL = 1e-5
NEW_TOKENS = 4


# ------------------------------------------------------------------------------------------------ fixtures
SPECS = {"qwen2": TinySpec(),  # InternVL3
         # InternVL3.5: Qwen3 LLM (q/k norm, no q/k/v bias), head_dim 24 != 64 / 4
         "qwen3": TinySpec(text_model_type="qwen3", explicit_head_dim=24, text_hidden=64, text_heads=4, text_kv_heads=2,
                           seed=3),
         # InternVL3-9B: InternLM3 LLM, here with biases on q/k/v/o and the MLP, dynamic NTK RoPE
         "internlm3": TinySpec(text_model_type="internlm3", internlm3_bias=True, explicit_head_dim=16,
                               text_hidden=64, text_heads=4, text_kv_heads=2, rope_dynamic_factor=6.0,
                               rms_norm_eps=1e-5, seed=5)}


@pytest.fixture(scope="module", params=list(SPECS))
def spec(request):
    return SPECS[request.param]


@pytest.fixture(scope="module")
def reference(spec):
    return build_reference(spec)


@pytest.fixture(scope="module")
def root(tmp_path_factory, spec):
    return tmp_path_factory.mktemp(f"export-{spec.text_model_type}")  # one folder per spec


@pytest.fixture(scope="module")
def sources(reference, spec, root):
    """The torch model written in each layout: layout -> directory."""
    return {layout: write_checkpoint(reference, spec, root / f"src_{layout}", layout) for layout in LAYOUTS}


@pytest.fixture(scope="module")
def imported(sources):
    """layout -> (config, params) imported from that layout's torch checkpoint."""
    return {layout: import_internvl3(sources[layout])[:2] for layout in LAYOUTS}


@pytest.fixture(scope="module")
def ours(sources, root):
    """layout -> our checkpoint converted from that layout's torch checkpoint."""
    return {layout: convert_internvl3(sources[layout], root / f"ours_{layout}") for layout in LAYOUTS}


@pytest.fixture(scope="module")
def exports(ours, root):
    """(source layout, export layout) -> exported directory."""
    return {(a, b): export_internvl3(ours[a], root / f"out_{a}_{b}", b,
                                     max_shard_bytes=SHARD_BYTES if a == "hf" else export_internvl.DEFAULT_SHARD_BYTES)
            for a, b in PAIRS}


# ------------------------------------------------------------------------------------------------ helpers
def tensors(directory: Path) -> dict[str, np.ndarray]:
    weights = SafetensorsCheckpoint(directory)
    return {k: weights.read(k) for k in weights.tensors}


def flat(params) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k].dtype, a[k].shape) == (b[k].dtype, b[k].shape), k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs"


def with_qkv(cfg, layout: str):
    return cfg.replace(vision=dataclasses.replace(cfg.vision, qkv_layout=export_internvl.QKV_LAYOUT[layout]))


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def torch_vs_jax(torch_model, jax_model, spec) -> tuple[float, bool]:
    """(logits max rel err at real positions, identical greedy tokens) on a left-padded 2-row batch."""
    inputs = make_inputs(spec, num_frames=2, batch_prompts=[5, 7], seed=3)
    ref = reference_outputs(torch_model, spec, inputs.pixel_values, inputs.input_ids, inputs.attention_mask,
                            max_new_tokens=NEW_TOKENS)
    ids, mask = inputs.input_ids.numpy(), inputs.attention_mask.numpy()
    pixels = inputs.pixel_values.numpy().transpose(0, 2, 3, 1)
    logits = np.asarray(jax_model.logits(ids, pixels, mask))
    real = mask.astype(bool)
    tokens = jax_model.generate(ids, pixels, max_new_tokens=NEW_TOKENS, attention_mask=mask, eos_token_id=None)
    return rel_err(logits[real], ref["logits"][real]), bool((tokens == ref["generated"]).all())


def nothing_written(dst: Path, listing_before: list[str]) -> bool:
    return (not dst.exists() and not list(dst.parent.glob(f".{dst.name}.*"))
            and sorted(os.listdir(dst.parent)) == listing_before)


def export_fails(checkpoint: Path, dst: Path, error_type, **kwargs) -> str:
    before = sorted(os.listdir(dst.parent))
    with pytest.raises(error_type) as info:
        export_internvl3(checkpoint, dst, kwargs.pop("layout", "hf"), **kwargs)
    assert isinstance(info.value, (ValueError, FileNotFoundError, FileExistsError))  # the CLI's one-line errors
    assert nothing_written(dst, before)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("src, dst", PAIRS)
def test_round_trip_reimports_bit_identical_params_and_the_same_config(exports, imported, src, dst):
    cfg, params, layout = import_internvl3(exports[src, dst])
    assert layout == dst
    assert_bitwise_equal(flat(params), flat(imported[dst][1]))
    assert cfg == with_qkv(imported[src][0], dst)


@pytest.mark.parametrize("src, dst", PAIRS)
def test_exported_tensors_equal_the_torch_state_dict_of_that_layout(exports, sources, src, dst):
    assert_bitwise_equal(tensors(exports[src, dst]), tensors(sources[dst]))


def test_exported_directories_hold_config_weights_and_tokenizer_files_only(exports, sources):
    single = exports["original", "hf"]
    assert sorted(os.listdir(single)) == ["config.json", "model.safetensors", "tokenizer_config.json"]
    assert (single / "tokenizer_config.json").read_text() == (sources["original"] / "tokenizer_config.json").read_text()
    sharded = exports["hf", "original"]
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    assert index["metadata"]["total_size"] == sum(x.nbytes for x in tensors(sharded).values())
    assert all((sharded / s).stat().st_size < 2 * SHARD_BYTES for s in shards)
    original = json.loads((exports["hf", "original"] / "config.json").read_text())
    assert original["architectures"] == ["InternVLChatModel"] and {"llm_config", "vision_config"} <= set(original)
    hf = json.loads((exports["original", "hf"] / "config.json").read_text())
    assert hf["architectures"] == ["InternVLForConditionalGeneration"] and hf["dtype"] == "float32"


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("src", LAYOUTS)
def test_hf_export_loads_in_transformers_and_matches_jax(exports, reference, spec, src, record_property):
    out = exports[src, "hf"]
    model = transformers.InternVLForConditionalGeneration.from_pretrained(out, attn_implementation="eager").eval()
    want = reference.state_dict()
    got = model.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    err, same_tokens = torch_vs_jax(model, lf.load(out), spec)
    record_property(f"export_internvl_{src}_to_hf_logits_rel_err", err)
    assert err <= TOL and same_tokens


@pytest.mark.parametrize("src", LAYOUTS)
def test_original_export_runs_in_transformers_after_key_conversion(exports, spec, src, record_property):
    out = exports[src, "original"]
    state = {k: torch.from_numpy(x) for k, x in tensors(out).items()}
    model = build_reference(dataclasses.replace(spec, seed=spec.seed + 7))  # other weights, all replaced below
    model.load_state_dict(original_to_hf_runtime(state), strict=True)
    err, same_tokens = torch_vs_jax(model, lf.load(out), spec)
    record_property(f"export_internvl_{src}_to_original_logits_rel_err", err)
    assert err <= TOL and same_tokens


# ------------------------------------------------------------------------------------------------ dtypes, API
def test_bfloat16_export_rounds_like_a_bfloat16_import(ours, imported, tmp_path):
    out = export_internvl3(ours["hf"], tmp_path / "bf16", "hf", dtype="bfloat16")
    assert {np.dtype(i.dtype) for i in SafetensorsCheckpoint(out).tensors.values()} == {np.dtype(ml_dtypes.bfloat16)}
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    _, params, _ = import_internvl3(out)
    assert_bitwise_equal(flat(params), flat(jax.tree.map(lambda x: x.astype(ml_dtypes.bfloat16), imported["hf"][1])))


def test_auto_keeps_a_bfloat16_checkpoint_and_float32_upcasts_it_exactly(sources, tmp_path):
    ck = convert_internvl3(sources["original"], tmp_path / "ck", dtype="bfloat16")
    auto = tensors(export_internvl3(ck, tmp_path / "auto", "original"))
    assert {x.dtype for x in auto.values()} == {np.dtype(ml_dtypes.bfloat16)}
    up = tensors(export_internvl3(ck, tmp_path / "up", "original", dtype="float32"))
    assert_bitwise_equal(up, {k: x.astype(np.float32) for k, x in auto.items()})


def test_export_params_from_memory_writes_the_same_directory(imported, sources, exports, tmp_path):
    cfg, params = imported["original"]
    out = export_params(cfg, params, tmp_path / "out", "hf", tokenizer_dir=sources["original"])
    assert_bitwise_equal(tensors(out), tensors(exports["original", "hf"]))
    assert (out / "config.json").read_text() == (exports["original", "hf"] / "config.json").read_text()


def test_layout_tables_read_backwards_give_every_key_once():
    from liteframe_jax.checkpoints import internvl_layouts as layouts
    rule, key = layouts.find_torch_key(layouts.HF_RULES, "vision/layers_11/attn/q/kernel")
    assert key == "vision_tower.encoder.layer.11.attention.q_proj.weight" and rule.transform == "linear"
    assert layouts.find_torch_key(layouts.ORIGINAL_RULES, "projector/fc2/bias")[1] == "mlp1.3.bias"
    with pytest.raises(ValueError, match="no rule"):
        layouts.find_torch_key(layouts.ORIGINAL_RULES, "vision/layers_0/attn/q/kernel")


@pytest.mark.parametrize("damage, expect", [
    (lambda rules: tuple(r for r in rules if "lm_head" not in r.pattern),
     "layout 'hf': no rule of the key table map(s) to the parameter 'llm/lm_head/kernel'"),
    (lambda rules: rules + tuple(r for r in rules if "lm_head" in r.pattern),
     "2 rules (language_model.lm_head.weight, language_model.lm_head.weight)")])
def test_a_parameter_without_exactly_one_rule_is_an_error(imported, tmp_path, monkeypatch, damage, expect):
    from liteframe_jax.checkpoints import internvl_layouts as layouts
    monkeypatch.setitem(layouts.RULES, "hf", damage(layouts.HF_RULES))
    cfg, params = imported["hf"]
    with pytest.raises(ExportError) as info:
        export_params(cfg, params, tmp_path / "out", "hf")
    assert expect in str(info.value)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------ refusals
def test_post_hoc_wap_checkpoint_is_refused(ours, tmp_path):
    ck = Path(shutil.copytree(ours["hf"], tmp_path / "ck"))
    meta = json.loads((ck / store.CONFIG_FILE).read_text())
    (ck / store.CONFIG_FILE).write_text(json.dumps(meta | {"post_hoc_wap": WAPConfig().to_dict()}))
    msg = export_fails(ck, tmp_path / "out", ExportError)
    assert "post_hoc_wap" in msg and "no WAP" in msg


def test_student_checkpoint_is_refused_with_a_pointer_to_export_torch(tmp_path):
    store.save_checkpoint(tmp_path / "student", "liteframe", {}, {"student": {"x": np.zeros(2, np.float32)}})
    msg = export_fails(tmp_path / "student", tmp_path / "out", ExportError)
    assert "LiteFrame (student)" in msg and "converters/export_torch.py" in msg


def test_a_pytorch_directory_is_not_an_input(sources, tmp_path):
    msg = export_fails(sources["hf"], tmp_path / "out", FileNotFoundError)
    assert "not a LiteFrame-JAX checkpoint" in msg and "import_internvl3" in msg


@pytest.mark.parametrize("kwargs, expect", [({"layout": "torch"}, "layout='torch' must be one of"),
                                            ({"dtype": "float16"}, "dtype='float16' must be one of")])
def test_bad_layout_or_dtype_is_refused(ours, tmp_path, kwargs, expect):
    assert expect in export_fails(ours["hf"], tmp_path / "out", ExportError, **kwargs)


def test_existing_destination_is_refused_then_replaced_with_overwrite(ours, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_internvl3(ours["hf"], dst, "hf")
    assert os.listdir(dst) == ["keep.txt"] and sorted(os.listdir(tmp_path)) == ["out"]
    export_internvl3(ours["hf"], dst, "hf", overwrite=True)
    assert not (dst / "keep.txt").exists() and (dst / "model.safetensors").is_file()
    assert sorted(os.listdir(tmp_path)) == ["out"]
    (tmp_path / "empty").mkdir()  # an empty folder is filled without asking
    assert (export_internvl3(ours["hf"], tmp_path / "empty", "original") / "config.json").is_file()


def test_a_config_the_layout_cannot_express_is_refused(imported, tmp_path):
    cfg, params = imported["hf"]
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ExportError) as info:
        export_params(cfg.replace(ps_version="v1"), params, tmp_path / "out", "hf")
    msg = str(info.value)
    assert "'hf' layout cannot express" in msg and "ps_version: 'v1' here, 'v2' as exported" in msg
    with pytest.raises(ExportError, match="<img> and </img> ids are read from the tokenizer files only"):
        export_params(cfg, params, tmp_path / "out", "hf")  # no tokenizer_dir: the <img> ids cannot be written
    assert nothing_written(tmp_path / "out", before)


def test_params_that_do_not_match_the_config_are_refused(imported, tmp_path):
    cfg, params = imported["hf"]
    llm = {**params["llm"], "extra": np.zeros(3, np.float32)}
    llm.pop("final_norm")
    with pytest.raises(ExportError) as info:
        export_params(cfg, {**params, "llm": llm}, tmp_path / "out", "hf")
    msg = str(info.value)
    assert "missing (1): llm/final_norm/scale" in msg and "llm/extra" in msg
    assert not (tmp_path / "out").exists()


def test_a_failure_while_writing_leaves_nothing(ours, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")
    monkeypatch.setattr(export_internvl, "write_safetensors", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_internvl3(ours["hf"], tmp_path / "out", "hf")
    assert os.listdir(tmp_path) == []


def test_code_in_the_checkpoint_folder_is_neither_run_nor_copied(ours, tmp_path):
    ck = Path(shutil.copytree(ours["original"], tmp_path / "ck"))
    marker = tmp_path / "ran"
    (ck / "modeling_internvl_chat.py").write_text(f"open({str(marker)!r}, 'w')\n")
    out = export_internvl3(ck, tmp_path / "out", "original")
    assert "modeling_internvl_chat.py" not in os.listdir(out) and not marker.exists()
