"""Public inference API: `load` a checkpoint, then encode frames, score tokens or generate.

    import liteframe_jax as lf
    model = lf.load(path)                       # our checkpoint dir (InternVL teacher or LiteFrame), or an
                                                # InternVL3 HF dir (imported on the fly)
    vis = model.encode_frames(pixels)           # (F, H, W, 3) normalized -> (num_visual_tokens(F), d_llm)
    logits = model.logits(input_ids, pixels)    # (B, L) with <IMG_CONTEXT> placeholders -> (B, L, vocab)
    ids = model.generate(input_ids, pixels, max_new_tokens=N)   # greedy, KV-cached -> (B, N) new tokens

Batches of prompts about several clips: `batch_prompts` left-pads them, `generate_from_visual` and
`next_token_logprobs` take the clips' `encode_frames` tokens concatenated in row order. The frames -> tokens part
is the model's visual path (`model.visual`, models.visual_path); the LLM part is models.llm_front.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from liteframe_jax.checkpoints import store
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models import llm_front
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import abstract_params
from liteframe_jax.models.liteframe import LiteFrameConfig
from liteframe_jax.models.visual_path import VisualPath, encode_frames, for_model

ModelConfig = InternVLConfig | LiteFrameConfig

_logits = jax.jit(llm_front.prompt_logits, static_argnums=0)
_next_token_logprobs = jax.jit(llm_front.next_token_logprobs, static_argnums=0)
_continuation_logprobs = jax.jit(llm_front.continuation_logprobs, static_argnums=0)
_generate = jax.jit(llm_front.greedy_generate, static_argnums=(0, 5))


@dataclasses.dataclass
class VideoLLM:
    """A loaded Video LLM, the InternVL teacher or LiteFrame: config + parameters (nested dict of arrays)."""

    config: ModelConfig
    params: dict
    path: Path | None = None
    wap: WAPConfig | None = None  # teacher only: compress its tokens post hoc before the LLM
    _tokenizer: object = dataclasses.field(default=None, repr=False)

    @property
    def visual(self) -> VisualPath:
        """The visual path: frames -> LLM tokens, prompt layout, input rules (models.visual_path)."""
        return for_model(self.config, self.wap)

    @property
    def is_liteframe(self) -> bool:
        return self.config.kind == "liteframe"

    @property
    def llm_config(self) -> InternVLConfig:
        """The config that holds the LLM and the special token ids (the teacher's, for LiteFrame)."""
        return self.visual.teacher

    @property
    def image_size(self) -> tuple[int, int]:
        return self.visual.image_size

    @property
    def frames_per_group(self) -> int:
        """Frames that share one `<img>...</img>` block in the prompt (1 for the teacher)."""
        return self.visual.frames_per_group

    def tokens_per_group(self, image_hw: tuple[int, int] | None = None) -> int:
        return self.visual.tokens_per_group(image_hw)

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
        return self.visual.num_visual_tokens(num_frames, image_hw)

    # ------------------------------------------------------------------ inputs
    def _check_pixels(self, pixels) -> jax.Array:
        pixels = jnp.asarray(pixels, jnp.float32)
        self.visual.check_pixels(pixels.shape)
        return pixels

    def _check_ids(self, input_ids, attention_mask) -> tuple[jax.Array, jax.Array, int]:
        """-> (ids (B, L) int32, mask (B, L) int32, number of <IMG_CONTEXT> placeholders)."""
        ids = np.asarray(input_ids)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"input_ids must be an integer array (B, L), got {ids.dtype}{ids.shape}")
        vocab = self.llm_config.text.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise ValueError(f"input_ids must lie in [0, {vocab})")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask {mask.shape} must match input_ids {ids.shape}")
        n_placeholders = int((ids == self.llm_config.image_token_id).sum())
        return jnp.asarray(ids, jnp.int32), jnp.asarray(mask, jnp.int32), n_placeholders

    def _prompt(self, input_ids, pixels, attention_mask):
        """Checked (ids, visual tokens (Nv, d_llm) | None, mask) for prompts about one clip of pixels."""
        ids, mask, n_placeholders = self._check_ids(input_ids, attention_mask)
        visual = None
        if pixels is not None:
            pixels = self._check_pixels(pixels)
            need = self.num_visual_tokens(pixels.shape[0], pixels.shape[1:3])
            if n_placeholders != need:
                raise ValueError(f"input_ids hold {n_placeholders} <IMG_CONTEXT> (id {self.llm_config.image_token_id}) "
                                 f"placeholders but the {pixels.shape[0]} frame(s) give {need} visual tokens")
            visual = self.encode_frames(pixels)
        elif n_placeholders:
            raise ValueError(f"input_ids hold {n_placeholders} <IMG_CONTEXT> placeholders but no pixels were given")
        return ids, visual, mask

    def _prompt_with_visual(self, input_ids, visual, attention_mask):
        """Checked (ids, visual, mask) for prompts whose placeholders take precomputed tokens (Nv, d_llm)."""
        ids, mask, n_placeholders = self._check_ids(input_ids, attention_mask)
        visual = jnp.asarray(visual)
        d = self.llm_config.text.hidden_size
        if visual.ndim != 2 or visual.shape[1] != d:
            raise ValueError(f"visual tokens must be (N, {d}), got {visual.shape}")
        if n_placeholders != visual.shape[0]:
            raise ValueError(f"input_ids hold {n_placeholders} <IMG_CONTEXT> placeholders but {visual.shape[0]} "
                             "visual tokens were given")
        return ids, visual, mask

    def _need_llm(self):
        if "llm" not in self.params:
            raise ValueError(f"{self.path or 'this model'} is an encoder-only LiteFrame checkpoint (CTD result, no "
                             "LLM): it can encode frames but not score or generate text; run LMA first")

    @staticmethod
    def _check_new_tokens(max_new_tokens) -> None:
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")

    # ------------------------------------------------------------------ public
    def encode_frames(self, pixels) -> jax.Array:
        """pixels (F, H, W, 3) float32, normalized -> LLM-space visual tokens (num_visual_tokens(F), d_llm):
        F * tokens_per_frame for the teacher; ceil(F / frames_per_group) * tokens_per_group otherwise."""
        return encode_frames(self.visual, self.params, self._check_pixels(pixels))

    def logits(self, input_ids, pixels=None, attention_mask=None) -> jax.Array:
        """input_ids (B, L) with <IMG_CONTEXT> placeholders -> logits (B, L, vocab) fp32."""
        self._need_llm()
        ids, visual, mask = self._prompt(input_ids, pixels, attention_mask)
        return _logits(self.llm_config, self.params["llm"], ids, visual, mask)

    def next_token_logprobs(self, input_ids, visual=None, attention_mask=None) -> np.ndarray:
        """Log-probabilities (B, vocab) of the token after each left-padded prompt (B, L); `visual` (Nv, d_llm)
        fills the prompts' <IMG_CONTEXT> placeholders in row-major order (e.g. `encode_frames` outputs of the
        rows' clips, concatenated)."""
        self._need_llm()
        if visual is None:
            ids, visual, mask = self._prompt(input_ids, None, attention_mask)
        else:
            ids, visual, mask = self._prompt_with_visual(input_ids, visual, attention_mask)
        return np.asarray(_next_token_logprobs(self.llm_config, self.params["llm"], ids, visual, mask))

    def continuation_logprobs(self, input_ids, visual, attention_mask, lengths) -> np.ndarray:
        """Summed log-probabilities (B,) of the last lengths[b] tokens of each left-padded row (B, L) (a prompt
        followed by a reply) given what precedes them; `visual` (Nv, d_llm) as in `next_token_logprobs`."""
        self._need_llm()
        ids, visual, mask = self._prompt_with_visual(input_ids, visual, attention_mask)
        lengths = np.asarray(lengths, np.int32)
        if lengths.shape != (ids.shape[0],) or lengths.min() < 1 or lengths.max() >= ids.shape[1]:
            raise ValueError(f"lengths must be (B,) = ({ids.shape[0]},) in [1, L), got {lengths.tolist()}")
        return np.asarray(_continuation_logprobs(self.llm_config, self.params["llm"], ids, visual, mask, lengths))

    def generate(self, input_ids, pixels=None, max_new_tokens: int = 32, attention_mask=None,
                 eos_token_id: int | None | str = "config") -> np.ndarray:
        """Greedy KV-cached decoding. Returns the new tokens (B, max_new_tokens); positions after a sequence's
        end-of-sequence token hold the pad id. Batches may be left-padded (attention_mask 0 on padding)."""
        self._check_new_tokens(max_new_tokens)
        self._need_llm()
        ids, visual, mask = self._prompt(input_ids, pixels, attention_mask)
        return self._decode(ids, visual, mask, max_new_tokens, eos_token_id)

    def generate_from_visual(self, input_ids, visual, max_new_tokens: int = 32, attention_mask=None,
                             eos_token_id: int | None | str = "config") -> np.ndarray:
        """`generate` for a batch of prompts (B, L) whose <IMG_CONTEXT> placeholders take precomputed visual tokens
        (Nv, d_llm) in row-major order (e.g. `encode_frames` of each row's clip, concatenated)."""
        self._check_new_tokens(max_new_tokens)
        self._need_llm()
        ids, visual, mask = self._prompt_with_visual(input_ids, visual, attention_mask)
        return self._decode(ids, visual, mask, max_new_tokens, eos_token_id)

    def _decode(self, ids, visual, mask, max_new_tokens: int, eos_token_id) -> np.ndarray:
        """Greedy decoding of checked prompts; positions after end-of-sequence hold the pad id (else the eos id)."""
        c = self.llm_config
        if ids.shape[1] + max_new_tokens > c.text.max_position_embeddings:
            if c.text.rope_scaling != "none":
                raise ValueError(f"prompt + new tokens exceed max_position_embeddings="
                                 f"{c.text.max_position_embeddings}; dynamic RoPE scaling is not implemented")
            warnings.warn(f"the prompt ({ids.shape[1]} tokens) + {max_new_tokens} new tokens exceed the model's "
                          f"max_position_embeddings={c.text.max_position_embeddings}: positions beyond it were never "
                          "trained and answers may degrade (use fewer frames)", stacklevel=3)
        tokens = np.asarray(_generate(c, self.params["llm"], ids, visual, mask, max_new_tokens))
        eos = c.eos_token_id if eos_token_id == "config" else eos_token_id
        if eos is not None:
            is_eos = tokens == eos
            after = (np.cumsum(is_eos, axis=1) - is_eos) > 0
            tokens = np.where(after, c.pad_token_id if c.pad_token_id is not None else eos, tokens)
        return tokens

    @property
    def pad_token_id(self) -> int:
        """The id that pads prompts and finished answers (the config's pad id, else 0)."""
        pad = self.llm_config.pad_token_id
        return 0 if pad is None else int(pad)

    def batch_prompts(self, prompts, num_rows: int | None = None, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Prompts (1-D int arrays) -> left-padded (ids, attention mask) int32 (num_rows, L), L the longest prompt
        rounded up to `multiple` (so batches reuse compiled shapes); rows past len(prompts) repeat the first."""
        prompts = list(prompts)
        if not prompts:
            raise ValueError("no prompts to batch")
        prompts += [prompts[0]] * ((num_rows or len(prompts)) - len(prompts))
        width = -(-max(len(p) for p in prompts) // multiple) * multiple
        ids = np.full((len(prompts), width), self.pad_token_id, np.int32)
        mask = np.zeros((len(prompts), width), np.int32)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
        return ids, mask

    @property
    def end_token_id(self) -> int | None:
        """The token that ends an answer: the config's eos id, else the tokenizer's <|im_end|> (the tiny configs
        have no eos in the model config)."""
        if self.llm_config.eos_token_id is not None:
            return int(self.llm_config.eos_token_id)
        from liteframe_jax.data.prompts import IM_END
        token_id = self.tokenizer.convert_tokens_to_ids(IM_END)
        return None if token_id is None or token_id == getattr(self.tokenizer, "unk_token_id", None) \
            else int(token_id)

    def answer(self, pixels, question: str, max_new_tokens: int = 32, system_message: str | None = "default",
               tokenizer=None) -> str:
        """Answers `question` about a clip: pixels (F, H, W, 3) normalized frames -> decoded text (up to the
        end-of-turn token). The prompt is InternVL's chat template with one `<img>` block per frame group;
        system_message follows the project's one rule (data.prompts.resolve_system_message): "default" is
        InternVL's, None, "" or "none" leave the system turn out, anything else is used as is. A `tokenizer` given
        here is kept for later calls."""
        from liteframe_jax.data.prompts import decode_answer, resolve_system_message
        from liteframe_jax.data.qa_pipeline import PromptLayout, prompt_ids
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        if tokenizer is not None:
            self._tokenizer = tokenizer
        pixels = self._check_pixels(pixels)
        layout = PromptLayout(self.tokens_per_group(pixels.shape[1:3]), self.frames_per_group)
        ids = prompt_ids(self.tokenizer, question, pixels.shape[0], layout, resolve_system_message(system_message))
        eos = self.end_token_id
        new = self.generate(ids[None], pixels, max_new_tokens=max_new_tokens, eos_token_id=eos)[0]
        return decode_answer(self.tokenizer, new, eos)


def from_params(config: ModelConfig, params, wap: WAPConfig | None = None) -> VideoLLM:
    """A VideoLLM from a model config and its (boxed or plain) parameters; `wap` compresses a teacher's tokens
    post hoc (ValueError for a LiteFrame model)."""
    wap = None if wap is None else wap.validate()
    for_model(config, wap)
    return VideoLLM(config.validate(), jax.tree.map(jnp.asarray, nn.unbox(params)), wap=wap)


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
            cfg, params, _ = load_liteframe(path, dtype)
            return dataclasses.replace(from_params(cfg, params, wap), path=path)
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
    return dataclasses.replace(from_params(cfg, params, wap), path=path)
