"""Analytic FLOPs of the three visual pipelines and of the LLM prefill, in closed form.

What is counted: 2 x multiply-accumulates of every matmul and convolution (patch embeddings, q/k/v/out
projections, MLPs, projector, student heads, depth-wise temporal and strided convolutions), the attention score
and value products (4 * L_q * L_k * width per layer, the full masked matrix, i.e. what a dense XLA attention
computes; a causal flash kernel that skips masked blocks does about half of the LLM's share), and the LLM head for
the last position only. The WAP pooling counts 4 FLOPs per pooled input element (squared norm + weighted sum).
Not counted: norms, activations, softmax, RoPE, residual adds, position embeddings, the embedding gather, pixel
shuffle (a reshape). XLA's cost analysis counts those elementwise ops too, so compiler FLOPs come out a little
higher (tests/experiments/test_flops.py bounds the gap).

Every function returns a dict of named parts plus "total" (FLOPs for batch 1). `vision(path, frames)` picks
the vision formula of a visual path (models.visual_path).
"""

from __future__ import annotations

import math
import re
import sys

from liteframe_jax.compression.wap import WAPConfig, compressed_grid_shape
from liteframe_jax.models.config import InternVLConfig, StudentConfig, TextConfig, VisionConfig
from liteframe_jax.models.liteframe import LiteFrameConfig


def _with_total(parts: dict) -> dict:
    return {**{k: float(v) for k, v in parts.items()}, "total": float(sum(parts.values()))}


def transformer_block(tokens: int, seqs: int, width: int, mlp: int, mlp_matrices: int = 2) -> dict:
    """One pre-norm block over `seqs` independent sequences of `tokens` tokens: q/k/v/out projections
    (8 n D^2), attention scores + values (4 n^2 D) and an MLP of `mlp_matrices` (D x M) matrices."""
    n, d = tokens, width
    return {"projections": seqs * 8 * n * d * d, "attention": seqs * 4 * n * n * d,
            "mlp": seqs * 2 * mlp_matrices * n * d * mlp}


def internvit(v: VisionConfig, frames: int, image_hw: tuple[int, int] | None = None) -> dict:
    """InternViT on `frames` frames: patch embedding + the blocks up to `select_layer` (CLS token included)."""
    h, w = image_hw or v.image_size
    patches = (h // v.patch_size) * (w // v.patch_size)
    embed = 2 * frames * patches * v.patch_size ** 2 * v.num_channels * v.hidden_size
    block = transformer_block(1 + patches, frames, v.hidden_size, v.mlp_dim)
    layers = v.num_blocks_run
    return _with_total({"patch_embed": embed, **{k: layers * x for k, x in block.items()}})


def projector(cfg: InternVLConfig, tokens: int, in_dim: int | None = None) -> dict:
    """The mlp1 projector (in_dim -> d_llm -> d_llm) on `tokens` tokens; in_dim defaults to f^2 * Dv."""
    d = cfg.text.hidden_size
    in_dim = in_dim or cfg.shuffle_factor ** 2 * cfg.vision.hidden_size
    return _with_total({"projector": 2 * tokens * (in_dim * d + d * d)})


def wap_pooling(cfg: WAPConfig, grid: tuple[int, int, int, int]) -> dict:
    """WAP over a (T, H, W, C) grid (T padded up to a multiple of kt): norms + weighted sum, 4 per element."""
    t, h, w, c = grid
    kt = cfg.window[0]
    return _with_total({"wap": 4 * math.ceil(t / kt) * kt * h * w * c})


def teacher_vision(cfg: InternVLConfig, frames: int) -> dict:
    """InternViT per frame, pixel shuffle, projector: `frames` x tokens_per_frame LLM tokens."""
    vit = internvit(cfg.vision, frames)
    proj = projector(cfg, frames * cfg.tokens_per_frame())
    return _with_total({"encoder": vit["total"], "projector": proj["total"]})


def teacher_wap_vision(cfg: InternVLConfig, wap: WAPConfig, frames: int) -> dict:
    """InternViT per frame, then WAP at `wap.location` (before/after pixel shuffle or after the projector)."""
    vit = internvit(cfg.vision, frames)
    v, f = cfg.vision, cfg.shuffle_factor
    gh, gw = v.grid
    out_t, out_h, out_w, _ = compressed_grid_shape(wap, cfg, frames)
    if wap.location == "pre_shuffle":
        pool = wap_pooling(wap, (frames, gh, gw, v.hidden_size))
        proj = projector(cfg, out_t * (out_h // f) * (out_w // f))
    elif wap.location == "post_shuffle":
        pool = wap_pooling(wap, (frames, gh // f, gw // f, f * f * v.hidden_size))
        proj = projector(cfg, out_t * out_h * out_w)
    else:
        proj = projector(cfg, frames * cfg.tokens_per_frame())
        pool = wap_pooling(wap, (frames, gh // f, gw // f, cfg.text.hidden_size))
    return _with_total({"encoder": vit["total"], "wap": pool["total"], "projector": proj["total"]})


def student_encoder(s: StudentConfig, frames: int) -> dict:
    """The LiteFrame student on `frames` frames (padded to a multiple of its temporal stride): patch embedding,
    blocks with per-frame attention over the current grid, temporal convs, strided depth-wise downsampling, head."""
    t = math.ceil(frames / s.stride[0]) * s.stride[0]
    h, w = s.grid
    d = s.hidden_size
    parts = {"patch_embed": 2 * t * h * w * s.patch_size ** 2 * s.num_channels * d, "projections": 0,
             "attention": 0, "mlp": 0, "temporal_conv": 0, "downsample": 0}
    stages = {st.after_block: st for st in s.downsample}
    for i in range(s.num_layers):
        for k, x in transformer_block(h * w, t, d, s.mlp_dim).items():
            parts[k] += x
        if s.temporal_conv:
            parts["temporal_conv"] += 2 * s.temporal_kernel * t * h * w * d
        if i + 1 in stages:
            st = stages[i + 1]
            t, h, w = math.ceil(t / st.stride[0]), math.ceil(h / st.stride[1]), math.ceil(w / st.stride[2])
            parts["downsample"] += 2 * math.prod(st.kernel) * t * h * w * d
    parts["head"] = 2 * t * h * w * d * s.out_dim
    return _with_total(parts)


def student_vision(cfg: LiteFrameConfig, frames: int) -> dict:
    """Student, then (pixel shuffle +) the teacher's projector, as LiteFrameVLM.encode_video."""
    enc = student_encoder(cfg.student, frames)
    t_out, h, w, c = cfg.student.output_shape(frames)
    f = cfg.teacher.shuffle_factor
    if cfg.location == "pre_shuffle":
        proj = projector(cfg.teacher, t_out * (h // f) * (w // f), f * f * c)["total"]
    elif cfg.location == "post_shuffle":
        proj = projector(cfg.teacher, t_out * h * w, c)["total"]
    else:
        proj = 0
    return _with_total({"encoder": enc["total"], "projector": proj})


def qwen2_prefill(t: TextConfig, seq_len: int, last_only: bool = True) -> dict:
    """Prefill of `seq_len` tokens: GQA projections, dense causal-masked attention, SwiGLU MLP (3 matrices),
    and the LM head on the last position (all positions when not last_only)."""
    n, d, hd = seq_len, t.hidden_size, t.head_dim
    q_dim, kv_dim = t.num_heads * hd, t.num_kv_heads * hd
    per_layer = {"projections": 2 * n * d * (2 * q_dim + 2 * kv_dim),
                 "attention": 4 * n * n * q_dim,
                 "mlp": 2 * 3 * n * d * t.mlp_dim}
    parts = {k: t.num_layers * x for k, x in per_layer.items()}
    parts["lm_head"] = 2 * (1 if last_only else n) * d * t.vocab_size
    return _with_total(parts)


def vision(path, frames: int) -> dict:
    """Vision-stage FLOPs of a visual path (models.visual_path) at `frames` frames: the path picks its formula
    above (`VisualPath.vision_flops`)."""
    return path.vision_flops(sys.modules[__name__], frames)


# ------------------------------------------------------------------------------------------------ from a program

_OP = re.compile(r"stablehlo\.(dot_general|convolution)\b")
_TYPES = re.compile(r":\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)\s*->\s*(tensor<[^>]*>)")
_CALL = re.compile(r"\bcall @([\w.$-]+)\(")
_FUNC = re.compile(r"func\.func\s+(?:public\s+|private\s+)?@([\w.$-]+)\(")


def _shape(tensor_type: str) -> list[int]:
    dims = tensor_type[len("tensor<"):-1].split("x")[:-1]  # the last item is the element type
    return [int(d) for d in dims]


def _op_flops(line: str) -> int:
    lhs, rhs, out = (_shape(t) for t in _TYPES.search(line).groups())
    if "dot_general" in line:
        contracting = re.search(r"contracting_dims = \[([\d, ]*)\] x", line).group(1)
        k = math.prod(lhs[int(i)] for i in contracting.split(",") if i.strip())
        return 2 * math.prod(out) * k
    # convolution: every output element takes kernel-spatial x in-features-per-group MACs (rhs has one 'o' axis)
    rhs_spec = re.search(r"\]x\[([^\]]*)\]->", line).group(1).replace(" ", "").split(",")
    return 2 * math.prod(out) * math.prod(rhs) // rhs[rhs_spec.index("o")]


def lowered_matmul_flops(text: str) -> float:
    """2 x MACs of every dot_general and convolution of a lowered program (`jitted.lower(...).as_text()`,
    StableHLO), with calls to private functions expanded: the matmul share that the formulas above count, read
    off the program itself (elementwise ops excluded, unlike XLA's cost analysis)."""
    own: dict[str, int] = {}
    calls: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        func = _FUNC.search(line)
        if func:
            current = func.group(1)
            own.setdefault(current, 0)
            calls.setdefault(current, [])
            continue
        if current is None:
            continue
        if _OP.search(line):
            own[current] += _op_flops(line)
        calls[current] += _CALL.findall(line)

    def total(name: str) -> int:
        return own.get(name, 0) + sum(total(c) for c in calls.get(name, []))

    return float(total("main"))
