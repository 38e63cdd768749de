"""An InternVL3.5-shaped teacher (Qwen3 LLM: q/k norm, no q/k/v bias, head_dim 24 != 96 / 6) and an
InternVL3-9B-shaped one (InternLM3 LLM: no biases, head_dim 16) in the training paths: CTD distils from the vision
tower and projector, LMA trains LoRA + projector on the LLM through the teacher and the student visual paths."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.losses.ctd import CTDLossConfig
from liteframe_jax.models.config import DownsampleStage, StudentConfig
from liteframe_jax.models.internvl import init_params
from liteframe_jax.models.liteframe import LiteFrameConfig
from liteframe_jax.models.lora import LoRAConfig, init_lora
from liteframe_jax.sharding import batch_shardings, make_mesh
from liteframe_jax.train import ctd_step, lma_step
from liteframe_jax.train.optim import OptimConfig, make_optimizer
from liteframe_jax.train.tiny_demo import tiny_student, tiny_wap

TEACHER = model_from_config(internvl3_tiny.get_config("llm=qwen3"))
INTERNLM3_TEACHER = model_from_config(internvl3_tiny.get_config("llm=internlm3"))
ONE_DEVICE = {"data": 1, "fsdp": 1, "tensor": 1}


def test_the_tiny_qwen3_teacher_has_the_qwen3_attention():
    t = TEACHER.text
    assert t.qk_norm and not t.qkv_bias and t.head_dim == 24 != t.hidden_size // t.num_heads
    attn = nn.unbox(init_params(TEACHER))["llm"]["layers_0"]["attn"]
    assert attn["q_norm"]["scale"].shape == attn["k_norm"]["scale"].shape == (24,)
    assert "bias" not in attn["q"] and attn["q"]["kernel"].shape == (96, 6 * 24)


def test_the_tiny_internlm3_teacher_has_the_internlm3_layers():
    t = INTERNLM3_TEACHER.text
    assert not (t.qk_norm or t.qkv_bias or t.o_mlp_bias) and t.head_dim == 16 and t.rope_scaling == "dynamic"
    layer = nn.unbox(init_params(INTERNLM3_TEACHER))["llm"]["layers_0"]
    assert all("bias" not in layer[n] for n in ("gate", "up", "down")) and set(layer["attn"]) == set("qkvo")


@pytest.mark.parametrize("teacher", [TEACHER, INTERNLM3_TEACHER], ids=["qwen3", "internlm3"])
def test_ctd_trains_a_student_against_the_teacher(teacher):
    setup = ctd_step.CTDSetup(
        student=StudentConfig(image_size=(56, 56), hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64, out_dim=64,
                              num_frames=4, downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),)),
        teacher=teacher, wap=WAPConfig(window=(2, 2, 2)), loss=CTDLossConfig(cosine_weight=0.1)).validate()
    tx = make_optimizer(OptimConfig(peak_lr=3e-3, warmup_steps=1, total_steps=10))
    mesh = make_mesh(ONE_DEVICE, jax.devices()[:1])
    full = nn.unbox(init_params(teacher, seed=0))
    teacher = {k: full[k] for k in ctd_step.TEACHER_PARTS}
    stats = (np.zeros(64, np.float32), np.ones(64, np.float32))
    batch = {"pixels": np.random.default_rng(0).normal(size=(2, 4, 56, 56, 3)).astype(np.float32)}
    state = ctd_step.init_state(setup, tx, mesh, seed=0)
    step = ctd_step.make_train_step(setup, tx, mesh, batch)
    losses = []
    for _ in range(4):
        state, m = step(state, teacher, stats, batch)
        losses.append(float(m["loss"]))
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


def _random_like(tree, key):
    leaves, treedef = jax.tree.flatten(nn.unbox(tree))
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([1.0 + 0.02 * jax.random.normal(k, x.shape, x.dtype) if x.ndim == 1 else
                              0.02 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


def _lma_run(encoder: str, mesh_axes: dict, steps: int = 5, teacher=TEACHER):
    """LoRA + projector LMA steps on random params; returns (losses, final state, frozen params, the initial frozen
    first LLM layer)."""
    liteframe = LiteFrameConfig(tiny_student(), teacher, tiny_wap().location) if encoder == "student" else None
    setup = lma_step.LMASetup(encoder, teacher, ("projector", "lora"), lora=LoRAConfig(rank=2, alpha=4),
                              liteframe=liteframe).validate()
    tx = make_optimizer(OptimConfig(peak_lr=1e-2, warmup_steps=0, total_steps=10))
    mesh = make_mesh(mesh_axes, jax.devices()[:int(np.prod(list(mesh_axes.values())))])
    _, st_sh, fr_sh = lma_step.state_shardings(setup, tx, mesh)
    trainable, frozen = lma_step.split_abstract(setup)
    del trainable["lora"]
    frozen = _random_like(frozen, jax.random.key(1))
    trainable = {**_random_like(trainable, jax.random.key(0)),
                 "lora": init_lora(frozen["llm"], setup.lora, jax.random.key(2))}
    layer_0 = jax.tree.map(np.asarray, frozen["llm"]["layers_0"])
    frozen = jax.device_put(frozen, fr_sh)
    state = lma_step.init_state(tx, jax.device_put(trainable, st_sh["params"]), st_sh)

    frames, b, length = 4, 4, 40
    n_visual = frames // setup.frames_per_group * setup.tokens_per_group()
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 200, (b, length)).astype(np.int32)
    ids[:, 2:2 + n_visual] = teacher.image_token_id
    loss_mask = np.zeros((b, length), np.float32)
    loss_mask[:, -4:] = 1
    batch = {"pixels": rng.normal(size=(b, frames, 56, 56, 3)).astype(np.float32), "input_ids": ids,
             "loss_mask": loss_mask, "attention_mask": np.ones((b, length), np.int32)}
    step = lma_step.make_train_step(setup, tx, mesh, batch)
    losses = []
    for _ in range(steps):
        state, m = step(state, frozen, jax.device_put(batch, batch_shardings(mesh, batch)))
        losses.append(float(m["loss"]))
    return np.array(losses), state, frozen, layer_0


@pytest.mark.parametrize("teacher", [TEACHER, INTERNLM3_TEACHER], ids=["qwen3", "internlm3"])
@pytest.mark.parametrize("encoder", ["teacher", "student"])
def test_lma_lora_trains_on_the_llm(encoder, teacher):
    losses, state, frozen, layer_0 = _lma_run(encoder, ONE_DEVICE, teacher=teacher)
    assert losses[-1] < losses[0]
    lora_q = jax.device_get(state["params"]["lora"]["layers_0"]["attn"]["q"])
    assert not np.allclose(lora_q["b"], 0)  # B starts at zero
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(frozen["llm"]["layers_0"]), layer_0)  # frozen


def test_lma_on_a_qwen3_llm_is_the_same_on_8_sharded_devices():
    """data x fsdp x tensor = 2 x 2 x 2: the q/k norms act on tensor-sharded heads."""
    one, *_ = _lma_run("teacher", ONE_DEVICE, steps=3)
    many, *_ = _lma_run("teacher", {"data": 2, "fsdp": 2, "tensor": 2}, steps=3)
    np.testing.assert_allclose(many, one, rtol=1e-5)
