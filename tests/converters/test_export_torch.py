"""PyTorch export of LiteFrame checkpoints: parity with the JAX model, LoRA merging, round trips and errors.

Tiny random fp32 models; the student has non-identity temporal convs and two downsample stages (the second a
(2, 1, 1) temporal-only stride), clips have an odd frame count (last-frame padding) and more frames than the learned
temporal table (linear resize). Parity errors are max|torch - jax| / max|jax|, recorded with record_property.
"""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from safetensors.numpy import load_file

import liteframe_jax as lf
from configs import internvl3_tiny
from configs.common import model_from_config
from converters.export_torch import export_liteframe
from converters.liteframe_torch_layout import import_exported, text_to_hf
from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.liteframe_store import load_liteframe, save_liteframe
from liteframe_jax.models.config import DownsampleStage, StudentConfig
from liteframe_jax.models.liteframe import LiteFrameConfig, LiteFrameVLM, abstract_liteframe
from liteframe_jax.models.lora import LoRAConfig, init_lora, merge_lora
from liteframe_jax.models.visual_path import for_model

transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
SIZE = 112  # 8x8 patch grid; the student halves it once, pixel shuffle halves it again
FRAMES = 5  # odd: padded to 8 = a multiple of the temporal stride 4; the learned temporal table has 4 rows
TOL = 1e-5


def _student(**kw) -> StudentConfig:
    base = dict(image_size=(SIZE, SIZE), hidden_size=32, num_layers=3, num_heads=4, mlp_dim=64, out_dim=64,
                num_frames=4, identity_init=False,
                downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)), DownsampleStage(2, (2, 1, 1), (3, 1, 1))))
    return StudentConfig(**(base | kw))


def _init(cfg: LiteFrameConfig, with_llm: bool, seed: int = 0) -> dict:
    """Random parameters for every leaf of the model's tree (no compilation): norm scales 1 + noise, biases small
    noise, tensors N(0, 1/fan_in) (so temporal convs, downsample convs and position tables are all non-trivial)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = str(path[-1].key), leaf.shape
        if name == "scale":
            return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        if name == "bias":
            return (0.02 * rng.standard_normal(shape)).astype(np.float32)
        return (rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, nn.unbox(abstract_liteframe(cfg, with_llm)))


def _rel(torch_value, jax_value) -> float:
    a, b = np.asarray(torch_value, np.float64), np.asarray(jax_value, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _pixels(frames: int, size: int = SIZE, seed: int = 2) -> np.ndarray:
    return np.asarray(jax.random.normal(jax.random.key(seed), (frames, size, size, 3)), np.float32)


def _torch_pixels(pixels: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) -> (1, F, 3, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))[None]


@pytest.fixture(scope="module")
def teacher():
    return model_from_config(internvl3_tiny.get_config())


@pytest.fixture(scope="module")
def full(teacher, tmp_path_factory):
    """An LMA checkpoint with random non-zero LoRA adapters, its export, and both models."""
    root = tmp_path_factory.mktemp("full")
    cfg = LiteFrameConfig(_student(), teacher).validate()
    params = _init(cfg, with_llm=True)
    lc = LoRAConfig(rank=2, alpha=4)
    lora = jax.tree.map(lambda x: x + 0.05, init_lora(params["llm"], lc, jax.random.key(1)))
    save_liteframe(root / "ck", cfg, {**params, "lora": lora}, lora=lc, stage="lma")
    export_liteframe(root / "ck", root / "out", verbose=False)
    model = transformers.AutoModelForCausalLM.from_pretrained(root / "out", trust_remote_code=True).eval()
    return dict(root=root, cfg=cfg, params=params, lora=lora, lc=lc, torch=model, jax=lf.load(root / "ck"))


def _prompt(cfg: LiteFrameConfig, frames: int) -> np.ndarray:
    t = cfg.teacher
    n = for_model(cfg).num_visual_tokens(frames)
    return np.array([[3, 4, t.img_start_token_id] + [t.image_token_id] * n + [t.img_end_token_id, 5, 6]], np.int64)


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("size", [SIZE, SIZE + 56])  # native grid, and a resized spatial position table
def test_student_tokens_match_jax(full, size, record_property):
    cfg, model = full["cfg"], full["torch"]
    pixels = _pixels(FRAMES, size)
    enc = {k: v for k, v in full["jax"].params.items() if k != "llm"}
    want = jax.jit(lambda p, x: LiteFrameVLM(cfg, with_llm=False).apply(
        {"params": p}, x, method=LiteFrameVLM.student_tokens))(enc, jnp.asarray(pixels)[None])
    with torch.no_grad():
        got = model.get_student_tokens(_torch_pixels(pixels)).numpy()
    assert got.shape == want.shape == (1, 2, size // 28, size // 28, 64)
    err = _rel(got, want)
    record_property("export_student_rel_err" if size == SIZE else f"export_student_rel_err_{size}px", err)
    assert err <= TOL


def test_logits_match_jax(full, record_property):
    cfg = full["cfg"]
    ids, pixels = _prompt(cfg, FRAMES), _pixels(FRAMES)
    want = np.asarray(full["jax"].logits(ids, pixels))
    with torch.no_grad():
        got = full["torch"](input_ids=torch.from_numpy(ids), pixel_values=_torch_pixels(pixels)).logits.numpy()
    err = _rel(got, want)
    record_property("export_logits_rel_err", err)
    assert err <= TOL


def _padded_batch(cfg: LiteFrameConfig) -> tuple[np.ndarray, np.ndarray]:
    """Two prompts sharing one clip's visual tokens (group 1 in row 0, group 2 in row 1), row 1 left-padded."""
    t = cfg.teacher
    per = cfg.tokens_per_group()
    img = [t.img_start_token_id] + [t.image_token_id] * per + [t.img_end_token_id]
    rows = [[3, 4] + img + [5, 6, 7], [8] + img + [9]]
    length = max(map(len, rows))
    ids = np.array([[t.pad_token_id] * (length - len(r)) + r for r in rows], np.int64)
    mask = np.array([[0] * (length - len(r)) + [1] * len(r) for r in rows], np.int64)
    return ids, mask


def test_padded_batch_logits_match_jax(full, record_property):
    ids, mask = _padded_batch(full["cfg"])
    pixels = _pixels(FRAMES)
    want = np.asarray(full["jax"].logits(ids, pixels, attention_mask=mask))
    with torch.no_grad():
        got = full["torch"](input_ids=torch.from_numpy(ids), pixel_values=_torch_pixels(pixels),
                            attention_mask=torch.from_numpy(mask)).logits.numpy()
    real = mask.astype(bool)  # padding rows are never attended; their values are arbitrary on both sides
    err = _rel(got[real], want[real])
    record_property("export_padded_logits_rel_err", err)
    assert err <= TOL


def _torch_generate(model, ids, pixels, mask=None, **kw) -> np.ndarray:
    with torch.no_grad():
        out = model.generate(input_ids=torch.from_numpy(ids), pixel_values=_torch_pixels(pixels),
                             attention_mask=None if mask is None else torch.from_numpy(mask), do_sample=False,
                             max_new_tokens=8, **kw)
    return out[:, ids.shape[1]:].numpy()


def test_greedy_generation_matches_jax(full):
    cfg, model, jm = full["cfg"], full["torch"], full["jax"]
    pixels = _pixels(FRAMES)
    ids = _prompt(cfg, FRAMES)
    np.testing.assert_array_equal(_torch_generate(model, ids, pixels), jm.generate(ids, pixels, max_new_tokens=8))

    ids, mask = _padded_batch(cfg)
    want = jm.generate(ids, pixels, max_new_tokens=8, attention_mask=mask)
    np.testing.assert_array_equal(_torch_generate(model, ids, pixels, mask), want)
    # An end-of-sequence id hit mid-way: JAX pads after it, torch pads finished rows (and may stop early).
    eos, pad = int(want[0, 2]), cfg.teacher.pad_token_id
    want = jm.generate(ids, pixels, max_new_tokens=8, attention_mask=mask, eos_token_id=eos)
    got = _torch_generate(model, ids, pixels, mask, eos_token_id=eos, pad_token_id=pad)
    got = np.pad(got, ((0, 0), (0, 8 - got.shape[1])), constant_values=pad)
    np.testing.assert_array_equal(got, want)


def test_placeholder_count_and_frame_size_are_checked(full):
    model, cfg = full["torch"], full["cfg"]
    pixels = _torch_pixels(_pixels(FRAMES))
    with pytest.raises(ValueError, match="placeholders but pixel_values give"):
        model(input_ids=torch.from_numpy(_prompt(cfg, 1)), pixel_values=pixels)
    with pytest.raises(ValueError, match="no pixel_values"):
        model(input_ids=torch.from_numpy(_prompt(cfg, 1)))
    with pytest.raises(ValueError, match="multiple of 56"):
        model.get_visual_tokens(torch.zeros(1, 2, 3, 84, 84))
    with pytest.raises(ValueError, match="channels first"):
        model.get_visual_tokens(torch.zeros(1, 2, SIZE, SIZE, 3))


# ---------------------------------------------------------------------------------------------- contents
def test_export_writes_a_complete_directory_with_lora_merged(full):
    root, cfg = full["root"], full["cfg"]
    out = root / "out"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "configuration_liteframe.py",
                                                     "generation_config.json", "model.safetensors",
                                                     "modeling_liteframe.py"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LiteFrameForConditionalGeneration"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_liteframe.LiteFrameForConditionalGeneration"
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["do_sample"] is False and gen["pad_token_id"] == cfg.teacher.pad_token_id

    # The same model built from manually merged parameters (no adapters) exports to identical tensors.
    # (Its checkpoint also carries tokenizer files, which the export copies; the teacher's generation config is
    # replaced by ours.)
    merged = {**full["params"], "llm": merge_lora(full["params"]["llm"], full["lora"], full["lc"])}
    tok = root / "tokenizer"
    tok.mkdir()
    (tok / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    (tok / "generation_config.json").write_text('{"do_sample": true}')
    save_liteframe(root / "merged_ck", cfg, merged, tokenizer_dir=tok)
    export_liteframe(root / "merged_ck", root / "merged_out", verbose=False)
    assert json.loads((root / "merged_out" / "tokenizer_config.json").read_text()) == {"model_max_length": 64}
    assert json.loads((root / "merged_out" / "generation_config.json").read_text())["do_sample"] is False
    got, want = load_file(out / "model.safetensors"), load_file(root / "merged_out" / "model.safetensors")
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    base = np.asarray(full["params"]["llm"]["layers_0"]["attn"]["v"]["kernel"]).T
    assert np.abs(got["language_model.model.layers.0.self_attn.v_proj.weight"] - base).max() > 1e-3  # LoRA is live


def test_round_trip_is_exact(full):
    cfg, params, with_llm = import_exported(full["root"] / "out")
    want_cfg, want, _ = load_liteframe(full["root"] / "ck")
    assert with_llm and cfg == want_cfg == full["cfg"]
    assert jax.tree.structure(params) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, want))


def test_bfloat16_export_loads_in_bfloat16(full, tmp_path):
    export_liteframe(full["root"] / "ck", tmp_path / "bf16", dtype="bfloat16", verbose=False)
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "bf16", trust_remote_code=True)
    assert model.dtype == torch.bfloat16
    ids, pixels = _prompt(full["cfg"], FRAMES), _pixels(FRAMES)
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids), pixel_values=_torch_pixels(pixels)).logits.float().numpy()
    assert _rel(logits, np.asarray(full["jax"].logits(ids, pixels))) < 0.1


# ---------------------------------------------------------------------------------------------- encoder only
ENCODERS = {
    "pre_shuffle-v1": dict(location="pre_shuffle", ps_version="v1", student={}),
    "post_shuffle-v2": dict(location="post_shuffle", ps_version="v2",
                            student=dict(out_dim=256, temporal_pos="sinusoidal", temporal_conv_position="after_mlp")),
    "post_projector": dict(location="post_projector", ps_version="v2", student=dict(out_dim=96, temporal_pos="none")),
}


@pytest.mark.parametrize("case", list(ENCODERS))
def test_encoder_only_export_matches_encode_frames(teacher, tmp_path, case, record_property):
    spec = ENCODERS[case]
    cfg = LiteFrameConfig(_student(**spec["student"]), teacher.replace(ps_version=spec["ps_version"]),
                          spec["location"]).validate()
    save_liteframe(tmp_path / "ck", cfg, _init(cfg, with_llm=False, seed=3), stage="ctd")
    export_liteframe(tmp_path / "ck", tmp_path / "out", verbose=False)
    assert not (tmp_path / "out" / "generation_config.json").exists()
    model = transformers.AutoModel.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert type(model).__name__ == "LiteFrameStudentModel"
    pixels = _pixels(FRAMES)
    want = np.asarray(lf.load(tmp_path / "ck").encode_frames(pixels))
    with torch.no_grad():
        got = model(pixel_values=_torch_pixels(pixels)).visual_tokens[0].numpy()
    assert got.shape == want.shape == (for_model(cfg).num_visual_tokens(FRAMES), teacher.text.hidden_size)
    err = _rel(got, want)
    record_property(f"export_encoder_rel_err_{case}", err)
    assert err <= TOL
    round_cfg, params, with_llm = import_exported(tmp_path / "out")
    assert round_cfg == cfg and not with_llm
    _, stored, _ = load_liteframe(tmp_path / "ck")
    jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, stored))


def test_resize_linear_matches_jax_image_resize():
    from converters.torch_modeling.modeling_liteframe import resize_linear

    table = np.asarray(jax.random.normal(jax.random.key(0), (4, 6, 5)), np.float32)
    for size in (1, 3, 7, 8, 13):
        want = jax.image.resize(table, (size, 6, 5), "linear", antialias=False)
        got = resize_linear(torch.tensor(table), size, 0).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"size {size}")
    want = jax.image.resize(table, (4, 9, 5), "linear", antialias=False)
    np.testing.assert_allclose(resize_linear(torch.tensor(table), 9, 1).numpy(), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------- errors
def test_non_liteframe_checkpoints_are_refused_and_nothing_is_written(teacher, tmp_path):
    store.save_checkpoint(tmp_path / "teacher", "internvl", teacher.to_dict(), {"x": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="'internvl' checkpoint, not a LiteFrame model"):
        export_liteframe(tmp_path / "teacher", tmp_path / "out", verbose=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a LiteFrame-JAX checkpoint"):
        export_liteframe(tmp_path / "empty", tmp_path / "out", verbose=False)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        export_liteframe(tmp_path / "missing", tmp_path / "out", verbose=False)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial directory left behind


def test_existing_destination_needs_overwrite(full, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="already exists"):
        export_liteframe(full["root"] / "ck", tmp_path / "out", verbose=False)
    assert (tmp_path / "out" / "keep.txt").exists()
    export_liteframe(full["root"] / "ck", tmp_path / "out", overwrite=True, verbose=False)
    assert not (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "model.safetensors").exists()


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "converters.export_torch", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_help_and_errors(tmp_path):
    r = _cli("--help")
    assert r.returncode == 0, r.stderr
    for flag in ("--checkpoint", "--dst", "--dtype", "--overwrite"):
        assert flag in r.stdout + r.stderr
    (tmp_path / "empty").mkdir()
    r = _cli("--checkpoint", str(tmp_path / "empty"), "--dst", str(tmp_path / "out"))
    assert r.returncode == 1 and r.stderr.strip().startswith("error:") and "not a LiteFrame-JAX checkpoint" in r.stderr
    assert not (tmp_path / "out").exists()


def _family_teacher(llm: str):
    """The tiny teacher with a Qwen3 LLM, or an InternLM3 LLM with its biases on (q/k/v/o and the MLP)."""
    t = model_from_config(internvl3_tiny.get_config(f"llm={llm}"))
    return t.replace(text=dataclasses.replace(t.text, qkv_bias=True, o_mlp_bias=True)) if llm == "internlm3" else t


@pytest.fixture(scope="module", params=["qwen3", "internlm3"])
def family(request, tmp_path_factory):
    """A LiteFrame model whose LLM is InternVL3.5's Qwen3 or InternVL3-9B's InternLM3, exported and reloaded."""
    root = tmp_path_factory.mktemp(f"family-{request.param}")
    cfg = LiteFrameConfig(_student(), _family_teacher(request.param)).validate()
    save_liteframe(root / "ck", cfg, _init(cfg, with_llm=True, seed=3), stage="lma")
    export_liteframe(root / "ck", root / "out", verbose=False)
    model = transformers.AutoModelForCausalLM.from_pretrained(root / "out", trust_remote_code=True).eval()
    return dict(name=request.param, root=root, cfg=cfg, torch=model, jax=lf.load(root / "ck"))


def test_qwen3_and_internlm3_llms_export_to_transformers_own_classes(family, record_property):
    """The exported model runs transformers' Qwen3ForCausalLM / LlamaForCausalLM (InternLM3) and matches JAX:
    left-padded logits (max rel err <= 1e-5) and greedy tokens."""
    cfg, model, jm = family["cfg"], family["torch"], family["jax"]
    assert type(model.language_model).__name__ == {"qwen3": "Qwen3ForCausalLM",
                                                   "internlm3": "LlamaForCausalLM"}[family["name"]]
    text_config = json.loads((family["root"] / "out" / "config.json").read_text())["text_config"]
    assert text_config["model_type"] == family["name"]
    ids, mask = _padded_batch(cfg)
    pixels = _pixels(FRAMES)
    want = np.asarray(jm.logits(ids, pixels, attention_mask=mask))
    with torch.no_grad():
        got = model(input_ids=torch.from_numpy(ids), pixel_values=_torch_pixels(pixels),
                    attention_mask=torch.from_numpy(mask)).logits.numpy()
    real = mask.astype(bool)
    err = _rel(got[real], want[real])
    record_property(f"export_{family['name']}_padded_logits_rel_err", err)
    assert err <= TOL
    want = jm.generate(ids, pixels, max_new_tokens=8, attention_mask=mask)
    np.testing.assert_array_equal(_torch_generate(model, ids, pixels, mask), want)


def test_qwen3_and_internlm3_exports_round_trip_exactly(family):
    cfg, params, with_llm = import_exported(family["root"] / "out")
    want_cfg, want, _ = load_liteframe(family["root"] / "ck")
    assert with_llm and cfg == want_cfg == family["cfg"]
    jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, want))


def test_text_configs_map_to_their_transformers_family():
    for llm in ("qwen2", "qwen3", "internlm3"):
        assert text_to_hf(model_from_config(internvl3_tiny.get_config(f"llm={llm}")).text)["model_type"] == llm
    text = model_from_config(internvl3_tiny.get_config("llm=qwen3")).text
    with pytest.raises(ValueError, match="the LLM cannot be exported: a text config with qk_norm=True, qkv_bias=True"):
        text_to_hf(dataclasses.replace(text, qkv_bias=True))
