"""The LMA train step: next-token cross-entropy on answer tokens through a visual path into the LLM.

Visual paths ("encoder"): "student" (LiteFrame: student -> teacher pixel shuffle -> projector), "teacher"
(InternViT per frame -> pixel shuffle -> projector) and "teacher_wap" (the teacher's tokens compressed post hoc by
WAP). What trains is `trainable`, a subset of {"projector", "llm", "lora", "student"}; everything else is frozen,
passed as an argument and never gets optimizer state. LoRA adapters are merged into the frozen LLM inside the step.
Train state: {"step": int32 (), "params": trainable subtrees, "opt": optimizer state}.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from liteframe_jax.compression.teacher_targets import targets_to_llm_tokens, teacher_targets
from liteframe_jax.compression.wap import WAPConfig, llm_tokens_per_group
from liteframe_jax.models.config import ConfigError, InternVLConfig
from liteframe_jax.models.internvl import InternVL, abstract_params, merge_visual_tokens
from liteframe_jax.models.layers import compute_dtype
from liteframe_jax.models.liteframe import LiteFrameConfig, LiteFrameVLM, abstract_liteframe
from liteframe_jax.models.lora import LoRAConfig, init_lora, merge_lora
from liteframe_jax.models.qwen2 import Qwen2, positions_from_mask
from liteframe_jax.losses.lm import chunked_answer_loss
from liteframe_jax.train.optim import guarded_update
from liteframe_jax.sharding import DEFAULT_RULES, Rules, batch_shardings, param_shardings

ENCODERS = ("student", "teacher", "teacher_wap")
GROUPS = ("projector", "llm", "lora", "student")


@dataclasses.dataclass(frozen=True)
class LMASetup:
    encoder: str
    teacher: InternVLConfig
    trainable: tuple[str, ...] = ("projector", "lora")
    liteframe: LiteFrameConfig | None = None  # encoder "student"
    wap: WAPConfig | None = None  # encoder "teacher_wap"
    lora: LoRAConfig | None = None

    def validate(self) -> "LMASetup":
        e = []
        if self.encoder not in ENCODERS:
            e.append(f"encoder={self.encoder!r} must be one of {ENCODERS}")
        bad = sorted(set(self.trainable) - set(GROUPS))
        if bad or not self.trainable:
            e.append(f"trainable={list(self.trainable)} must be a non-empty subset of {list(GROUPS)}")
        if "llm" in self.trainable and "lora" in self.trainable:
            e.append("train either the full LLM ('llm') or LoRA adapters ('lora'), not both")
        if ("lora" in self.trainable) != (self.lora is not None):
            e.append("a lora config is needed exactly when 'lora' is trainable")
        if "student" in self.trainable and self.encoder != "student":
            e.append("'student' is trainable only with encoder='student'")
        if self.encoder == "student" and self.liteframe is None:
            e.append("encoder='student' needs the LiteFrame config")
        if self.encoder == "teacher_wap" and self.wap is None:
            e.append("encoder='teacher_wap' needs a WAP config")
        location = (self.liteframe.location if self.encoder == "student" and self.liteframe else
                    self.wap.location if self.encoder == "teacher_wap" and self.wap else "pre_shuffle")
        if "projector" in self.trainable and location == "post_projector":
            e.append("the projector is not on the visual path when tokens live after it (post_projector)")
        if e:
            raise ConfigError("invalid LMA setup:\n  - " + "\n  - ".join(e))
        self.teacher.validate()
        if self.liteframe is not None:
            self.liteframe.validate()
            if self.liteframe.teacher.text != self.teacher.text:
                raise ConfigError("the LiteFrame checkpoint was distilled for a different LLM than the teacher's")
        if self.lora is not None:
            self.lora.validate()
        return self

    @property
    def frames_per_group(self) -> int:
        if self.encoder == "student":
            return self.liteframe.frames_per_group
        return self.wap.window[0] if self.encoder == "teacher_wap" else 1

    def tokens_per_group(self) -> int:
        if self.encoder == "student":
            return self.liteframe.tokens_per_group()
        if self.encoder == "teacher":
            return self.teacher.tokens_per_frame()
        return llm_tokens_per_group(self.wap, self.teacher)


def abstract_model(setup: LMASetup):
    """Boxed abstract params of the whole pipeline: {"student" | "vision", "projector", "llm"}."""
    if setup.encoder == "student":
        return dict(abstract_liteframe(setup.liteframe))
    return dict(abstract_params(setup.teacher))


def split_abstract(setup: LMASetup):
    """(boxed trainable tree, boxed frozen tree); LoRA adapters appear as trainable["lora"]."""
    full = abstract_model(setup)
    trainable = {k: v for k, v in full.items() if k in setup.trainable}
    frozen = {k: v for k, v in full.items() if k not in setup.trainable}
    if setup.lora is not None:
        trainable["lora"] = jax.eval_shape(lambda: init_lora(full["llm"], setup.lora, jax.random.key(0), boxed=True))
    return trainable, frozen


def combine(setup: LMASetup, trainable, frozen) -> dict:
    """Full pipeline params with LoRA merged into the LLM."""
    params = {**frozen, **{k: v for k, v in trainable.items() if k != "lora"}}
    if "lora" in trainable:
        params["llm"] = merge_lora(params["llm"], trainable["lora"], setup.lora)
    return params


def visual_tokens(setup: LMASetup, params, pixels: jax.Array) -> jax.Array:
    """pixels (B, T, H, W, 3) -> LLM visual tokens (B, Nv, d_llm) on the setup's visual path."""
    if setup.encoder == "student":
        return LiteFrameVLM(setup.liteframe, with_llm=False).apply(
            {"params": {k: params[k] for k in ("student", "projector") if k in params}}, pixels,
            method=LiteFrameVLM.encode_video)
    b, t = pixels.shape[:2]
    if setup.encoder == "teacher":
        out = InternVL(setup.teacher).apply({"params": params}, pixels.reshape(b * t, *pixels.shape[2:]),
                                            method=InternVL.encode_images)
        return out.reshape(b, -1, out.shape[-1])
    targets = teacher_targets(setup.teacher, params, pixels, setup.wap)
    return targets_to_llm_tokens(setup.teacher, params, targets, setup.wap)


def lm_hidden(setup: LMASetup, params, batch) -> jax.Array:
    """(B, L, D) final-normed LLM hidden states of the batch's prompts with the visual tokens merged in."""
    t = setup.teacher
    visual = visual_tokens(setup, params, batch["pixels"])
    llm = _llm(setup)
    embeds = llm.apply({"params": params["llm"]}, batch["input_ids"], method=Qwen2.embed)
    embeds = merge_visual_tokens(embeds, batch["input_ids"], visual.reshape(-1, visual.shape[-1]),
                                 t.image_token_id)
    mask = batch["attention_mask"]
    hidden, _ = llm.apply({"params": params["llm"]}, embeds, positions_from_mask(mask), mask.astype(bool),
                          hidden_only=True)
    return hidden


def _llm(setup: LMASetup) -> Qwen2:
    t = setup.teacher
    return Qwen2(t.text, compute_dtype(t.dtype), t.attention_impl, t.remat)


def batch_loss(setup: LMASetup, params, batch) -> tuple[jax.Array, dict]:
    """Answer-token cross-entropy of a batch; logits are formed LOGITS_CHUNK positions at a time."""
    hidden = lm_hidden(setup, params, batch)
    head = lambda h: _llm(setup).apply({"params": params["llm"]}, h, method=Qwen2.head)
    return chunked_answer_loss(hidden, head, batch["input_ids"], batch["loss_mask"])


def state_shardings(setup: LMASetup, tx: optax.GradientTransformation, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """(abstract train state, its shardings, frozen shardings)."""
    trainable, frozen = split_abstract(setup)
    p_sh = param_shardings(trainable, mesh, rules)
    replicated = NamedSharding(mesh, P())
    params = nn.unbox(trainable)
    abstract = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": params,
                "opt": jax.eval_shape(tx.init, params)}
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract["opt"], p_sh,
                                   transform_non_params=lambda _: replicated)
    return abstract, {"step": replicated, "params": p_sh, "opt": opt_sh}, param_shardings(frozen, mesh, rules)


def init_state(tx, trainable_params, shardings) -> dict:
    """Train state from initial trainable params (already placed), optimizer state created in its shardings."""
    opt = jax.jit(tx.init, out_shardings=shardings["opt"])(trainable_params)
    step = jax.device_put(jnp.zeros((), jnp.int32), shardings["step"])
    return {"step": step, "params": trainable_params, "opt": opt}


def _step(setup: LMASetup, tx, state, frozen, batch):
    def loss_fn(trainable):
        return batch_loss(setup, combine(setup, trainable, frozen), batch)

    return guarded_update(tx, state, loss_fn)


def _eval(setup: LMASetup, trainable, frozen, batch):
    return batch_loss(setup, combine(setup, trainable, frozen), batch)[1]


def make_train_step(setup: LMASetup, tx, mesh: Mesh, example_batch, rules: Rules = DEFAULT_RULES):
    """jitted (state, frozen_params, batch) -> (state, metrics) with explicit shardings; the state is donated."""
    _, st_sh, fr_sh = state_shardings(setup, tx, mesh, rules)
    return jax.jit(functools.partial(_step, setup, tx),
                   in_shardings=(st_sh, fr_sh, batch_shardings(mesh, example_batch, rules)),
                   out_shardings=(st_sh, NamedSharding(mesh, P())), donate_argnums=(0,))


def make_eval_step(setup: LMASetup, tx, mesh: Mesh, example_batch, rules: Rules = DEFAULT_RULES):
    _, st_sh, fr_sh = state_shardings(setup, tx, mesh, rules)
    return jax.jit(functools.partial(_eval, setup),
                   in_shardings=(st_sh["params"], fr_sh, batch_shardings(mesh, example_batch, rules)),
                   out_shardings=NamedSharding(mesh, P()))
