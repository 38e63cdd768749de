"""InternVL3-8B teacher at its real sizes: InternViT-300M-448px-V2.5 + pixel shuffle + mlp1 + Qwen2.5-7B.

    --config configs/internvl3_8b.py[:dtype=bfloat16]
"""

from configs.common import model_config_dict, parse_arg
from liteframe_jax.models.config import InternVLConfig, TextConfig, VisionConfig


def get_config(arg: str | None = None):
    args = parse_arg(arg, dtype="bfloat16", attention_impl="xla")
    model = InternVLConfig(
        vision=VisionConfig(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096, image_size=(448, 448),
                            patch_size=14, qkv_bias=True, qkv_layout="fused", qk_norm=False, norm_type="layer_norm",
                            layer_norm_eps=1e-6, select_layer=-1),
        text=TextConfig(vocab_size=151674, hidden_size=3584, num_layers=28, num_heads=28, num_kv_heads=4,
                        mlp_dim=18944, rope_theta=1e6, rope_scaling="dynamic", rope_scaling_factor=2.0,
                        rms_norm_eps=1e-6, max_position_embeddings=32768, tie_word_embeddings=False),
        downsample_ratio=0.5, ps_version="v2", projector_ln_eps=1e-5, image_token_id=151667,
        img_start_token_id=151665, img_end_token_id=151666, eos_token_id=151645, pad_token_id=151643,
        dtype=args.dtype, attention_impl=args.attention_impl)
    config = args
    config.model = model_config_dict(model)
    return config
