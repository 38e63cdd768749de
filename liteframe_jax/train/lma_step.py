"""The LMA train step: next-token cross-entropy on answer tokens through a visual path into the LLM.

The visual path is named by `encoder` (models.visual_path: "student", "teacher" or "teacher_wap"); its tokens
fill the prompts' <IMG_CONTEXT> placeholders through the shared LLM front end (models.llm_front). What trains is
`trainable`, a subset of {"projector", "llm", "lora", "student", "vision"}; everything else is frozen, passed as
an argument and never gets optimizer state. LoRA adapters are merged into the frozen LLM inside the step.
Train state: {"step": int32 (), "params": trainable subtrees, "opt": optimizer state}.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.config_base import ConfigBase
from liteframe_jax.models import llm_front
from liteframe_jax.models.config import ConfigError, InternVLConfig
from liteframe_jax.models.liteframe import LiteFrameConfig
from liteframe_jax.models.lora import LoRAConfig, init_lora, merge_lora
from liteframe_jax.models.visual_path import VisualPath, make_visual_path
from liteframe_jax.losses.lm import chunked_answer_loss
from liteframe_jax.train.optim import guarded_update
from liteframe_jax.sharding import DEFAULT_RULES, Rules, batch_shardings, param_shardings

GROUPS = ("projector", "llm", "lora", "student", "vision")


@dataclasses.dataclass(frozen=True)
class LMASetup(ConfigBase):
    """What the LMA step is built from; validate() checks each given part, then that they fit together."""

    config_name: ClassVar[str] = "LMA setup"
    parts: ClassVar[tuple[str, ...]] = ("teacher", "liteframe", "wap", "lora")
    encoder: str
    teacher: InternVLConfig
    trainable: tuple[str, ...] = ("projector", "lora")
    liteframe: LiteFrameConfig | None = None  # encoder "student"
    wap: WAPConfig | None = None  # encoder "teacher_wap"
    lora: LoRAConfig | None = None

    @property
    def visual(self) -> VisualPath:
        """The visual path named by `encoder` (ConfigError when unknown or its config is missing)."""
        return make_visual_path(self.encoder, self.teacher, liteframe=self.liteframe, wap=self.wap)

    def problems(self) -> list[str]:
        e = []
        try:
            path = self.visual
        except ConfigError as err:
            path = None
            e.append(str(err))
        bad = sorted(set(self.trainable) - set(GROUPS))
        if bad or not self.trainable:
            e.append(f"trainable={list(self.trainable)} must be a non-empty subset of {list(GROUPS)}")
        if "llm" in self.trainable and "lora" in self.trainable:
            e.append("train either the full LLM ('llm') or LoRA adapters ('lora'), not both")
        if ("lora" in self.trainable) != (self.lora is not None):
            e.append("a lora config is needed exactly when 'lora' is trainable")
        if path is not None and "student" in self.trainable and "student" not in path.param_keys:
            e.append("'student' is trainable only with encoder='student'")
        if path is not None and "vision" in self.trainable and "vision" not in path.param_keys:
            e.append("'vision' (the teacher's ViT) is trainable only with encoder='teacher' or 'teacher_wap'")
        if path is not None and "projector" in self.trainable and not path.projector_on_path:
            e.append("the projector is not on the visual path when tokens live after it (post_projector)")
        if self.liteframe is not None and self.liteframe.teacher.text != self.teacher.text:
            e.append("the LiteFrame checkpoint was distilled for a different LLM than the teacher's")
        return e

    @property
    def frames_per_group(self) -> int:
        return self.visual.frames_per_group

    def tokens_per_group(self) -> int:
        return self.visual.tokens_per_group()


def abstract_model(setup: LMASetup):
    """Boxed abstract params of the whole pipeline: {"student" | "vision", "projector", "llm"}."""
    return setup.visual.abstract_params()


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


def lm_hidden(setup: LMASetup, params, batch) -> jax.Array:
    """(B, L, D) final-normed LLM hidden states of the batch's prompts with the visual tokens merged in."""
    visual = setup.visual.encode(params, batch["pixels"])
    return llm_front.prompt_hidden(setup.teacher, params["llm"], batch["input_ids"], visual,
                                   batch["attention_mask"])


def batch_loss(setup: LMASetup, params, batch) -> tuple[jax.Array, dict]:
    """Answer-token cross-entropy of a batch; logits are formed LOGITS_CHUNK positions at a time."""
    hidden = lm_hidden(setup, params, batch)
    head = functools.partial(llm_front.head, setup.teacher, params["llm"])
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
