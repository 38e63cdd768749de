"""Key-mapping tables between PyTorch InternVL3 checkpoints and our parameter paths, one table per layout.

A rule maps a PyTorch key (regex, full match; `(\\d+)` captures a layer index) to a slash-separated path in our
parameter tree and names the tensor transform. Export reads the same tables backwards.

Transforms (torch tensor -> ours; `t` is our target shape):
  linear     torch Linear weight (out, in) -> kernel (in, *out_dims): transpose, then split `out` as t[1:]
  vector     bias / norm / layer scale (n,) -> t (split as t for fused biases)
  conv       Conv2d weight (O, I, kh, kw) -> (kh, kw, I, O)
  same       identical shape (token embedding)
  squeeze    leading singleton axes dropped: (1, 1, D) -> (D,), (1, N, D) -> (N, D)
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

ORIGINAL = "original"  # OpenGVLab trust_remote_code InternVLChatModel
HF = "hf"  # transformers InternVLForConditionalGeneration, on-disk (legacy) key names


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str
    target: str
    transform: str

    def match(self, key: str) -> str | None:
        m = re.fullmatch(self.pattern, key)
        return None if m is None else self.target.format(*m.groups())

    def torch_key(self, path: str) -> str | None:
        """The reverse of `match`: our parameter path -> the PyTorch key, or None when this rule does not fill it."""
        m = re.fullmatch(re.escape(self.target).replace(r"\{0\}", r"(\d+)"), path)
        if m is None:
            return None
        key = self.pattern.replace(r"(\d+)", m.group(1) if m.groups() else "").replace("\\", "")
        if self.match(key) != path:  # a pattern with regex syntax other than `\.` and `(\d+)` cannot be inverted
            raise ValueError(f"rule {self.pattern!r} -> {self.target!r} cannot be read backwards for {path!r}")
        return key


def _vit_llm_proj(vit: str, layer: str, names: dict, proj: str, llm: str,
                  lm_head: str) -> tuple[Rule, ...]:
    L = rf"{layer}\.(\d+)\."
    rules = [Rule(rf"{vit}\.embeddings\.{names['cls']}", "vision/cls_token", "squeeze"),
             Rule(rf"{vit}\.embeddings\.{names['pos']}", "vision/pos_embed", "squeeze"),
             Rule(rf"{vit}\.embeddings\.{names['patch']}\.weight", "vision/patch_embed/kernel", "conv"),
             Rule(rf"{vit}\.embeddings\.{names['patch']}\.bias", "vision/patch_embed/bias", "vector")]
    for ours, theirs in (("norm1", names["norm1"]), ("norm2", names["norm2"])):
        rules += [Rule(rf"{vit}\.{L}{theirs}\.weight", f"vision/layers_{{0}}/{ours}/scale", "vector"),
                  Rule(rf"{vit}\.{L}{theirs}\.bias", f"vision/layers_{{0}}/{ours}/bias", "vector")]
    attn = names["attn"]
    for ours, theirs in names["qkv"]:
        rules += [Rule(rf"{vit}\.{L}{attn}\.{theirs}\.weight", f"vision/layers_{{0}}/attn/{ours}/kernel", "linear"),
                  Rule(rf"{vit}\.{L}{attn}\.{theirs}\.bias", f"vision/layers_{{0}}/attn/{ours}/bias", "vector")]
    rules += [Rule(rf"{vit}\.{L}{attn}\.{names['out']}\.weight", "vision/layers_{0}/attn/out/kernel", "linear"),
              Rule(rf"{vit}\.{L}{attn}\.{names['out']}\.bias", "vision/layers_{0}/attn/out/bias", "vector"),
              Rule(rf"{vit}\.{L}{attn}\.q_norm\.weight", "vision/layers_{0}/attn/q_norm/scale", "vector"),
              Rule(rf"{vit}\.{L}{attn}\.k_norm\.weight", "vision/layers_{0}/attn/k_norm/scale", "vector"),
              Rule(rf"{vit}\.{L}{names['ls1']}", "vision/layers_{0}/ls1", "vector"),
              Rule(rf"{vit}\.{L}{names['ls2']}", "vision/layers_{0}/ls2", "vector")]
    for fc in ("fc1", "fc2"):
        rules += [Rule(rf"{vit}\.{L}mlp\.{fc}\.weight", f"vision/layers_{{0}}/{fc}/kernel", "linear"),
                  Rule(rf"{vit}\.{L}mlp\.{fc}\.bias", f"vision/layers_{{0}}/{fc}/bias", "vector")]
    p_norm, p_fc1, p_fc2 = names["proj"]
    rules += [Rule(rf"{proj}\.{p_norm}\.weight", "projector/norm/scale", "vector"),
              Rule(rf"{proj}\.{p_norm}\.bias", "projector/norm/bias", "vector"),
              Rule(rf"{proj}\.{p_fc1}\.weight", "projector/fc1/kernel", "linear"),
              Rule(rf"{proj}\.{p_fc1}\.bias", "projector/fc1/bias", "vector"),
              Rule(rf"{proj}\.{p_fc2}\.weight", "projector/fc2/kernel", "linear"),
              Rule(rf"{proj}\.{p_fc2}\.bias", "projector/fc2/bias", "vector")]
    LL = rf"{llm}\.layers\.(\d+)\."
    rules += [Rule(rf"{llm}\.embed_tokens\.weight", "llm/embedding", "same"),
              Rule(rf"{llm}\.norm\.weight", "llm/final_norm/scale", "vector"),
              Rule(rf"{lm_head}\.weight", "llm/lm_head/kernel", "linear"),
              Rule(rf"{LL}input_layernorm\.weight", "llm/layers_{0}/input_norm/scale", "vector"),
              Rule(rf"{LL}post_attention_layernorm\.weight", "llm/layers_{0}/post_attn_norm/scale", "vector"),
              Rule(rf"{LL}self_attn\.o_proj\.weight", "llm/layers_{0}/attn/o/kernel", "linear"),
              Rule(rf"{LL}self_attn\.o_proj\.bias", "llm/layers_{0}/attn/o/bias", "vector"),  # InternLM3 bias=True
              Rule(rf"{LL}self_attn\.q_norm\.weight", "llm/layers_{0}/attn/q_norm/scale", "vector"),  # Qwen3
              Rule(rf"{LL}self_attn\.k_norm\.weight", "llm/layers_{0}/attn/k_norm/scale", "vector")]
    for x in "qkv":
        rules += [Rule(rf"{LL}self_attn\.{x}_proj\.weight", f"llm/layers_{{0}}/attn/{x}/kernel", "linear"),
                  Rule(rf"{LL}self_attn\.{x}_proj\.bias", f"llm/layers_{{0}}/attn/{x}/bias", "vector")]
    for x in ("gate", "up", "down"):
        rules += [Rule(rf"{LL}mlp\.{x}_proj\.weight", f"llm/layers_{{0}}/{x}/kernel", "linear"),
                  Rule(rf"{LL}mlp\.{x}_proj\.bias", f"llm/layers_{{0}}/{x}/bias", "vector")]  # InternLM3 bias=True
    return tuple(rules)


# OpenGVLab layout: fused qkv (rows [q; k; v]) -> our fused (D, 3, D) kernel.
ORIGINAL_RULES = _vit_llm_proj(
    "vision_model", r"encoder\.layers",
    dict(cls="class_embedding", pos="position_embedding", patch="patch_embedding",
         norm1="norm1", norm2="norm2", attn="attn", qkv=(("qkv", "qkv"),), out="proj",
         ls1="ls1", ls2="ls2", proj=("0", "1", "3")),
    proj="mlp1", llm=r"language_model\.model", lm_head=r"language_model\.lm_head")

# transformers layout (on-disk names): split q/k/v.
HF_RULES = _vit_llm_proj(
    "vision_tower", r"encoder\.layer",
    dict(cls="cls_token", pos="position_embeddings", patch=r"patch_embeddings\.projection",
         norm1="layernorm_before", norm2="layernorm_after", attn="attention",
         qkv=(("q", "q_proj"), ("k", "k_proj"), ("v", "v_proj")), out="projection_layer",
         ls1="lambda_1", ls2="lambda_2", proj=("layer_norm", "linear_1", "linear_2")),
    proj="multi_modal_projector", llm=r"language_model\.model", lm_head=r"language_model\.lm_head")

RULES = {ORIGINAL: ORIGINAL_RULES, HF: HF_RULES}

# transformers' in-memory names -> its on-disk names (both are accepted on import).
HF_RUNTIME_PREFIXES = (("model.vision_tower.", "vision_tower."),
                       ("model.multi_modal_projector.", "multi_modal_projector."),
                       ("model.language_model.", "language_model.model."),
                       ("lm_head.", "language_model.lm_head."))

# Buffers some checkpoints carry that are not parameters.
IGNORED = (r".*\.rotary_emb\.inv_freq",)


def detect_layout(keys) -> tuple[str, bool]:
    """Returns (layout, uses_hf_runtime_names). Raises ValueError for unknown or mixed key sets."""
    keys = sorted(keys)
    first = lambda prefixes: next((k for k in keys if k.startswith(prefixes)), None)  # an example key, or None
    orig = first(("vision_model.", "mlp1."))
    runtime = first(("model.vision_tower.", "model.multi_modal_projector.", "model.language_model."))
    disk = first(("vision_tower.", "multi_modal_projector."))
    found = [f"{name}, e.g. {hit!r}" for name, hit in (("OpenGVLab original", orig),
                                                      ("transformers in-memory", runtime),
                                                      ("transformers on-disk", disk)) if hit]
    if len(found) > 1:
        raise ValueError(f"checkpoint mixes key layouts ({'; '.join(found)})")
    if not found:
        raise ValueError("unknown checkpoint layout: expected OpenGVLab InternVL keys (vision_model.*, mlp1.*, "
                         "language_model.*) or transformers InternVL keys (vision_tower.* / model.vision_tower.*, "
                         f"multi_modal_projector.*); first keys found: {keys[:6]}")
    return (ORIGINAL, False) if orig else (HF, runtime is not None)


def find_torch_key(rules: tuple[Rule, ...], path: str) -> tuple[Rule, str]:
    """The one rule that fills our parameter `path`, and its PyTorch key. ValueError for none or several."""
    hits = [(r, k) for r in rules if (k := r.torch_key(path)) is not None]
    if len(hits) != 1:
        what = "no rule" if not hits else f"{len(hits)} rules ({', '.join(k for _, k in hits)})"
        raise ValueError(f"{what} of the key table map(s) to the parameter {path!r}")
    return hits[0]


def normalize_key(key: str, runtime_names: bool) -> str:
    if runtime_names:
        for a, b in HF_RUNTIME_PREFIXES:
            if key.startswith(a):
                return b + key[len(a):]
    return key


# ---------------------------------------------------------------------------------------------- transforms
def source_shape(transform: str, target: tuple[int, ...], source: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape a tensor must have to become `target` under `transform`."""
    if transform == "linear":
        return (int(np.prod(target[1:])), target[0])
    if transform == "vector":
        return (int(np.prod(target)),)
    if transform == "conv":
        return (target[3], target[2], target[0], target[1])
    if transform == "squeeze":
        return (1,) * (len(source) - len(target)) + tuple(target) if len(source) >= len(target) else tuple(target)
    return tuple(target)


# Both squeezed tensors are rank 3 in PyTorch: CLS (1, 1, D) and the position table (1, N, D).
SQUEEZE_TORCH_RANK = 3


def torch_shape(transform: str, ours: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape `to_torch` makes of our tensor of shape `ours` (export; see `source_shape` for import)."""
    if transform == "squeeze":
        return (1,) * (SQUEEZE_TORCH_RANK - len(ours)) + tuple(ours)
    return source_shape(transform, tuple(ours), tuple(ours))


def to_ours(transform: str, x: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    if transform == "linear":
        return np.ascontiguousarray(x.T).reshape(target)
    if transform == "conv":
        return np.ascontiguousarray(x.transpose(2, 3, 1, 0))
    return x.reshape(target)


def to_torch(transform: str, x: np.ndarray, torch_shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `to_ours` (used by export)."""
    if transform == "linear":
        return np.ascontiguousarray(x.reshape(x.shape[0], -1).T)
    if transform == "conv":
        return np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return x.reshape(torch_shape)
