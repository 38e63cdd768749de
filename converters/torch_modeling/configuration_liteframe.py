"""Configurations of the exported (PyTorch) LiteFrame models, loadable with `trust_remote_code=True`.

Two model types:

* `liteframe_student` (`LiteFrameStudentConfig`): the video encoder alone, i.e. the LiteFrame student plus the
  connector that turns its output into LLM tokens: the teacher's pixel shuffle (`downsample_ratio`, `ps_version`)
  and projector (LayerNorm -> Linear -> GELU -> Linear, `projector_hidden_size` wide; absent when the student is
  trained at `location="post_projector"`). `location` says where in the teacher's pipeline the student output lives.
* `liteframe` (`LiteFrameConfig`): the Video LLM, `student_config` (a `LiteFrameStudentConfig`) + `text_config` (the
  LLM's transformers config, chosen by its `model_type`: `Qwen2Config` (InternVL3), `Qwen3Config` (InternVL3.5),
  `InternLM3Config` (InternVL3-9B); default qwen2) + the special token ids.

`liteframe_jax` holds the parts of the LiteFrame-JAX training config that the PyTorch model does not use (e.g. the
teacher's vision tower); the exporter writes it so a round trip back to JAX is exact. PyTorch code ignores it.

This file may import only torch and transformers (it is copied next to the exported weights).
"""

from __future__ import annotations

from transformers import CONFIG_MAPPING, AutoConfig, PretrainedConfig, Qwen2Config

LOCATIONS = ("pre_shuffle", "post_shuffle", "post_projector")

_DEFAULT_DOWNSAMPLE = ({"after_block": 4, "stride": [2, 2, 2], "kernel": [3, 3, 3]},
                       {"after_block": 8, "stride": [2, 1, 1], "kernel": [3, 1, 1]})


# InternVL3-8B's LLM (Qwen2.5-7B with InternVL3's vocabulary): the default `text_config`.
QWEN25_7B = dict(vocab_size=151674, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768, rms_norm_eps=1e-6,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=False)


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, (int, float)) else [int(v[0]), int(v[1])]


class LiteFrameStudentConfig(PretrainedConfig):
    """The LiteFrame video encoder: student (a compact video ViT) + the teacher's connector.

    Student fields: `image_size` [H, W] (native size of the learned position table), `patch_size`, `num_channels`,
    `hidden_size`, `num_layers`, `num_heads`, `mlp_dim`, `layer_norm_eps`, `temporal_conv` (residual depth-wise
    temporal conv in every block), `temporal_kernel`, `temporal_conv_position` ("after_attn" | "after_mlp"),
    `downsample` (list of {"after_block", "stride": [t, h, w], "kernel": [t, h, w]} depth-wise strided 3-D convs),
    `num_frames` (length of the learned temporal position table), `temporal_pos` ("learned" | "sinusoidal" |
    "none"), `out_dim` (student output width = the teacher's width at `location`).
    Connector fields: `location`, `downsample_ratio` (pixel shuffle 1/f), `ps_version` ("v1" | "v2"),
    `vision_hidden_size` (the teacher ViT width), `projector_hidden_size` (LLM width; None: no projector),
    `projector_layer_norm_eps`.
    """

    model_type = "liteframe_student"
    attribute_map = {"num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
                     "intermediate_size": "mlp_dim"}

    def __init__(self, image_size=(448, 448), patch_size=14, num_channels=3, hidden_size=768, num_layers=12,
                 num_heads=12, mlp_dim=3072, layer_norm_eps=1e-6, temporal_conv=True, temporal_kernel=3,
                 temporal_conv_position="after_attn", downsample=_DEFAULT_DOWNSAMPLE, num_frames=16,
                 temporal_pos="learned", out_dim=1024, location="pre_shuffle", downsample_ratio=0.5,
                 ps_version="v2", vision_hidden_size=1024, projector_hidden_size=3584, projector_layer_norm_eps=1e-5,
                 initializer_range=0.02, liteframe_jax=None, **kwargs):
        self.image_size = _pair(image_size)
        self.patch_size = int(patch_size)
        self.num_channels = int(num_channels)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.mlp_dim = int(mlp_dim)
        self.layer_norm_eps = float(layer_norm_eps)
        self.temporal_conv = bool(temporal_conv)
        self.temporal_kernel = int(temporal_kernel)
        self.temporal_conv_position = temporal_conv_position
        self.downsample = [{"after_block": int(s["after_block"]), "stride": [int(x) for x in s["stride"]],
                            "kernel": [int(x) for x in s["kernel"]]} for s in downsample]
        self.num_frames = int(num_frames)
        self.temporal_pos = temporal_pos
        self.out_dim = int(out_dim)
        self.location = location
        self.downsample_ratio = float(downsample_ratio)
        self.ps_version = ps_version
        self.vision_hidden_size = int(vision_hidden_size)
        self.projector_hidden_size = None if projector_hidden_size is None else int(projector_hidden_size)
        self.projector_layer_norm_eps = float(projector_layer_norm_eps)
        self.initializer_range = float(initializer_range)
        self.liteframe_jax = liteframe_jax
        super().__init__(**kwargs)
        self._check()

    # ------------------------------------------------------------------ derived sizes
    @property
    def shuffle_factor(self) -> int:
        return int(round(1.0 / self.downsample_ratio))

    @property
    def stride(self) -> tuple[int, int, int]:
        """Total (t, h, w) downsampling of all stages."""
        t = h = w = 1
        for s in self.downsample:
            t, h, w = t * s["stride"][0], h * s["stride"][1], w * s["stride"][2]
        return t, h, w

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def has_projector(self) -> bool:
        return self.location != "post_projector" and self.projector_hidden_size is not None

    @property
    def projector_in_dim(self) -> int:
        return self.shuffle_factor ** 2 * self.vision_hidden_size

    @property
    def llm_hidden_size(self) -> int:
        """Width of the visual tokens handed to the LLM."""
        return self.out_dim if self.location == "post_projector" else self.projector_hidden_size

    def tokens_per_group(self, image_hw=None) -> int:
        """LLM tokens for one group of `stride[0]` frames of size `image_hw` (default: native)."""
        h, w = image_hw or self.image_size
        _, sh, sw = self.stride
        gh, gw = h // self.patch_size // sh, w // self.patch_size // sw
        f = self.shuffle_factor if self.location == "pre_shuffle" else 1
        return (gh // f) * (gw // f)

    def _check(self) -> None:
        e = []
        if self.location not in LOCATIONS:
            e.append(f"location={self.location!r} must be one of {LOCATIONS}")
        if self.ps_version not in ("v1", "v2"):
            e.append(f"ps_version={self.ps_version!r} must be 'v1' or 'v2'")
        if self.temporal_pos not in ("learned", "sinusoidal", "none"):
            e.append(f"temporal_pos={self.temporal_pos!r} must be learned|sinusoidal|none")
        if self.temporal_conv_position not in ("after_attn", "after_mlp"):
            e.append(f"temporal_conv_position={self.temporal_conv_position!r} must be after_attn|after_mlp")
        if self.hidden_size % self.num_heads:
            e.append(f"num_heads={self.num_heads} does not divide hidden_size={self.hidden_size}")
        if self.temporal_kernel % 2 == 0:
            e.append(f"temporal_kernel={self.temporal_kernel} must be odd")
        if self.location != "post_projector" and self.projector_hidden_size is None:
            e.append(f"location={self.location!r} needs a projector (projector_hidden_size)")
        if e:
            raise ValueError("invalid LiteFrameStudentConfig:\n  - " + "\n  - ".join(e))


class LiteFrameConfig(PretrainedConfig):
    """The LiteFrame Video LLM: `student_config` (LiteFrameStudentConfig, encoder + connector), `text_config`
    (the LLM's Qwen2Config / Qwen3Config / InternLM3Config) and the token ids: `image_token_id` (<IMG_CONTEXT>,
    replaced by visual tokens),
    `img_start_token_id` (<img>), `img_end_token_id` (</img>), `eos_token_id` (<|im_end|>), `pad_token_id`."""

    model_type = "liteframe"
    sub_configs = {"student_config": LiteFrameStudentConfig, "text_config": AutoConfig}

    def __init__(self, student_config=None, text_config=None, image_token_id=151667, img_start_token_id=151665,
                 img_end_token_id=151666, eos_token_id=151645, pad_token_id=151643, tie_word_embeddings=None,
                 liteframe_jax=None, **kwargs):
        if isinstance(student_config, dict):
            student_config = LiteFrameStudentConfig(**student_config)
        elif student_config is None:
            student_config = LiteFrameStudentConfig()
        if isinstance(text_config, dict):
            fields = {k: v for k, v in text_config.items() if k != "model_type"}
            text_config = CONFIG_MAPPING[text_config.get("model_type", "qwen2")](**fields)
        elif text_config is None:
            text_config = Qwen2Config(**QWEN25_7B)
        self.student_config = student_config
        self.text_config = text_config
        self.image_token_id = image_token_id
        self.img_start_token_id = img_start_token_id
        self.img_end_token_id = img_end_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.tie_word_embeddings = (text_config.tie_word_embeddings if tie_word_embeddings is None
                                    else bool(tie_word_embeddings))
        self.liteframe_jax = liteframe_jax
        super().__init__(**kwargs)
        if student_config.llm_hidden_size != text_config.hidden_size:
            raise ValueError(f"the encoder emits {student_config.llm_hidden_size}-wide visual tokens but the LLM "
                             f"hidden size is {text_config.hidden_size}")
