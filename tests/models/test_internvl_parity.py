"""The JAX InternVL3 / InternVL3.5 computes the same function as transformers' InternVLForConditionalGeneration.

InternVL3 specs use a Qwen2 LLM; the `qwen3*` specs use a Qwen3 LLM as InternVL3.5 does (per-head q/k RMSNorm,
no q/k/v bias, head_dim independent of hidden_size / num_heads); the `internlm3*` specs an InternLM3 LLM as
InternVL3-9B does (Llama-shaped: no biases, or biases on q/k/v/o and the MLP).

Tiny random references (perturbed so layer scales, CLS and position tables are non-trivial) are written to disk
in each key layout, imported through the real converter path, and compared in fp32: InternViT features, projector
outputs, full logits (max relative error <= 1e-5) and greedy generations (identical tokens).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import liteframe_jax as lf
from liteframe_jax.checkpoints.import_internvl import convert_internvl3
from liteframe_jax.models.internvl import InternVL
from testing.tiny_internvl import TinySpec, build_reference, make_inputs, reference_outputs, write_checkpoint

TOL = 1e-5
SPECS = {
    # 4 vision heads at 56 px (4x4 grid), GQA 6 q / 2 kv heads.
    "base": TinySpec(),
    # 3 vision heads, 3 blocks, 84 px (6x6 grid), features from the second-to-last block, MQA (1 kv head).
    "deep": TinySpec(vision_hidden=48, vision_layers=3, vision_heads=3, vision_mlp=96, image_size=84,
                     vision_feature_layer=-2, text_hidden=64, text_layers=3, text_heads=4, text_kv_heads=1,
                     text_mlp=128, vocab_size=256, rope_theta=10000.0, seed=1),
    # qk-norm in the ViT, plain multi-head attention in the LLM, 2 kv = 2 q heads.
    "qknorm": TinySpec(use_qk_norm=True, vision_heads=2, text_hidden=32, text_heads=2, text_kv_heads=2,
                       text_mlp=64, seed=2),
    # InternVL3.5: Qwen3 LLM, head_dim 24 != 64 / 4, GQA 4 q / 2 kv heads.
    "qwen3": TinySpec(text_model_type="qwen3", explicit_head_dim=24, text_hidden=64, text_heads=4, text_kv_heads=2,
                      text_mlp=128, seed=3),
    # Qwen3 LLM with head_dim 16 > 48 / 6, MQA (1 kv head), 3 layers; qk-norm ViT, 84 px, second-to-last block.
    "qwen3_mqa": TinySpec(text_model_type="qwen3", explicit_head_dim=16, text_hidden=48, text_heads=6, text_kv_heads=1,
                          text_layers=3, text_mlp=96, vocab_size=256, rope_theta=10000.0, use_qk_norm=True,
                          vision_heads=2, image_size=84, vision_feature_layer=-2, seed=4),
    # InternVL3-9B: InternLM3 LLM (run by transformers as Llama), no biases, head_dim 16 = 64 / 4, GQA 4 q / 2 kv
    # heads, dynamic NTK RoPE (factor 6, as InternLM3-8B; no change below max_position_embeddings), eps 1e-5.
    "internlm3": TinySpec(text_model_type="internlm3", explicit_head_dim=16, text_hidden=64, text_heads=4,
                          text_kv_heads=2, text_mlp=128, rope_theta=5e7, rope_dynamic_factor=6.0, rms_norm_eps=1e-5,
                          seed=5),
    # InternLM3 with biases on q/k/v/o and the MLP, head_dim 24 != 48 / 4, MQA, 3 layers; qk-norm ViT, 84 px.
    "internlm3_bias": TinySpec(text_model_type="internlm3", internlm3_bias=True, explicit_head_dim=24,
                               text_hidden=48, text_heads=4, text_kv_heads=1, text_layers=3, text_mlp=96,
                               vocab_size=256, rope_theta=10000.0, use_qk_norm=True, vision_heads=2, image_size=84,
                               vision_feature_layer=-2, seed=6),
}
LAYOUTS = ("original", "hf", "hf_runtime")


def rel_err(ours, ref) -> float:
    """max |ours - ref| / max |ref|"""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="module", params=list(SPECS))
def reference(request, tmp_path_factory):
    spec = SPECS[request.param]
    model = build_reference(spec)
    native = make_inputs(spec, num_frames=3, batch_prompts=[5, 9], seed=10)
    # a non-native square frame size exercises the bicubic position-table resize
    resized = make_inputs(spec, num_frames=2, batch_prompts=[4], pixel_size=spec.image_size + 28, seed=11)
    refs = {"native": (native, reference_outputs(model, spec, native.pixel_values, native.input_ids,
                                                 native.attention_mask, max_new_tokens=6)),
            "resized": (resized, reference_outputs(model, spec, resized.pixel_values, resized.input_ids,
                                                   max_new_tokens=4))}
    dirs = {}
    for layout in LAYOUTS:
        dirs[layout] = write_checkpoint(model, spec, tmp_path_factory.mktemp(f"{request.param}-{layout}"), layout,
                                        num_shards=2 if layout == "hf" else 1)
    return request.param, spec, refs, dirs


def nhwc(pixel_values_nchw) -> np.ndarray:
    return pixel_values_nchw.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_outputs_match_transformers(reference, layout, record_property):
    name, spec, refs, dirs = reference
    model = lf.load(dirs[layout])
    assert model.config.vision.qkv_layout == ("fused" if layout == "original" else "split")
    text = model.config.text
    qkv_bias = {"qwen2": True, "qwen3": False, "internlm3": spec.internlm3_bias}[spec.text_model_type]
    assert (text.qk_norm, text.qkv_bias) == (spec.text_model_type == "qwen3", qkv_bias)
    assert text.o_mlp_bias == spec.internlm3_bias
    assert text.head_dim == spec.text_head_dim
    for case, (inputs, ref) in refs.items():
        pixels = nhwc(inputs.pixel_values)
        mask = inputs.attention_mask.numpy()
        vision = InternVL(model.config).apply({"params": model.params}, pixels, method=InternVL.vision_features)
        errs = {
            "vision": rel_err(vision, ref["vision_hidden"]),
            "projector": rel_err(model.encode_frames(pixels), ref["image_features"].reshape(-1, spec.text_hidden)),
        }
        logits = np.asarray(model.logits(inputs.input_ids.numpy(), pixels, mask))
        real = mask.astype(bool)  # logits at left-padding positions are meaningless in both implementations
        errs["logits"] = rel_err(logits[real], ref["logits"][real])
        for k, e in errs.items():
            record_property(f"{name}-{layout}-{case}-{k}", e)
        assert max(errs.values()) <= TOL, f"{name}/{layout}/{case}: {errs}"
        generated = model.generate(inputs.input_ids.numpy(), pixels, max_new_tokens=ref["generated"].shape[1],
                                   attention_mask=mask)
        np.testing.assert_array_equal(generated, ref["generated"], err_msg=f"{name}/{layout}/{case}")


def test_parity_check_detects_a_wrong_weight(reference):
    """The comparison above is sensitive: a 1% error in one block's layer scale breaks feature parity."""
    name, spec, refs, dirs = reference
    model = lf.load(dirs["hf"])
    inputs, ref = refs["native"]
    params = dict(model.params)
    vision = dict(params["vision"])
    block = dict(vision["layers_0"])
    block["ls1"] = block["ls1"] * 1.01
    vision["layers_0"] = block
    params["vision"] = vision
    out = InternVL(model.config).apply({"params": params}, nhwc(inputs.pixel_values), method=InternVL.vision_features)
    assert rel_err(out, ref["vision_hidden"]) > TOL


def test_parity_check_detects_a_wrong_llm_attention_weight(reference):
    """The logits comparison is sensitive to the LLM attention's own tensors: a 1% error in the first layer's
    query RMSNorm scale (Qwen3), query bias (Qwen2), output bias (InternLM3 with biases) or output kernel breaks
    logits parity."""
    name, spec, refs, dirs = reference
    model = lf.load(dirs["hf"])
    inputs, ref = refs["native"]
    attn = model.params["llm"]["layers_0"]["attn"]
    tensor, leaf = {"qwen2": ("q", "bias"), "qwen3": ("q_norm", "scale"),
                    "internlm3": ("o", "bias" if spec.internlm3_bias else "kernel")}[spec.text_model_type]
    attn = {**attn, tensor: {**attn[tensor], leaf: attn[tensor][leaf] * 1.01}}
    layer = {**model.params["llm"]["layers_0"], "attn": attn}
    params = {**model.params, "llm": {**model.params["llm"], "layers_0": layer}}
    broken = dataclasses.replace(model, params=params)
    mask = inputs.attention_mask.numpy()
    logits = np.asarray(broken.logits(inputs.input_ids.numpy(), nhwc(inputs.pixel_values), mask))
    real = mask.astype(bool)
    assert rel_err(logits[real], ref["logits"][real]) > TOL


def test_converted_checkpoint_matches_direct_import(reference, tmp_path):
    """The converter's written checkpoint (our format, config with the LLM fields) loads back to the same logits."""
    name, spec, refs, dirs = reference
    inputs, ref = refs["native"]
    out = convert_internvl3(dirs["original"], tmp_path / "ours")
    model = lf.load(out)
    assert model.config == lf.load(dirs["original"]).config
    mask = inputs.attention_mask.numpy()
    logits = np.asarray(model.logits(inputs.input_ids.numpy(), nhwc(inputs.pixel_values), mask))
    real = mask.astype(bool)
    assert rel_err(logits[real], ref["logits"][real]) <= TOL
