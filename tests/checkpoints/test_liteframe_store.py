"""LiteFrame checkpoints: encoder-only (CTD) and full (LMA, optionally with LoRA) models, loaded by `lf.load`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import liteframe_jax as lf
from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.checkpoints.liteframe_store import load_liteframe, save_liteframe
from liteframe_jax.models.config import DownsampleStage, StudentConfig
from liteframe_jax.models.liteframe import LiteFrameConfig, LiteFrameVLM, init_liteframe
from liteframe_jax.models.lora import LoRAConfig, init_lora, merge_lora
from liteframe_jax.models.visual_path import for_model


@pytest.fixture(scope="module")
def cfg():
    student = StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, out_dim=64,
                            num_frames=4, downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),))
    return LiteFrameConfig(student, model_from_config(internvl3_tiny.get_config())).validate()


def _prompt(cfg, frames):
    n = for_model(cfg).num_visual_tokens(frames)
    return np.array([[3, 4] + [cfg.teacher.image_token_id] * n + [5, 6]], np.int32)


def test_lora_checkpoint_loads_merged_and_matches_the_unmerged_forward(cfg, tmp_path):
    lc = LoRAConfig(rank=2, alpha=4)
    params = nn.unbox(init_liteframe(cfg, seed=0))
    lora = jax.tree.map(lambda x: x + 0.05, init_lora(params["llm"], lc, jax.random.key(1)))
    save_liteframe(tmp_path / "ck", cfg, {**params, "lora": lora}, lora=lc, provenance={"test": True})
    cfg2, loaded, meta = load_liteframe(tmp_path / "ck")
    assert cfg2 == cfg and "lora" not in loaded and meta["lora"] == lc.to_dict()
    np.testing.assert_allclose(loaded["llm"]["layers_0"]["attn"]["v"]["kernel"],
                               merge_lora(params["llm"], lora, lc)["layers_0"]["attn"]["v"]["kernel"], rtol=1e-6)
    _, raw, _ = load_liteframe(tmp_path / "ck", merge=False)
    np.testing.assert_array_equal(raw["lora"]["layers_1"]["up"]["a"], lora["layers_1"]["up"]["a"])

    model = lf.load(tmp_path / "ck")
    assert model.is_liteframe and model.frames_per_group == 2
    pixels = jax.random.normal(jax.random.key(2), (3, 56, 56, 3))
    ids = _prompt(cfg, 3)
    logits = model.logits(ids, pixels)
    merged = {**params, "llm": merge_lora(params["llm"], lora, lc)}
    vlm = LiteFrameVLM(cfg)
    visual = vlm.apply({"params": merged}, pixels[None], method=LiteFrameVLM.encode_video)
    want, _ = vlm.apply({"params": merged}, jnp.asarray(ids), visual, jnp.arange(ids.shape[1])[None],
                        jnp.ones(ids.shape, bool))
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    assert model.generate(ids, pixels, max_new_tokens=3).shape == (1, 3)


def test_encoder_only_checkpoint_encodes_but_refuses_text(cfg, tmp_path):
    params = nn.unbox(init_liteframe(cfg, seed=0, with_llm=False))
    save_liteframe(tmp_path / "enc", cfg, params, stage="ctd")
    model = lf.load(tmp_path / "enc")
    tokens = model.encode_frames(np.zeros((4, 56, 56, 3), np.float32))
    assert tokens.shape == (for_model(cfg).num_visual_tokens(4), cfg.teacher.text.hidden_size)
    with pytest.raises(ValueError, match="encoder-only"):
        model.logits(_prompt(cfg, 4), np.zeros((4, 56, 56, 3), np.float32))


def test_wrong_placeholder_count_and_bad_frames_are_reported(cfg, tmp_path):
    save_liteframe(tmp_path / "ck", cfg, nn.unbox(init_liteframe(cfg)))
    model = lf.load(tmp_path / "ck")
    with pytest.raises(ValueError, match="placeholders but the 4 frame"):
        model.logits(_prompt(cfg, 2), np.zeros((4, 56, 56, 3), np.float32))
    with pytest.raises(ValueError, match="multiple of 56"):
        model.encode_frames(np.zeros((2, 42, 42, 3), np.float32))


def test_saving_rejects_inconsistent_lora_arguments(cfg, tmp_path):
    params = nn.unbox(init_liteframe(cfg))
    with pytest.raises(ValueError, match="LoRA config exactly"):
        save_liteframe(tmp_path / "x", cfg, params, lora=LoRAConfig(rank=2))
    assert not (tmp_path / "x").exists()
