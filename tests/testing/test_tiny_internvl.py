"""Self-test of the hub-free tiny InternVL reference (testing/tiny_internvl.py)."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch

from testing import tiny_internvl as ti

SPEC = ti.TinySpec()


@pytest.fixture(scope="module")
def model():
    return ti.build_reference(SPEC)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype == torch.float32, k
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def _read_weights(d: pathlib.Path, num_shards: int) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    files = sorted(p.name for p in d.glob("*.safetensors"))
    if num_shards == 1:
        assert files == ["model.safetensors"]
        assert not (d / "model.safetensors.index.json").exists()
    else:
        assert files == [f"model-{i:05d}-of-{num_shards:05d}.safetensors" for i in range(1, num_shards + 1)]
        index = json.loads((d / "model.safetensors.index.json").read_text())
    out: dict[str, torch.Tensor] = {}
    where: dict[str, str] = {}
    for name in files:
        with safe_open(str(d / name), framework="pt") as f:
            keys = list(f.keys())
            assert keys, f"empty shard {name}"
            for k in keys:
                assert k not in out, f"duplicate key {k}"
                out[k] = f.get_tensor(k)
                where[k] = name
    if num_shards > 1:
        assert index["weight_map"] == where
        total = sum(t.numel() * t.element_size() for t in out.values())
        assert index["metadata"]["total_size"] == total
    for k, t in out.items():
        assert t.dtype == torch.float32 and t.is_contiguous(), k
    return out


# ---------------------------------------------------------------------------------------------------------------


def test_build_is_deterministic_and_nontrivial(model):
    a = _state(model)
    b = _state(ti.build_reference(SPEC))
    _assert_bitwise_equal(a, b)
    other = _state(ti.build_reference(ti.TinySpec(seed=1)))
    assert not torch.equal(a["lm_head.weight"], other["lm_head.weight"])

    # Perturbation made the default-initialised tensors non-trivial.
    vt = "model.vision_tower."
    assert not torch.all(a[vt + "embeddings.cls_token"] == 0)
    assert not torch.all(a[vt + "embeddings.position_embeddings"] == 0)
    assert not torch.all(a[vt + "encoder.layer.0.lambda_1"] == 0.1)
    assert not torch.all(a[vt + "encoder.layer.0.layernorm_before.weight"] == 1.0)
    assert not torch.all(a["model.language_model.norm.weight"] == 1.0)
    # Untied head, eager attention everywhere, eval mode.
    assert not torch.equal(a["lm_head.weight"], a["model.language_model.embed_tokens.weight"])
    assert model.config.tie_word_embeddings is False
    assert model.config.text_config.tie_word_embeddings is False
    for c in (model.config, model.config.vision_config, model.config.text_config):
        assert c._attn_implementation == "eager"
    assert not model.training
    # Ids.
    assert (SPEC.img_start, SPEC.img_end, SPEC.image_token_id) == (297, 298, 299)
    assert model.config.image_token_id == SPEC.image_token_id
    assert model.config.image_seq_length == 4


def test_key_mapping_roundtrip_and_counts():
    qwen3 = ti.TinySpec(text_model_type="qwen3", explicit_head_dim=20, text_hidden=64, text_heads=4, text_kv_heads=2)
    for spec in (SPEC, ti.TinySpec(use_qk_norm=True, vision_layers=3, text_layers=1), qwen3):
        m = ti.build_reference(spec)
        sd = _state(m)
        counts = ti.expected_key_counts(spec)
        assert len(sd) == counts["hf_runtime"]
        orig = ti.hf_runtime_to_original(sd)
        assert len(orig) == counts["original"]
        # Per vision layer: fused qkv weight+bias, proj weight+bias, ls1, ls2, two norms (weight+bias each),
        # fc1/fc2 (weight+bias each) = 14 tensors, +2 for q/k norms.
        qk = 2 if spec.use_qk_norm else 0
        # Per LLM layer: Qwen2 has q/k/v weight+bias, o, 3 MLP, 2 norms = 12; Qwen3 drops the 3 biases and adds
        # q_norm/k_norm = 11.
        per_llm_layer = 11 if spec.text_model_type == "qwen3" else 12
        assert counts["original"] == 4 + spec.vision_layers * (14 + qk) + 6 + 1 + spec.text_layers * per_llm_layer + 2
        # Fused qkv rows are [q; k; v].
        w = orig["vision_model.encoder.layers.0.attn.qkv.weight"]
        h = spec.vision_hidden
        assert w.shape == (3 * h, h)
        assert torch.equal(w[:h], sd["model.vision_tower.encoder.layer.0.attention.q_proj.weight"])
        assert torch.equal(w[h:2 * h], sd["model.vision_tower.encoder.layer.0.attention.k_proj.weight"])
        assert torch.equal(w[2 * h:], sd["model.vision_tower.encoder.layer.0.attention.v_proj.weight"])
        assert set(k.split(".")[0] for k in orig) == {"vision_model", "mlp1", "language_model"}
        for k in ("vision_model.embeddings.class_embedding", "vision_model.embeddings.position_embedding",
                  "vision_model.embeddings.patch_embedding.weight", "vision_model.encoder.layers.0.ls1",
                  "vision_model.encoder.layers.0.norm2.bias", "vision_model.encoder.layers.0.attn.proj.bias",
                  "mlp1.0.weight", "mlp1.1.bias", "mlp1.3.weight", "language_model.lm_head.weight"):
            assert k in orig, k
        llm_attn = "language_model.model.layers.0.self_attn."
        if spec.text_model_type == "qwen3":
            assert orig[llm_attn + "q_norm.weight"].shape == orig[llm_attn + "k_norm.weight"].shape == (20,)
            assert orig[llm_attn + "q_proj.weight"].shape == (4 * 20, 64) and llm_attn + "q_proj.bias" not in orig
        else:
            assert llm_attn + "q_proj.bias" in orig and llm_attn + "q_norm.weight" not in orig
        if spec.use_qk_norm:
            assert "vision_model.encoder.layers.0.attn.q_norm.weight" in orig
        _assert_bitwise_equal(ti.original_to_hf_runtime(orig), sd)


@pytest.mark.parametrize("num_shards", [1, 2])
@pytest.mark.parametrize("layout", ti.LAYOUTS)
def test_checkpoint_roundtrip(model, tmp_path, layout, num_shards):
    from transformers import InternVLForConditionalGeneration

    ref = _state(model)
    d = ti.write_checkpoint(model, SPEC, tmp_path / "ckpt", layout, num_shards=num_shards)
    assert d == tmp_path / "ckpt"
    weights = _read_weights(d, num_shards)
    assert len(weights) == ti.expected_key_counts(SPEC)[layout]

    tok = json.loads((d / "tokenizer_config.json").read_text())
    dec = {int(i): r["content"] for i, r in tok["added_tokens_decoder"].items()}
    assert dec == {SPEC.img_start: "<img>", SPEC.img_end: "</img>", SPEC.image_token_id: "<IMG_CONTEXT>"}
    cfg = json.loads((d / "config.json").read_text())

    if layout == "original":
        assert set(k.split(".")[0] for k in weights) == {"vision_model", "mlp1", "language_model"}
        assert cfg["architectures"] == ["InternVLChatModel"] and cfg["model_type"] == "internvl_chat"
        assert "image_token_id" not in cfg
        assert (cfg["ps_version"], cfg["select_layer"], cfg["force_image_size"]) == ("v2", -1, SPEC.image_size)
        vc, lc = cfg["vision_config"], cfg["llm_config"]
        assert vc["qkv_bias"] is True and vc["qk_normalization"] is False and vc["use_flash_attn"] is False
        assert (vc["hidden_size"], vc["num_hidden_layers"], vc["image_size"], vc["patch_size"]) == (64, 2, 56, 14)
        assert lc["tie_word_embeddings"] is False and lc["num_key_value_heads"] == 2 and lc["vocab_size"] == 300
        fresh = ti.build_reference(ti.TinySpec(seed=123))  # different weights, same shapes
        result = fresh.load_state_dict(ti.original_to_hf_runtime(weights), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        loaded = fresh
    else:
        if layout == "hf":
            # save_pretrained writes the legacy on-disk names.
            assert all(k.startswith(("vision_tower.", "multi_modal_projector.", "language_model.model."))
                       or k == "language_model.lm_head.weight" for k in weights)
        else:
            assert sorted(weights) == sorted(ref)
        assert cfg["model_type"] == "internvl" and cfg["tie_word_embeddings"] is False
        assert cfg["text_config"]["tie_word_embeddings"] is False
        assert cfg["image_token_id"] == SPEC.image_token_id
        loaded, info = InternVLForConditionalGeneration.from_pretrained(
            str(d), output_loading_info=True, attn_implementation="eager", dtype=torch.float32)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        assert not info.get("mismatched_keys"), info
    _assert_bitwise_equal(_state(loaded), ref)


def _pixel_shuffle_project(model, vision_hidden: np.ndarray) -> np.ndarray:
    """Independent v2 pixel shuffle (written out as reshapes/transposes, not the library's) + projector on
    vision_hidden[:, 1:]."""
    x = torch.from_numpy(vision_hidden[:, 1:])
    n, t, c = x.shape
    g = int(round(t ** 0.5))
    x = x.reshape(n, g // 2, 2, g // 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(n, (g // 2) ** 2, 4 * c)
    with torch.no_grad():
        return model.model.multi_modal_projector(x).numpy()


def test_reference_outputs_batch2_left_padding(model):
    inp = ti.make_inputs(SPEC, num_frames=3, batch_prompts=[5, 9])
    b, length = inp.input_ids.shape
    assert inp.frames_per_row == [2, 1] and inp.tokens_per_frame == 4
    assert inp.pixel_values.shape == (3, 3, 56, 56)
    assert int((inp.input_ids == SPEC.image_token_id).sum()) == 3 * 4
    assert int((inp.input_ids == SPEC.img_start).sum()) == 3 == int((inp.input_ids == SPEC.img_end).sum())
    assert inp.attention_mask[1, 0] == 0 and inp.attention_mask[:, -1].all()  # row 1 is left-padded
    assert torch.equal(ti.make_inputs(SPEC, 3, [5, 9]).input_ids, inp.input_ids)

    out = ti.reference_outputs(model, SPEC, inp.pixel_values, inp.input_ids, inp.attention_mask, max_new_tokens=4)
    assert set(out) == {"vision_hidden", "image_features", "logits", "generated"}
    assert out["vision_hidden"].shape == (3, 17, 64) and out["vision_hidden"].dtype == np.float32
    assert out["image_features"].shape == (3, 4, 96) and out["image_features"].dtype == np.float32
    assert out["logits"].shape == (b, length, 300) and out["logits"].dtype == np.float32
    assert out["generated"].shape == (b, 4) and out["generated"].dtype == np.int64
    np.testing.assert_allclose(_pixel_shuffle_project(model, out["vision_hidden"]), out["image_features"],
                               rtol=1e-5, atol=1e-6)

    # The left-padded row (frame 2) equals the same prompt run alone, unpadded.
    mask1 = inp.attention_mask[1].bool()
    solo_ids = inp.input_ids[1:2, mask1]
    solo = ti.reference_outputs(model, SPEC, inp.pixel_values[2:3], solo_ids, None, max_new_tokens=4)
    np.testing.assert_allclose(out["logits"][1][mask1.numpy()], solo["logits"][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out["generated"][1], solo["generated"][0])

    # Greedy tokens equal a step-by-step argmax over full (cache-free) forwards.
    ids, mask = inp.input_ids.clone(), inp.attention_mask.clone()
    manual = []
    with torch.no_grad():
        for _ in range(4):
            logits = model(input_ids=ids, pixel_values=inp.pixel_values, attention_mask=mask,
                           position_ids=ti.position_ids_from_mask(mask), use_cache=False).logits
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            manual.append(nxt)
            ids = torch.cat([ids, nxt], 1)
            mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    np.testing.assert_array_equal(out["generated"], torch.cat(manual, 1).numpy())


def test_generation_ignores_eos(model):
    inp = ti.make_inputs(SPEC, num_frames=1, batch_prompts=[6])
    first = ti.reference_outputs(model, SPEC, inp.pixel_values, inp.input_ids, max_new_tokens=5)["generated"]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = int(first[0, 0])  # eos = the greedy first token
    try:
        again = ti.reference_outputs(model, SPEC, inp.pixel_values, inp.input_ids, max_new_tokens=5)["generated"]
    finally:
        model.generation_config.eos_token_id = saved
    assert model.generation_config.eos_token_id == SPEC.eos_token_id
    np.testing.assert_array_equal(again, first)


@pytest.mark.parametrize("pixel_size,grid", [(84, 6), (28, 2)])
def test_reference_outputs_non_native_pixel_size(model, pixel_size, grid):
    inp = ti.make_inputs(SPEC, num_frames=2, batch_prompts=[3, 7], pixel_size=pixel_size)
    t = (grid // 2) ** 2
    assert inp.tokens_per_frame == t == ti.tokens_per_frame(SPEC, pixel_size)
    assert inp.pixel_values.shape == (2, 3, pixel_size, pixel_size)
    out = ti.reference_outputs(model, SPEC, inp.pixel_values, inp.input_ids, inp.attention_mask, max_new_tokens=2)
    assert out["vision_hidden"].shape == (2, 1 + grid * grid, 64)
    assert out["image_features"].shape == (2, t, 96)
    assert out["logits"].shape == (2, inp.input_ids.shape[1], 300)
    assert out["generated"].shape == (2, 2)
    assert np.isfinite(out["logits"]).all()
    np.testing.assert_allclose(_pixel_shuffle_project(model, out["vision_hidden"]), out["image_features"],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        ti.make_inputs(SPEC, 1, [3], pixel_size=42)  # not a multiple of 2 * patch


def test_vision_feature_layer_minus_two():
    spec = ti.TinySpec(vision_feature_layer=-2)
    m = ti.build_reference(spec)
    inp = ti.make_inputs(spec, num_frames=1, batch_prompts=[2])
    out = ti.reference_outputs(m, spec, inp.pixel_values, inp.input_ids)
    with torch.no_grad():
        hs = m.model.vision_tower(pixel_values=inp.pixel_values, output_hidden_states=True).hidden_states
    assert len(hs) == spec.vision_layers + 1
    np.testing.assert_array_equal(out["vision_hidden"], hs[-2].numpy())
    np.testing.assert_allclose(_pixel_shuffle_project(m, out["vision_hidden"]), out["image_features"],
                               rtol=1e-5, atol=1e-6)
