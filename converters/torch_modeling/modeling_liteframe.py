"""PyTorch LiteFrame models (exported from LiteFrame-JAX), loadable with `trust_remote_code=True`.

* `LiteFrameStudentModel` (AutoModel): the video encoder. pixel_values (B, T, 3, H, W) normalized floats, channels
  first -> student tokens (B, T', H', W', C) and LLM-space visual tokens (B, T' * tokens_per_group, d_llm).
* `LiteFrameForConditionalGeneration` (AutoModelForCausalLM): the encoder + the LLM transformers builds for
  `config.text_config` (`Qwen2ForCausalLM`; `Qwen3ForCausalLM`; `LlamaForCausalLM` for InternLM3); every
  `<IMG_CONTEXT>` (config.image_token_id) embedding of `input_ids` is replaced, in row-major (batch, sequence)
  order, by the visual tokens of `pixel_values` (clips in batch order). Generation goes through `GenerationMixin`.

State-dict names: `student.*` (the student), `multi_modal_projector.{layer_norm,linear_1,linear_2}.*` (the teacher's
InternVL `mlp1` under transformers' InternVL names), `language_model.model.*` / `language_model.lm_head.weight`.

The computation mirrors LiteFrame-JAX exactly: a clip of T frames is padded to a multiple of the temporal stride
by repeating its last frame; position tables are resized with linear interpolation at half-pixel centres (as
`jax.image.resize(..., "linear", antialias=False)`); strided convs pad like XLA's SAME (total // 2 before, the rest
after); RoPE positions of a left-padded batch count the real tokens only.

This file may import only torch, transformers and `configuration_liteframe` (it is copied next to the weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from .configuration_liteframe import LiteFrameConfig, LiteFrameStudentConfig


# ---------------------------------------------------------------------------------------------------- helpers
def resize_linear(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Linear resampling of axis `dim` to `size` samples, half-pixel centres, no antialiasing: the weights of
    `jax.image.resize(x, ..., "linear", antialias=False)` (edge samples clamp to the border)."""
    n_in = x.shape[dim]
    if n_in == size:
        return x
    inv_scale = n_in / size
    sample = (torch.arange(size, dtype=torch.float32) + 0.5) * inv_scale - 0.5  # (out,)
    dist = (sample[None, :] - torch.arange(n_in, dtype=torch.float32)[:, None]).abs()  # (in, out)
    w = torch.clamp(1.0 - dist, min=0.0)
    total = w.sum(dim=0, keepdim=True)
    w = torch.where(total.abs() > 1000.0 * torch.finfo(torch.float32).eps, w / torch.where(total != 0, total, 1), 0)
    inside = (sample >= -0.5) & (sample <= n_in - 0.5)
    w = torch.where(inside[None, :], w, 0).to(device=x.device, dtype=x.dtype)
    return torch.movedim(torch.tensordot(torch.movedim(x, dim, -1), w, dims=([-1], [0])), -1, dim)


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """(length, dim) float32: sin on even channels, cos on odd channels (LiteFrame-JAX `sinusoidal_table`)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return table


def pad_frames_to_multiple(x: torch.Tensor, multiple: int, dim: int = 1) -> torch.Tensor:
    """Pads `dim` at its end to a multiple of `multiple` by repeating the last frame."""
    extra = -x.shape[dim] % multiple
    if extra == 0:
        return x
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    return torch.cat([x, last.expand(*[extra if d == dim % x.ndim else -1 for d in range(x.ndim)])], dim=dim)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA 'SAME' padding (before, after) of one axis: out = ceil(size / stride)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pixel_shuffle(grid: torch.Tensor, factor: int, version: str) -> torch.Tensor:
    """(N, gh, gw, C) -> (N, gh/f * gw/f, f*f*C): each f x f block becomes one token with channels ordered
    [(dy, dx)] x C; tokens row-major over the reduced grid (v2) or column-major (v1)."""
    n, gh, gw, c = grid.shape
    if gh % factor or gw % factor:
        raise ValueError(f"token grid {gh}x{gw} is not divisible by the pixel-shuffle factor {factor}")
    x = grid.reshape(n, gh // factor, factor, gw // factor, factor, c)
    x = x.permute(0, 1, 3, 2, 4, 5) if version == "v2" else x.permute(0, 3, 1, 2, 4, 5)
    return x.reshape(n, (gh // factor) * (gw // factor), factor * factor * c)


def grid_to_tokens(grid: torch.Tensor, version: str) -> torch.Tensor:
    """(N, gh, gw, C) -> (N, gh*gw, C) in the order the LLM consumes (column-major for v1)."""
    n, gh, gw, c = grid.shape
    if version != "v2":
        grid = grid.transpose(1, 2)
    return grid.reshape(n, gh * gw, c)


# ---------------------------------------------------------------------------------------------------- student
class TemporalConv(nn.Module):
    """Residual branch LN -> depth-wise conv over time ('same', zero padded). x (B, T, N, D) -> same."""

    def __init__(self, dim: int, kernel: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, d = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(b * n, d, t)
        return self.conv(y).reshape(b, n, d, t).permute(0, 3, 1, 2)


class StudentAttention(nn.Module):
    """Per-frame multi-head self-attention. x (B*T, N, D) -> same."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bt, n, d = x.shape
        q, k, v = (p(x).reshape(bt, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        o = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(o.transpose(1, 2).reshape(bt, n, d))


class StudentMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class StudentBlock(nn.Module):
    """Pre-norm ViT block with per-frame attention and a residual temporal conv. x (B, T, N, D) -> same."""

    def __init__(self, c: LiteFrameStudentConfig):
        super().__init__()
        d = c.hidden_size
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=c.layer_norm_eps), nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.attn = StudentAttention(d, c.num_heads)
        self.mlp = StudentMLP(d, c.mlp_dim)
        self.temporal = TemporalConv(d, c.temporal_kernel, c.layer_norm_eps) if c.temporal_conv else None
        self.temporal_after = c.temporal_conv_position

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, d = x.shape
        x = x + self.attn(self.norm1(x).reshape(b * t, n, d)).reshape(b, t, n, d)
        if self.temporal is not None and self.temporal_after == "after_attn":
            x = x + self.temporal(x)
        x = x + self.mlp(self.norm2(x))
        if self.temporal is not None and self.temporal_after == "after_mlp":
            x = x + self.temporal(x)
        return x


class Downsample(nn.Module):
    """Depth-wise strided 3-D conv (XLA SAME padding) + LayerNorm. x (B, T, h, w, D) -> (B, T/st, h/sh, w/sw, D)."""

    def __init__(self, dim: int, stride, kernel, eps: float):
        super().__init__()
        self.stride, self.kernel = tuple(stride), tuple(kernel)
        self.conv = nn.Conv3d(dim, dim, self.kernel, stride=self.stride, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 4, 1, 2, 3)  # (B, D, T, h, w)
        pads = [same_padding(n, k, s) for n, k, s in zip(y.shape[2:], self.kernel, self.stride)]
        y = F.pad(y, [p for pair in reversed(pads) for p in pair])
        return self.norm(self.conv(y).permute(0, 2, 3, 4, 1))


class LiteFrameStudent(nn.Module):
    """pixels (B, T, C, H, W) normalized -> student tokens (B, ceil(T/st), H/p/sh, W/p/sw, out_dim)."""

    def __init__(self, c: LiteFrameStudentConfig):
        super().__init__()
        self.config = c
        d = c.hidden_size
        self.patch_embed = nn.Conv2d(c.num_channels, d, c.patch_size, stride=c.patch_size)
        self.pos_spatial = nn.Parameter(torch.zeros(*c.grid, d))
        self.pos_temporal = nn.Parameter(torch.zeros(c.num_frames, d)) if c.temporal_pos == "learned" else None
        self.layers = nn.ModuleList(StudentBlock(c) for _ in range(c.num_layers))
        self.downsample = nn.ModuleDict({str(s["after_block"]): Downsample(d, s["stride"], s["kernel"],
                                                                           c.layer_norm_eps) for s in c.downsample})
        self.head_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.head = nn.Linear(d, c.out_dim)

    def positions(self, t: int, gh: int, gw: int) -> torch.Tensor:
        """(T, gh, gw, D): spatial table (+) temporal table, each resized linearly when the size differs."""
        spatial = resize_linear(resize_linear(self.pos_spatial, gh, 0), gw, 1)
        if self.pos_temporal is not None:
            temporal = resize_linear(self.pos_temporal, t, 0)
        elif self.config.temporal_pos == "sinusoidal":
            temporal = sinusoidal_table(t, self.config.hidden_size)
        else:
            temporal = torch.zeros(t, self.config.hidden_size)
        return spatial[None] + temporal.to(spatial)[:, None, None]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        c = self.config
        if pixel_values.ndim != 5 or pixel_values.shape[2] != c.num_channels:
            raise ValueError(f"pixel_values must be (B, T, {c.num_channels}, H, W) (channels first), got "
                             f"{tuple(pixel_values.shape)}")
        b, _, ch, hgt, wid = pixel_values.shape
        p = c.patch_size
        if hgt % p or wid % p:
            raise ValueError(f"frame size {hgt}x{wid} is not a multiple of the patch size {p}")
        x = pad_frames_to_multiple(pixel_values.to(self.patch_embed.weight.dtype), c.stride[0], dim=1)
        t, gh, gw = x.shape[1], hgt // p, wid // p
        x = self.patch_embed(x.reshape(b * t, ch, hgt, wid))  # (B*T, D, gh, gw)
        x = x.permute(0, 2, 3, 1).reshape(b, t, gh, gw, -1)
        x = x + self.positions(t, gh, gw).to(x.dtype)[None]
        for i, block in enumerate(self.layers):
            bt, bh, bw = x.shape[1:4]
            x = block(x.reshape(b, bt, bh * bw, -1)).reshape(b, bt, bh, bw, -1)
            if str(i + 1) in self.downsample:
                x = self.downsample[str(i + 1)](x)
        return self.head(self.head_norm(x))


class LiteFrameProjector(nn.Module):
    """The teacher's InternVL `mlp1`: LayerNorm -> Linear -> exact GELU -> Linear. (..., C_in) -> (..., d_llm)."""

    def __init__(self, in_dim: int, out_dim: int, eps: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_dim, eps=eps)
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.gelu(self.linear_1(self.layer_norm(x))))


class LiteFrameVideoEncoderMixin:
    """Shared by both models: `self.student`, `self.multi_modal_projector` (or None), `self._encoder_config`."""

    def _build_encoder(self, c: LiteFrameStudentConfig) -> None:
        self._encoder_config = c
        self.student = LiteFrameStudent(c)
        self.multi_modal_projector = (LiteFrameProjector(c.projector_in_dim, c.projector_hidden_size,
                                                         c.projector_layer_norm_eps) if c.has_projector else None)

    def check_pixels(self, pixel_values: torch.Tensor) -> None:
        """Raises ValueError unless pixel_values is (B, T, C, H, W) with H, W multiples of the total reduction."""
        c = self._encoder_config
        if pixel_values.ndim != 5 or pixel_values.shape[2] != c.num_channels:
            raise ValueError(f"pixel_values must be (B, T, {c.num_channels}, H, W) (channels first), got "
                             f"{tuple(pixel_values.shape)}")
        hw = pixel_values.shape[-2:]
        step = c.patch_size * c.stride[1] * (c.shuffle_factor if c.location == "pre_shuffle" else 1)
        if hw[0] % step or hw[1] % step:
            raise ValueError(f"frame size {hw[0]}x{hw[1]} must be a multiple of {step} (patch {c.patch_size} x "
                             "total spatial reduction)")

    def get_student_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, T, 3, H, W) -> student tokens (B, T', H', W', out_dim) at `location`."""
        return self.student(pixel_values)

    def tokens_from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """Student tokens (B, T', H', W', C) -> LLM visual tokens (B, T' * tokens_per_group, d_llm)."""
        c = self._encoder_config
        b, t = grid.shape[:2]
        grid = grid.reshape(b * t, *grid.shape[2:])
        if c.location == "pre_shuffle":
            tokens = self.multi_modal_projector(pixel_shuffle(grid, c.shuffle_factor, c.ps_version))
        else:
            tokens = grid_to_tokens(grid, c.ps_version)
            if c.location == "post_shuffle":
                tokens = self.multi_modal_projector(tokens)
        return tokens.reshape(b, t * tokens.shape[1], tokens.shape[-1])

    def get_visual_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, T, 3, H, W) -> LLM-space visual tokens (B, ceil(T/st) * tokens_per_group, d_llm)."""
        self.check_pixels(pixel_values)
        return self.tokens_from_grid(self.student(pixel_values))


def _init_student_params(module: nn.Module, std: float) -> None:
    """Initializes the explicit parameters of the student (the rest is covered by the generic initializer)."""
    from transformers import initialization as init

    if isinstance(module, LiteFrameStudent):
        init.normal_(module.pos_spatial, mean=0.0, std=std)
        if module.pos_temporal is not None:
            init.normal_(module.pos_temporal, mean=0.0, std=std)


# ---------------------------------------------------------------------------------------------------- encoder
@dataclass
class LiteFrameEncoderOutput(ModelOutput):
    """last_hidden_state: student tokens (B, T', H', W', C); visual_tokens: LLM-space tokens (B, N, d_llm)."""

    last_hidden_state: torch.Tensor | None = None
    visual_tokens: torch.Tensor | None = None


class LiteFrameStudentModel(LiteFrameVideoEncoderMixin, PreTrainedModel):
    """The LiteFrame video encoder (student + the teacher's pixel shuffle and projector): a drop-in video encoder
    for the teacher's LLM. forward(pixel_values (B, T, 3, H, W)) -> LiteFrameEncoderOutput."""

    config_class = LiteFrameStudentConfig
    base_model_prefix = "liteframe_encoder"
    main_input_name = "pixel_values"
    _supports_sdpa = True

    def __init__(self, config: LiteFrameStudentConfig):
        super().__init__(config)
        self._build_encoder(config)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        _init_student_params(module, self.config.initializer_range)

    def forward(self, pixel_values: torch.Tensor, return_dict: bool | None = None, **kwargs):
        self.check_pixels(pixel_values)
        grid = self.student(pixel_values)
        out = LiteFrameEncoderOutput(last_hidden_state=grid, visual_tokens=self.tokens_from_grid(grid))
        return out if return_dict is not False else out.to_tuple()


# ---------------------------------------------------------------------------------------------------- Video LLM
def _cache_length(past_key_values) -> int:
    if past_key_values is None:
        return 0
    if hasattr(past_key_values, "get_seq_length"):
        return int(past_key_values.get_seq_length())
    return int(past_key_values[0][0].shape[-2])  # legacy tuple cache


class LiteFrameForConditionalGeneration(LiteFrameVideoEncoderMixin, PreTrainedModel, GenerationMixin):
    """LiteFrame Video LLM: video encoder -> `<IMG_CONTEXT>` embeddings of the LLM (Qwen2 / Qwen3 / InternLM3).

    forward(input_ids (B, L), pixel_values (B_clips, T, 3, H, W) | None, attention_mask (B, L) | None, ...)
    -> CausalLMOutputWithPast (logits (B, L, vocab)). Without `position_ids`, RoPE positions are
    cumsum(attention_mask) - 1 (1 on padding), so left-padded batches are supported."""

    config_class = LiteFrameConfig
    base_model_prefix = "liteframe"
    main_input_name = "input_ids"
    _supports_sdpa = True
    _supports_flash_attn = False
    _no_split_modules = ["StudentBlock", "Qwen2DecoderLayer", "Qwen3DecoderLayer", "LlamaDecoderLayer"]

    def __init__(self, config: LiteFrameConfig):
        super().__init__(config)
        self._build_encoder(config.student_config)
        # transformers' own causal LM class for the text config (Qwen2Config -> Qwen2ForCausalLM, ...)
        self.language_model = MODEL_FOR_CAUSAL_LM_MAPPING[type(config.text_config)](config.text_config)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        _init_student_params(module, self.config.student_config.initializer_range)

    # ------------------------------------------------------------------ embeddings plumbing
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.language_model.set_output_embeddings(value)

    def get_decoder(self):
        return self.language_model.model

    # ------------------------------------------------------------------ inputs
    def merge_visual_tokens(self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor,
                            visual: torch.Tensor) -> torch.Tensor:
        """Replaces the k-th `<IMG_CONTEXT>` embedding (row-major over (B, L)) by visual[k]. visual (..., d)."""
        visual = visual.reshape(-1, visual.shape[-1])
        is_img = input_ids == self.config.image_token_id
        n = int(is_img.sum())
        if n != visual.shape[0]:
            raise ValueError(f"input_ids hold {n} <IMG_CONTEXT> (id {self.config.image_token_id}) placeholders but "
                             f"pixel_values give {visual.shape[0]} visual tokens")
        out = inputs_embeds.clone()
        out[is_img] = visual.to(out.dtype)
        return out

    @staticmethod
    def positions_from_mask(attention_mask: torch.Tensor, length: int) -> torch.Tensor:
        """RoPE positions (B, length) of the last `length` slots of a (B, S) 0/1 mask: real tokens counted from 0,
        padding at position 1 (as LiteFrame-JAX)."""
        mask = attention_mask.long()
        pos = mask.cumsum(-1) - 1
        pos = torch.where(mask > 0, pos, torch.ones_like(pos))
        return pos[:, -length:]

    def forward(self, input_ids: torch.LongTensor | None = None, pixel_values: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, position_ids: torch.LongTensor | None = None,
                past_key_values=None, inputs_embeds: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int | torch.Tensor = 0, **kwargs) -> CausalLMOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        past = _cache_length(past_key_values)
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
            if pixel_values is not None:
                inputs_embeds = self.merge_visual_tokens(input_ids, inputs_embeds,
                                                         self.get_visual_tokens(pixel_values))
            elif past == 0 and bool((input_ids == self.config.image_token_id).any()):
                raise ValueError("input_ids hold <IMG_CONTEXT> placeholders but no pixel_values were given")
        elif pixel_values is not None:
            raise ValueError("pixel_values cannot be combined with inputs_embeds (merge the visual tokens yourself)")
        length = inputs_embeds.shape[1]
        if position_ids is None:
            if attention_mask is not None and attention_mask.ndim == 2:
                position_ids = self.positions_from_mask(attention_mask, length)
            else:
                position_ids = torch.arange(past, past + length, device=inputs_embeds.device)[None]
        return self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   position_ids=position_ids, past_key_values=past_key_values, labels=labels,
                                   use_cache=use_cache, logits_to_keep=logits_to_keep, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      inputs_embeds=None, pixel_values=None, is_first_iteration=False, **kwargs):
        """As GenerationMixin's, plus `pixel_values` on the first (prefill) step only."""
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
            is_first_iteration=is_first_iteration, **kwargs)
        model_inputs.pop("pixel_values", None)
        if is_first_iteration or _cache_length(past_key_values) == 0:
            model_inputs["pixel_values"] = pixel_values
        return model_inputs

    # ------------------------------------------------------------------ convenience
    @torch.no_grad()
    def chat(self, processor, video, question: str, max_new_tokens: int = 64, num_frames: int | None = None,
             system_message: str | None = "config", start: float | None = None, end: float | None = None,
             return_tokens: bool = False):
        """Greedy answer to `question` about `video` (a file path or uint8 frames (T, H, W, 3)), with the exported
        processor (`AutoProcessor.from_pretrained(dir, trust_remote_code=True)`) building the inputs as
        LiteFrame-JAX's `generate` does. Decoding stops at the end-of-turn token (the config's eos id, else
        <|im_end|>). Returns the text, or (text, new token ids) with return_tokens=True."""
        inputs = processor(video, question, num_frames=num_frames, system_message=system_message, start=start,
                           end=end, return_tensors="pt")
        eos = self.config.eos_token_id if self.config.eos_token_id is not None else processor.end_token_id
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else eos
        ids = inputs["input_ids"].to(self.device)
        out = self.generate(input_ids=ids, attention_mask=inputs["attention_mask"].to(self.device),
                            pixel_values=inputs["pixel_values"].to(self.device, self.dtype), do_sample=False,
                            num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad)
        new = out[0, ids.shape[1]:].cpu()
        text = processor.decode_answer(new, eos)
        return (text, new) if return_tokens else text


__all__ = ["LiteFrameStudentModel", "LiteFrameForConditionalGeneration", "resize_linear", "pixel_shuffle"]
