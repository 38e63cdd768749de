"""Public inference API: `load` a checkpoint, then encode frames, score tokens or generate.

    import liteframe_jax as lf
    model = lf.load(path)                       # our checkpoint dir (InternVL teacher or LiteFrame), or an
                                                # InternVL3 HF dir (imported on the fly)
    vis = model.encode_frames(pixels)           # (F, H, W, 3) normalized -> (num_visual_tokens(F), d_llm)
    logits = model.logits(input_ids, pixels)    # (B, L) with <IMG_CONTEXT> placeholders -> (B, L, vocab)
    ids = model.generate(input_ids, pixels, max_new_tokens=N)   # greedy, KV-cached -> (B, N) new tokens
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.compression.teacher_targets import targets_to_llm_tokens, teacher_targets
from liteframe_jax.compression.wap import WAPConfig, llm_tokens_per_group
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import InternVL, abstract_params
from liteframe_jax.models.layers import compute_dtype
from liteframe_jax.models.liteframe import LiteFrameConfig, LiteFrameVLM
from liteframe_jax.models.qwen2 import init_kv_cache, positions_from_mask

ModelConfig = InternVLConfig | LiteFrameConfig


def _model(cfg: ModelConfig):
    return InternVL(cfg) if isinstance(cfg, InternVLConfig) else LiteFrameVLM(cfg)


def _llm_side(cfg: ModelConfig) -> InternVLConfig:
    """The config holding the LLM and the token ids (the teacher's, for LiteFrame)."""
    return cfg if isinstance(cfg, InternVLConfig) else cfg.teacher


@functools.partial(jax.jit, static_argnums=(0, 3))
def _encode(cfg: ModelConfig, params, pixels, wap: WAPConfig | None = None):
    """(F, H, W, 3) -> (Nv, d_llm): the teacher per frame (then post-hoc WAP if given), the student over the
    whole clip."""
    if wap is not None:
        out = targets_to_llm_tokens(cfg, params, teacher_targets(cfg, params, pixels[None], wap), wap)
    elif isinstance(cfg, InternVLConfig):
        out = InternVL(cfg).apply({"params": params}, pixels, method=InternVL.encode_images)
    else:
        out = LiteFrameVLM(cfg, with_llm=False).apply({"params": params}, pixels[None],
                                                      method=LiteFrameVLM.encode_video)
    return out.reshape(-1, out.shape[-1])


@functools.partial(jax.jit, static_argnums=0)
def _logits(cfg: ModelConfig, params, input_ids, visual, mask):
    model = _model(cfg)
    logits, _ = model.apply({"params": params}, input_ids, visual, positions_from_mask(mask), mask.astype(bool))
    return logits


@functools.partial(jax.jit, static_argnums=(0, 5))
def _generate(cfg: ModelConfig, params, input_ids, visual, mask, max_new_tokens: int):
    model = _model(cfg)
    apply = functools.partial(model.apply, {"params": params})
    b, L = input_ids.shape
    key_valid = jnp.concatenate([mask.astype(bool), jnp.ones((b, max_new_tokens), bool)], axis=1)
    positions = positions_from_mask(mask)
    cache = init_kv_cache(cfg.text, b, L + max_new_tokens, compute_dtype(_llm_side(cfg).dtype))
    embeds = apply(input_ids, visual, method=type(model).embed)
    logits, cache = apply(embeds, positions, key_valid, cache, 0, True, method=type(model).decode)
    first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)

    def step(carry, i):
        tok, cache, pos = carry
        emb = apply(tok[:, None], None, method=type(model).embed)
        logits, cache = apply(emb, pos[:, None], key_valid, cache, L + i, True, method=type(model).decode)
        nxt = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)
        return (nxt, cache, pos + 1), nxt

    start = jnp.max(positions, axis=1) + 1
    _, rest = jax.lax.scan(step, (first, cache, start), jnp.arange(max_new_tokens - 1))
    return jnp.concatenate([first[:, None], rest.T], axis=1)


@dataclasses.dataclass
class VideoLLM:
    """A loaded Video LLM, the InternVL teacher or LiteFrame: config + parameters (nested dict of arrays)."""

    config: ModelConfig
    params: dict
    path: Path | None = None
    wap: WAPConfig | None = None  # teacher only: compress its tokens post hoc before the LLM
    _tokenizer: object = dataclasses.field(default=None, repr=False)

    @property
    def is_liteframe(self) -> bool:
        return isinstance(self.config, LiteFrameConfig)

    @property
    def ids(self) -> InternVLConfig:
        """The config that holds the LLM and the special token ids."""
        return _llm_side(self.config)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.config.student.image_size if self.is_liteframe else self.config.vision.image_size)

    @property
    def frames_per_group(self) -> int:
        """Frames that share one `<img>...</img>` block in the prompt (1 for the teacher)."""
        if self.wap is not None:
            return self.wap.window[0]
        return self.config.frames_per_group if self.is_liteframe else 1

    def tokens_per_group(self, image_hw: tuple[int, int] | None = None) -> int:
        if self.is_liteframe:
            return self.config.tokens_per_group(image_hw)
        if self.wap is not None:
            return llm_tokens_per_group(self.wap, self.config, image_hw)
        return self.config.tokens_per_frame(image_hw)

    @property
    def tokenizer(self):
        """The tokenizer stored with the checkpoint (loaded on first use)."""
        if self._tokenizer is None:
            from liteframe_jax.data.tokenizer import load_tokenizer
            if self.path is None:
                raise ValueError("this model has no checkpoint directory to load a tokenizer from; pass one to "
                                 "`answer(..., tokenizer=...)`")
            self._tokenizer = load_tokenizer(self.path)
        return self._tokenizer

    def num_visual_tokens(self, num_frames: int, image_hw: tuple[int, int] | None = None) -> int:
        groups = -(-num_frames // self.frames_per_group)
        return groups * self.tokens_per_group(image_hw)

    # ------------------------------------------------------------------ inputs
    def _check_pixels(self, pixels) -> jax.Array:
        pixels = jnp.asarray(pixels, jnp.float32)
        c = self.config
        if self.is_liteframe:
            channels, patch = c.student.num_channels, c.student.patch_size
            stride = c.student.stride[1] * (c.teacher.shuffle_factor if c.location == "pre_shuffle" else 1)
            what = f"patch {patch} x total spatial reduction {stride}"
        else:
            channels, patch, stride = c.vision.num_channels, c.vision.patch_size, c.shuffle_factor
            what = f"patch {patch} x pixel-shuffle {stride}"
            if self.wap is not None:
                stride *= self.wap.window[1]
                what += f" x WAP window {self.wap.window[1]}"
        if pixels.ndim != 4 or pixels.shape[-1] != channels:
            raise ValueError(f"pixels must be (F, H, W, {channels}) normalized floats, got {pixels.shape}")
        step = patch * stride
        if pixels.shape[0] < 1 or pixels.shape[1] % step or pixels.shape[2] % step:
            raise ValueError(f"frame size {pixels.shape[1]}x{pixels.shape[2]} must be a multiple of {step} ({what})")
        return pixels

    def _check_ids(self, input_ids, pixels, attention_mask):
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be an integer array (B, L), got {ids.dtype}{ids.shape}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.ids.text.vocab_size):
            raise ValueError(f"input_ids must lie in [0, {self.ids.text.vocab_size})")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask {mask.shape} must match input_ids {ids.shape}")
        n_placeholders = int((ids == self.ids.image_token_id).sum())
        visual = None
        if pixels is not None:
            pixels = self._check_pixels(pixels)
            need = self.num_visual_tokens(pixels.shape[0], pixels.shape[1:3])
            if n_placeholders != need:
                raise ValueError(f"input_ids hold {n_placeholders} <IMG_CONTEXT> (id {self.ids.image_token_id}) "
                                 f"placeholders but the {pixels.shape[0]} frame(s) give {need} visual tokens")
            visual = self.encode_frames(pixels)
        elif n_placeholders:
            raise ValueError(f"input_ids hold {n_placeholders} <IMG_CONTEXT> placeholders but no pixels were given")
        return jnp.asarray(ids, jnp.int32), visual, jnp.asarray(mask, jnp.int32)

    # ------------------------------------------------------------------ public
    def encode_frames(self, pixels) -> jax.Array:
        """pixels (F, H, W, 3) float32, normalized -> LLM-space visual tokens (num_visual_tokens(F), d_llm):
        F * tokens_per_frame for the teacher; ceil(F / frames_per_group) * tokens_per_group for LiteFrame."""
        return _encode(self.config, self.params, self._check_pixels(pixels), self.wap)

    def _need_llm(self):
        if "llm" not in self.params:
            raise ValueError(f"{self.path or 'this model'} is an encoder-only LiteFrame checkpoint (CTD result, no "
                             "LLM): it can encode frames but not score or generate text; run LMA first")

    def logits(self, input_ids, pixels=None, attention_mask=None) -> jax.Array:
        """input_ids (B, L) with <IMG_CONTEXT> placeholders -> logits (B, L, vocab) fp32."""
        self._need_llm()
        ids, visual, mask = self._check_ids(input_ids, pixels, attention_mask)
        return _logits(self.config, self.params, ids, visual, mask)

    def generate(self, input_ids, pixels=None, max_new_tokens: int = 32, attention_mask=None,
                 eos_token_id: int | None | str = "config") -> np.ndarray:
        """Greedy KV-cached decoding. Returns the new tokens (B, max_new_tokens); positions after a sequence's
        end-of-sequence token hold the pad id. Batches may be left-padded (attention_mask 0 on padding)."""
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        self._need_llm()
        ids, visual, mask = self._check_ids(input_ids, pixels, attention_mask)
        text = self.ids.text
        if ids.shape[1] + max_new_tokens > text.max_position_embeddings and text.rope_scaling != "none":
            raise ValueError(f"prompt + new tokens exceed max_position_embeddings="
                             f"{text.max_position_embeddings}; dynamic RoPE scaling is not implemented")
        tokens = np.asarray(_generate(self.config, self.params, ids, visual, mask, max_new_tokens))
        eos = self.ids.eos_token_id if eos_token_id == "config" else eos_token_id
        if eos is not None:
            is_eos = tokens == eos
            after = (np.cumsum(is_eos, axis=1) - is_eos) > 0
            pad = self.ids.pad_token_id if self.ids.pad_token_id is not None else eos
            tokens = np.where(after, pad, tokens)
        return tokens

    @property
    def end_token_id(self) -> int | None:
        """The token that ends an answer: the config's eos id, else the tokenizer's <|im_end|> (the tiny configs
        have no eos in the model config)."""
        if self.ids.eos_token_id is not None:
            return int(self.ids.eos_token_id)
        from liteframe_jax.data.prompts import IM_END
        token_id = self.tokenizer.convert_tokens_to_ids(IM_END)
        return None if token_id is None or token_id == getattr(self.tokenizer, "unk_token_id", None) \
            else int(token_id)

    def answer(self, pixels, question: str, max_new_tokens: int = 32, system_message: str | None = "default",
               tokenizer=None) -> str:
        """Answers `question` about a clip: pixels (F, H, W, 3) normalized frames -> decoded text (up to the
        end-of-turn token). The prompt is InternVL's chat template with one `<img>` block per frame group;
        system_message "default" is InternVL's, None leaves the system turn out, anything else is used as is. A
        `tokenizer` given here is kept for later calls."""
        from liteframe_jax.data.prompts import DEFAULT_SYSTEM_MESSAGE, decode_answer
        from liteframe_jax.data.qa_pipeline import PromptLayout, prompt_ids
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        if tokenizer is not None:
            self._tokenizer = tokenizer
        pixels = self._check_pixels(pixels)
        layout = PromptLayout(self.tokens_per_group(pixels.shape[1:3]), self.frames_per_group)
        system = DEFAULT_SYSTEM_MESSAGE if system_message == "default" else system_message
        ids = prompt_ids(self.tokenizer, question, pixels.shape[0], layout, system)
        eos = self.end_token_id
        new = self.generate(ids[None], pixels, max_new_tokens=max_new_tokens, eos_token_id=eos)[0]
        return decode_answer(self.tokenizer, new, eos)


def from_params(config: ModelConfig, params) -> VideoLLM:
    params = nn.unbox(params)
    return VideoLLM(config.validate(), jax.tree.map(jnp.asarray, params))


def load(path: str | Path, dtype: str | None = None, wap: WAPConfig | None = None) -> VideoLLM:
    """Loads our checkpoint directory (an imported InternVL teacher, or a LiteFrame model, LoRA merged), or
    imports a PyTorch InternVL3 directory (config.json + safetensors) on the fly. `dtype` ("float32" |
    "bfloat16") overrides the compute dtype. `wap` compresses a teacher's tokens post hoc (InternVL checkpoints
    adapted with encoder=teacher_wap record theirs)."""
    path = Path(path)
    if store.is_checkpoint(path):
        meta = store.read_metadata(path)
        if meta["kind"] == "liteframe":
            from liteframe_jax.checkpoints.liteframe_store import load_liteframe
            if wap is not None:
                raise ValueError("post-hoc WAP applies to teacher (InternVL) models, not to LiteFrame")
            cfg, params, _ = load_liteframe(path, dtype)
            model = from_params(cfg, params)
            model.path = path
            return model
        if meta["kind"] != "internvl":
            raise ValueError(f"{path} holds a {meta['kind']!r} checkpoint, not an InternVL or LiteFrame model")
        cfg = InternVLConfig.from_dict(meta["model"]).validate()
        params = store.restore_params(path, nn.unbox(abstract_params(cfg)))
        if wap is None and meta.get("post_hoc_wap"):
            wap = WAPConfig.from_dict(meta["post_hoc_wap"])
    elif (path / "config.json").is_file():
        from liteframe_jax.checkpoints.import_internvl import import_internvl3
        cfg, params, _ = import_internvl3(path)
    else:
        raise FileNotFoundError(f"{path} is neither a LiteFrame-JAX checkpoint nor an InternVL3 directory "
                                "with config.json")
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype).validate()
    model = from_params(cfg, params)
    model.path = path
    if wap is not None:
        if model.is_liteframe:
            raise ValueError("post-hoc WAP applies to teacher (InternVL) models, not to LiteFrame")
        model.wap = wap.validate()
    return model
