"""Initializing the student's spatial part from tiny random transformers ViT / CLIP checkpoints.

The reference for feature parity is the torch ViT itself with its CLS token masked out of attention (the student
has no CLS): its last hidden state before the final LayerNorm, patch tokens only.
"""

from __future__ import annotations

import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import (CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel, ViTConfig,
                          ViTForImageClassification, ViTModel)

from liteframe_jax.checkpoints.safetensors_stream import CheckpointFormatError
from liteframe_jax.checkpoints.vit_init import init_student_from_vit, pi_resize_patch_kernel
from liteframe_jax.models.config import DownsampleStage, StudentConfig
from liteframe_jax.models.student import LiteFrameStudent, abstract_student, init_student

D, HEADS, MLP, LAYERS, IMAGE, PATCH, EPS = 32, 4, 64, 2, 56, 14, 1e-6
TOL = 1e-5


def student_cfg(**changes) -> StudentConfig:
    base = dict(image_size=(IMAGE, IMAGE), patch_size=PATCH, hidden_size=D, num_layers=LAYERS, num_heads=HEADS,
                mlp_dim=MLP, layer_norm_eps=EPS, downsample=(), temporal_pos="none", identity_init=True,
                temporal_conv=True, num_frames=2, out_dim=16)
    return StudentConfig(**{**base, **changes}).validate()


def random_params(cfg: StudentConfig, seed: int = 0) -> dict:
    """Unboxed student params with random values (shapes from `abstract_student`: no XLA compile)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape).astype(s.dtype)),
                        nn.unbox(abstract_student(cfg)))


def vit_config(**changes) -> ViTConfig:
    base = dict(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=MLP,
                image_size=IMAGE, patch_size=PATCH, hidden_act="gelu", layer_norm_eps=EPS)
    return ViTConfig(**{**base, **changes})


def save(model, directory) -> str:
    model.save_pretrained(directory)
    return str(directory)


@functools.cache
def capture_last_block(cfg: StudentConfig):
    last = f"layers_{cfg.num_layers - 1}"
    return jax.jit(functools.partial(LiteFrameStudent(cfg).apply, mutable=["intermediates"],
                                     capture_intermediates=lambda mdl, _: mdl.name == last))


def block_features(cfg: StudentConfig, params: dict, frames: np.ndarray) -> np.ndarray:
    """Student token features after the last block (the input of head_norm without downsampling).
    frames (T, H, W, 3) -> (T, N, D)."""
    _, state = capture_last_block(cfg)({"params": params}, frames[None])
    return np.asarray(state["intermediates"][f"layers_{cfg.num_layers - 1}"]["__call__"][0])[0]


def vit_features(model: ViTModel, frames: np.ndarray) -> np.ndarray:
    """Torch ViT with its CLS token masked out of attention: last hidden state before the final LayerNorm
    without the CLS row. frames (T, H, W, 3) -> (T, N, D)."""
    px = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
    n = (px.shape[2] // PATCH) * (px.shape[3] // PATCH)
    mask = torch.ones(px.shape[0], 1 + n, dtype=torch.long)
    mask[:, 0] = 0
    with torch.no_grad():
        out = model(px, attention_mask=mask, output_hidden_states=True, interpolate_pos_encoding=True)
    return out.hidden_states[-1][:, 1:].numpy()


def frames(size: int, t: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((t, size, size, 3)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return ViTModel(vit_config()).eval()


@pytest.fixture(scope="module")
def vit_dir(vit, tmp_path_factory):
    return save(vit, tmp_path_factory.mktemp("vit"))


@pytest.fixture(scope="module")
def fresh():
    """Real init of `student_cfg()` (identity temporal convs), shared: each new shape costs XLA compiles."""
    return nn.unbox(init_student(student_cfg()))


@pytest.fixture(scope="module")
def vit_state(vit_dir):
    return load_file(f"{vit_dir}/model.safetensors")


# ------------------------------------------------------------------------------------------------ ViT layout
def test_vit_features_match_source(vit, vit_dir, fresh, record_property):
    cfg = student_cfg()
    params, report = init_student_from_vit(fresh, cfg, vit_dir)
    x = frames(IMAGE)
    ours, ref = block_features(cfg, params, x), vit_features(vit, x)
    err = float(np.abs(ours - ref).max())
    record_property("vit_init student vs ViT (no CLS) features", err / float(np.abs(ref).max()))
    print(f"max abs error student vs ViT features: {err:.3e}")
    assert ours.shape == ref.shape == (2, 16, D)
    assert err < TOL

    assert report["layout"] == "vit" and report["source_layers"] == LAYERS
    assert report["source_grid"] == (4, 4) and report["source_patch_size"] == (PATCH, PATCH)
    assert set(report["ignored_source_keys"]) == {"embeddings.cls_token", "layernorm.weight", "layernorm.bias",
                                                  "pooler.dense.weight", "pooler.dense.bias"}
    assert {"patch_embed/kernel", "patch_embed/bias", "pos_spatial", "layers_1/fc2/kernel",
            "layers_0/norm1/scale"} <= set(report["loaded"])
    assert all(p.startswith("head") or "/temporal/" in p for p in report["kept_init"])
    assert len(report["loaded"]) + len(report["kept_init"]) == len(jax.tree.leaves(params))
    assert [w for w in report["warnings"] if "cls_token" in w] and len(report["warnings"]) == 1


def test_tensor_mapping(vit_dir, vit_state, fresh):
    cfg = student_cfg()
    params, _ = init_student_from_vit(fresh, cfg, vit_dir)
    sd = vit_state
    np.testing.assert_array_equal(params["patch_embed"]["kernel"],
                                  sd["embeddings.patch_embeddings.projection.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(params["layers_1"]["q"]["kernel"],
                                  sd["encoder.layer.1.attention.attention.query.weight"].T)
    np.testing.assert_array_equal(params["layers_0"]["fc2"]["bias"], sd["encoder.layer.0.output.dense.bias"])
    np.testing.assert_array_equal(params["layers_0"]["norm2"]["scale"],
                                  sd["encoder.layer.0.layernorm_after.weight"])
    np.testing.assert_array_equal(params["pos_spatial"],
                                  sd["embeddings.position_embeddings"][0, 1:].reshape(4, 4, D))


def test_position_table_resized_to_student_grid(vit, vit_dir, vit_state, fresh):
    cfg = student_cfg(image_size=(84, 84))  # grid 6x6 vs the source's 4x4
    # Only pos_spatial's shape depends on the image size; reusing the other initial values saves compiles.
    init = {**fresh, "pos_spatial": jnp.zeros((6, 6, D))}
    params, report = init_student_from_vit(init, cfg, vit_dir)
    table = torch.from_numpy(vit_state["embeddings.position_embeddings"][0, 1:].reshape(1, 4, 4, D))
    want = torch.nn.functional.interpolate(table.permute(0, 3, 1, 2), size=(6, 6), mode="bicubic",
                                           align_corners=False).permute(0, 2, 3, 1)[0].numpy()
    assert params["pos_spatial"].shape == (6, 6, D)
    np.testing.assert_allclose(params["pos_spatial"], want, rtol=0, atol=1e-6)
    assert any("resized from 4x4 to 6x6" in w for w in report["warnings"])
    x = frames(84, t=1)  # the source run at 84 px interpolates its table the same way
    np.testing.assert_allclose(block_features(cfg, params, x), vit_features(vit, x), rtol=0, atol=TOL)


def test_non_spatial_params_unchanged(vit_dir):
    """Temporal convs, downsampling, temporal positions, head and extra blocks keep their values."""
    cfg = student_cfg(num_layers=3, identity_init=False, temporal_pos="learned",
                      downsample=(DownsampleStage(1, (1, 2, 2), (1, 3, 3)),))
    before = random_params(cfg, seed=3)
    after, report = init_student_from_vit(before, cfg, vit_dir)
    flat_before = dict(jax.tree_util.tree_flatten_with_path(before)[0])
    flat_after = dict(jax.tree_util.tree_flatten_with_path(after)[0])
    assert flat_before.keys() == flat_after.keys()
    kept = {"/".join(k.key for k in path) for path in flat_before} - set(report["loaded"])
    assert kept == set(report["kept_init"])
    assert any(p.startswith("layers_2/") for p in kept) and not any(p.startswith("layers_2/") for p in
                                                                       report["loaded"])
    for prefix in ("downsample_1/", "pos_temporal", "head/", "head_norm/", "layers_0/temporal/", "layers_2/"):
        assert any(p.startswith(prefix) for p in kept), prefix
    for path, leaf in flat_before.items():
        name = "/".join(k.key for k in path)
        if name in kept:
            np.testing.assert_array_equal(flat_after[path], leaf, err_msg=name)
        else:
            assert flat_after[path].dtype == leaf.dtype and flat_after[path].shape == leaf.shape
    assert any("layers_2..layers_2 keep their init" in w for w in report["warnings"])


def test_image_classification_checkpoint_with_prefix(tmp_path):
    torch.manual_seed(1)
    model = ViTForImageClassification(vit_config(num_labels=3)).eval()
    path = save(model, tmp_path)
    cfg = student_cfg()
    params, report = init_student_from_vit(random_params(cfg), cfg, path)
    sd = load_file(f"{path}/model.safetensors")
    assert report["layout"] == "vit" and "classifier.weight" in report["ignored_source_keys"]
    np.testing.assert_array_equal(params["layers_0"]["k"]["kernel"],
                                  sd["vit.encoder.layer.0.attention.attention.key.weight"].T)


# ------------------------------------------------------------------------------------------------ CLIP layout
def test_clip_layout_loads_with_warnings(tmp_path):
    torch.manual_seed(2)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                            intermediate_size=MLP, image_size=IMAGE, patch_size=PATCH)).eval()
    path = save(clip, tmp_path / "clip")
    cfg = student_cfg()
    params, report = init_student_from_vit(random_params(cfg), cfg, path)
    assert report["layout"] == "clip" and report["source_layers"] == LAYERS
    text = "\n".join(report["warnings"])
    for needle in ("pre_layrnorm", "'quick_gelu'", "layer_norm_eps=1e-05", "class_embedding",
                   "patch_embed/bias set to zeros"):
        assert needle in text, needle
    sd = load_file(f"{path}/model.safetensors")
    prefix = "vision_model." if "vision_model.pre_layrnorm.weight" in sd else ""
    assert {prefix + "pre_layrnorm.weight", prefix + "pre_layrnorm.bias"} <= set(report["ignored_source_keys"])
    np.testing.assert_array_equal(params["patch_embed"]["bias"], np.zeros(D, np.float32))
    np.testing.assert_array_equal(params["layers_1"]["out"]["kernel"],
                                  sd[prefix + "encoder.layers.1.self_attn.out_proj.weight"].T)
    np.testing.assert_array_equal(params["layers_0"]["norm1"]["bias"],
                                  sd[prefix + "encoder.layers.0.layer_norm1.bias"])
    np.testing.assert_array_equal(params["pos_spatial"],
                                  sd[prefix + "embeddings.position_embedding.weight"][1:].reshape(4, 4, D))

    # The same tower inside a CLIPModel (`vision_model.` prefix, text tower beside it), as one file, no config.
    single = tmp_path / "clip_model.safetensors"
    renamed = {("vision_model." + k[len(prefix):]): v for k, v in sd.items()}
    save_file({**renamed, "text_model.embeddings.token_embedding.weight": np.zeros((5, D), np.float32)}, single)
    again, report2 = init_student_from_vit(random_params(cfg), cfg, single)
    assert "text_model.embeddings.token_embedding.weight" in report2["ignored_source_keys"]
    assert any("no config.json" in w for w in report2["warnings"])
    jax.tree.map(np.testing.assert_array_equal, again, params)


def test_clip_layout_without_cls_matches_siglip(fresh, tmp_path, record_property):
    """SigLIP: CLIP tensor names, no class token, no pre-norm. With exact GELU its features are reproduced."""
    torch.manual_seed(4)
    siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                                  intermediate_size=MLP, image_size=IMAGE, patch_size=PATCH,
                                                  hidden_act="gelu", layer_norm_eps=EPS)).eval()
    cfg = student_cfg()
    params, report = init_student_from_vit(fresh, cfg, save(siglip, tmp_path))
    assert report["layout"] == "clip" and report["warnings"] == [] and report["source_grid"] == (4, 4)
    assert any(k.endswith("post_layernorm.weight") for k in report["ignored_source_keys"])
    x = frames(IMAGE, seed=1)
    with torch.no_grad():
        ref = siglip(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), output_hidden_states=True).hidden_states[-1]
    err = float(np.abs(block_features(cfg, params, x) - ref.numpy()).max())
    record_property("vit_init student vs SigLIP features", err / float(ref.abs().max()))
    assert err < TOL


# ------------------------------------------------------------------------------------------------ mismatches
@pytest.mark.parametrize("changes, tensor, ours, shapes", [
    (dict(hidden_size=48), "embeddings.patch_embeddings.projection.weight", "patch_embed/kernel",
     ("(14, 14, 3, 32)", "(14, 14, 3, 48)")),
    (dict(mlp_dim=128), "encoder.layer.0.intermediate.dense.weight", "layers_0/fc1/kernel",
     ("(64, 32)", "(32, 64)", "(32, 128)")),
])
def test_shape_mismatch_names_tensor_and_shapes(vit_dir, changes, tensor, ours, shapes):
    cfg = student_cfg(**changes)
    with pytest.raises(ValueError) as err:
        init_student_from_vit(random_params(cfg), cfg, vit_dir)
    msg = str(err.value)
    assert repr(tensor) in msg and repr(ours) in msg and all(s in msg for s in shapes), msg


def test_head_count_mismatch(vit_dir):
    cfg = student_cfg(num_heads=8)
    with pytest.raises(ValueError, match="num_attention_heads=4.*num_heads=8"):
        init_student_from_vit(random_params(cfg), cfg, vit_dir)


def test_unrecognized_layout(tmp_path):
    save_file({"backbone.stem.weight": np.zeros((2, 2), np.float32)}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"unrecognized ViT checkpoint layout.*backbone\.stem\.weight"):
        init_student_from_vit(random_params(student_cfg()), student_cfg(), tmp_path)


def test_boxed_params_refused(vit_dir):
    cfg = student_cfg()
    with pytest.raises(TypeError, match="unbox"):
        init_student_from_vit(abstract_student(cfg), cfg, vit_dir)


# ------------------------------------------------------------------------------------------------ file formats
def test_sharded_bf16_and_pickle_sources(vit_dir, vit_state, fresh, tmp_path):
    cfg = student_cfg()
    want, _ = init_student_from_vit(fresh, cfg, vit_dir)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    keys = sorted(vit_state)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:])):
        name = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: vit_state[k] for k in part}, sharded / name)
        weight_map.update({k: name for k in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    got, _ = init_student_from_vit(fresh, cfg, sharded)
    jax.tree.map(np.testing.assert_array_equal, got, want)

    bf16 = tmp_path / "bf16.safetensors"
    save_file({k: v.astype(ml_dtypes.bfloat16) for k, v in vit_state.items()}, bf16)
    got, _ = init_student_from_vit(fresh, cfg, bf16)
    assert got["layers_0"]["q"]["kernel"].dtype == np.float32
    np.testing.assert_array_equal(got["layers_0"]["q"]["kernel"],
                                  want["layers_0"]["q"]["kernel"].astype(ml_dtypes.bfloat16).astype(np.float32))

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save({k: torch.from_numpy(v) for k, v in vit_state.items()}, pickled / "pytorch_model.bin")
    for where in (pickled, pickled / "pytorch_model.bin"):
        with pytest.raises(CheckpointFormatError, match="allow_pickle=True"):
            init_student_from_vit(fresh, cfg, where)
    got, _ = init_student_from_vit(fresh, cfg, pickled, allow_pickle=True)
    jax.tree.map(np.testing.assert_array_equal, got, want)


# ------------------------------------------------------------------------------------------------ patch size
def test_pi_resize_preserves_tokens_when_upsampling():
    w = np.random.default_rng(0).standard_normal((5, 3, 7, 7))
    x = np.random.default_rng(1).standard_normal((3, 7, 7))
    w14 = pi_resize_patch_kernel(w, (14, 14))
    x14 = np.asarray(jax.image.resize(x, (3, 14, 14), "linear"), np.float64)
    np.testing.assert_allclose(np.einsum("dchw,chw->d", w14, x14), np.einsum("dchw,chw->d", w, x), atol=1e-5)
    assert pi_resize_patch_kernel(w, (5, 5)).shape == (5, 3, 5, 5)
    assert pi_resize_patch_kernel(w, (7, 7)) is w


def test_source_with_other_patch_size(tmp_path):
    torch.manual_seed(3)
    path = save(ViTModel(vit_config(image_size=28, patch_size=7)).eval(), tmp_path)  # grid 4x4, patch 7
    cfg = student_cfg()
    params, report = init_student_from_vit(random_params(cfg), cfg, path)
    sd = load_file(f"{path}/model.safetensors")
    w = sd["embeddings.patch_embeddings.projection.weight"]
    np.testing.assert_allclose(params["patch_embed"]["kernel"],
                               pi_resize_patch_kernel(w, (14, 14)).transpose(2, 3, 1, 0), rtol=0, atol=1e-6)
    assert report["source_patch_size"] == (7, 7) and report["source_grid"] == (4, 4)
    assert any("resampled from 7x7 to 14x14" in w for w in report["warnings"])
