"""A tiny InternVL3-shaped teacher for tests and CPU demos (same architecture, toy sizes).

    --config configs/internvl3_tiny.py[:image_size=56,vision_layers=2,text_layers=2,llm=qwen2]

`llm=qwen3` makes it InternVL3.5-shaped: a Qwen3 LLM (per-head q/k RMSNorm, no q/k/v bias, head_dim 24 != 96 / 6);
`llm=internlm3` InternVL3-9B-shaped: an InternLM3 LLM (no biases at all, head_dim 16 = 96 / 6, dynamic NTK RoPE).
"""

from configs.common import model_config_dict, parse_arg
from liteframe_jax.models.config import InternVLConfig, TextConfig, VisionConfig


def get_config(arg: str | None = None):
    args = parse_arg(arg, choices={"llm": ("qwen2", "qwen3", "internlm3")}, image_size=56, vision_layers=2,
                     text_layers=2, vocab_size=512, dtype="float32", attention_impl="xla", llm="qwen2")
    family = {"qwen2": {}, "qwen3": dict(qkv_bias=False, qk_norm=True, explicit_head_dim=24),
              "internlm3": dict(qkv_bias=False, o_mlp_bias=False, explicit_head_dim=16, rope_scaling="dynamic",
                                rope_scaling_factor=6.0, rms_norm_eps=1e-5)}[args.llm]
    model = InternVLConfig(
        vision=VisionConfig(hidden_size=64, num_layers=args.vision_layers, num_heads=4, mlp_dim=256,
                            image_size=(args.image_size, args.image_size), patch_size=14),
        text=TextConfig(vocab_size=args.vocab_size, hidden_size=96, num_layers=args.text_layers, num_heads=6,
                        num_kv_heads=2, mlp_dim=160, max_position_embeddings=4096, **family),
        image_token_id=args.vocab_size - 1, img_start_token_id=args.vocab_size - 3,
        img_end_token_id=args.vocab_size - 2, eos_token_id=None, pad_token_id=0,
        dtype=args.dtype, attention_impl=args.attention_impl)
    config = args
    config.model = model_config_dict(model)
    return config
