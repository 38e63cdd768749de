"""Analytic FLOPs (experiments/flops.py) against the programs the benchmark runs.

Two yardsticks: the matmul FLOPs read off the lowered program (every dot_general / convolution; must agree
exactly, so a missing or double-counted matmul fails), and XLA's cost analysis of the compiled program, which
also counts elementwise ops (norms, GELU's erf polynomial, softmax, RoPE, residuals): it must lie at or a few
percent above the analytic count (measured on CPU: +0.5% to +5% at the small sizes below, +0.2% to +2% at the
real InternVL3-8B / ViT-B sizes).
"""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from configs import latency as latency_config
from experiments import flops
from experiments.latency import _jitted, layout, llm_length, validate, visual_path
from experiments.timing import compiled_flops
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models import internvl
from liteframe_jax.models.liteframe import LiteFrameConfig


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nn.unbox(tree))


def _plan(size="tiny", **changes):
    return dataclasses.replace(validate(latency_config.get_config(f"size={size}")), **changes)


def _vision_args(plan, pipeline, frames):
    h, w = plan.teacher.vision.image_size
    pixels = jax.ShapeDtypeStruct((frames, h, w, 3), jnp.float32)
    path = visual_path(plan, pipeline)
    return path, _abstract(path.abstract_encoder_params()), pixels


def _prefill_args(plan, pipeline, frames):
    groups, per_group = layout(plan, pipeline, frames)
    ids = jax.ShapeDtypeStruct((1, llm_length(plan, groups, per_group)), jnp.int32)
    visual = jax.ShapeDtypeStruct((groups * per_group, plan.teacher.text.hidden_size), jnp.float32)
    return plan.teacher, _abstract(internvl.abstract_params(plan.teacher)["llm"]), ids, visual


def _non_matmul(plan, pipeline, frames, parts):
    """The analytic FLOPs that are not dot/convolution ops: WAP's norms (half its count), the temporal convs and
    the depth-wise downsampling convs (both written as shifted multiply-adds)."""
    if pipeline == "teacher_wap":
        return parts["wap"] / 2
    if pipeline == "student":
        parts = flops.student_encoder(plan.student.student, frames)
        return parts["temporal_conv"] + parts["downsample"]
    return 0.0


def _vision_variants():
    base = _plan()
    t, s = base.teacher, base.student.student
    split = t.replace(vision=dataclasses.replace(t.vision, qkv_layout="split", select_layer=-2, qk_norm=True))
    yield "base", base
    for location in ("post_shuffle", "post_projector"):
        yield f"wap_{location}", dataclasses.replace(base, wap=WAPConfig(window=(2, 1, 1), location=location))
    yield "split_qkv_select_layer", dataclasses.replace(base, teacher=split,
                                                        student=LiteFrameConfig(s, split, "pre_shuffle"))
    f2 = t.shuffle_factor ** 2
    yield "student_post_shuffle_after_mlp", dataclasses.replace(base, student=LiteFrameConfig(
        s.replace(out_dim=f2 * t.vision.hidden_size, temporal_conv_position="after_mlp"), t, "post_shuffle"))
    yield "student_post_projector_no_temporal", dataclasses.replace(base, student=LiteFrameConfig(
        s.replace(out_dim=t.text.hidden_size, temporal_conv=False), t, "post_projector"))


@pytest.mark.parametrize("name,plan", list(_vision_variants()), ids=lambda x: x if isinstance(x, str) else "")
def test_vision_matmul_flops_equal_the_lowered_program(name, plan):
    for pipeline in ("teacher", "teacher_wap", "student"):
        for frames in (3, 4):  # 3: WAP and the student pad the clip to a multiple of their temporal stride
            parts = flops.vision(visual_path(plan, pipeline), frames)
            text = _jitted()["vision"].lower(*_vision_args(plan, pipeline, frames)).as_text()
            expected = parts["total"] - _non_matmul(plan, pipeline, frames, parts)
            assert flops.lowered_matmul_flops(text) == pytest.approx(expected, rel=1e-9), (pipeline, frames)


@pytest.mark.parametrize("tied, family", [(False, "qwen2"), (True, "qwen2"), (False, "qwen3"), (False, "internlm3")])
def test_prefill_matmul_flops_equal_the_lowered_program(tied, family):
    """qwen3: an InternVL3.5-style LLM, whose head_dim (here width / heads + 8) sets the q/k/v/o widths;
    internlm3: an InternVL3-9B-style LLM, here with biases on q/k/v/o and the MLP (no matmuls) and head_dim + 4."""
    plan = _plan()
    text = plan.teacher.text
    if tied:
        text = dataclasses.replace(text, tie_word_embeddings=True)
    if family == "qwen3":
        text = dataclasses.replace(text, qk_norm=True, qkv_bias=False, explicit_head_dim=text.head_dim + 8)
    if family == "internlm3":
        text = dataclasses.replace(text, qkv_bias=True, o_mlp_bias=True, explicit_head_dim=text.head_dim + 4)
    plan = dataclasses.replace(plan, teacher=plan.teacher.replace(text=text))
    for pipeline in ("teacher", "student"):
        args = _prefill_args(plan, pipeline, 4)
        text = _jitted()["prefill"].lower(*args).as_text()
        expected = flops.qwen2_prefill(plan.teacher.text, args[2].shape[1])["total"]
        assert flops.lowered_matmul_flops(text) == pytest.approx(expected, rel=1e-9)


def test_xla_cost_analysis_is_at_most_a_few_percent_above_the_analytic_count():
    plan = _plan("small")
    frames = 8
    for pipeline in ("teacher", "teacher_wap", "student"):
        analytic = flops.vision(visual_path(plan, pipeline), frames)["total"]
        counted = compiled_flops(_jitted()["vision"], *_vision_args(plan, pipeline, frames))
        assert 1.0 <= counted / analytic <= 1.07, (pipeline, counted / analytic)
    args = _prefill_args(plan, "teacher", frames)
    analytic = flops.qwen2_prefill(plan.teacher.text, args[2].shape[1])["total"]
    assert 1.0 <= compiled_flops(_jitted()["prefill"], *args) / analytic <= 1.02


def test_real_sizes_match_the_published_compute():
    """InternViT-300M ~360 GMACs per 448 px frame; the 87M student ~41 GMACs per frame (paper notes §4);
    Qwen2.5-7B prefill ~2 x 7B FLOPs per token plus attention."""
    plan = validate(latency_config.get_config("size=real"))
    teacher = flops.teacher_vision(plan.teacher, 64)["total"] / 64 / 2e9
    student = flops.student_vision(plan.student, 64)["total"] / 64 / 2e9
    assert 355 < teacher < 375 and 39 < student < 44
    prefill = flops.qwen2_prefill(plan.teacher.text, 1000)
    per_token = (prefill["total"] - prefill["attention"] - prefill["lm_head"]) / 1000
    assert 2 * 6.4e9 < per_token < 2 * 6.6e9  # 7.6B parameters minus the 1.1B embedding and the LM head


def test_pipeline_names_are_checked():
    plan = _plan()
    with pytest.raises(ValueError, match="encoder='nope' must be one of"):
        flops.vision(visual_path(plan, "nope"), 4)
