"""Latency benchmark of the three visual pipelines (teacher, teacher + post-hoc WAP, LiteFrame student).

    python -m experiments.latency --config configs/latency.py[:size=real|small|tiny,dtype=...,attention=...]
        --out DIR [--config.FIELD=VALUE ...]

Arguments after the colon ("+" joins list items):
  size       real (default): InternVL3-8B (InternViT-300M at 448 px + Qwen2.5-7B), the 87M ViT-B student, WAP
             (4, 2, 2) before pixel shuffle; frames 8 ... 512. Meant for an accelerator.
             small: the same architectures scaled down so the whole run takes a couple of minutes on a 2-core CPU:
             224 px frames (64 teacher tokens per frame instead of 256; the teacher, WAP and the student keep the
             real 16x token ratio), InternViT 12 x 256, student 6 x 192 (half the teacher's depth, downsampling
             after blocks 2 and 4 like the real 4 and 8 of 12), Qwen2-style LLM 4 x 512 (GQA 8/2 heads); frames
             4 ... 32.
             tiny: toy sizes for the tests (seconds).
  dtype      float32 | bfloat16; default bfloat16 for size=real, float32 otherwise.
  attention  attention implementation for every model (teacher ViT, student, LLM), e.g. xla, cudnn, chunked,
             pallas; the model configs decide which exist.
  frames     e.g. 8+64+512; pipelines, e.g. teacher+student; stages, vision+prefill (default) or vision or prefill.

Every other field can be set with --config.FIELD=VALUE (e.g. --config.repeats=10, --config.frames=8,16,
--config.max_llm_tokens=40000, --config.teacher.text.num_layers=4). `dtype` and `attention` are the single source
of truth: they override the dtype / attention_impl fields of the model configs.
"""

import ml_collections

from configs import internvl3_8b, internvl3_tiny
from configs.common import model_config_dict, parse_arg
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models.config import DownsampleStage, InternVLConfig, StudentConfig, TextConfig, VisionConfig

SIZES = ("real", "small", "tiny")


def _small_teacher() -> InternVLConfig:
    return InternVLConfig(
        vision=VisionConfig(hidden_size=256, num_layers=12, num_heads=4, mlp_dim=1024, image_size=(224, 224),
                            patch_size=14),
        text=TextConfig(vocab_size=8192, hidden_size=512, num_layers=4, num_heads=8, num_kv_heads=2, mlp_dim=1536,
                        max_position_embeddings=32768),
        image_token_id=8191, img_start_token_id=8189, img_end_token_id=8190, eos_token_id=8188, pad_token_id=0)


def _student(size: str, teacher: InternVLConfig) -> StudentConfig:
    """The student for `size`; out_dim is the teacher's ViT width (the student predicts pre-shuffle tokens)."""
    if size == "real":
        return StudentConfig(out_dim=teacher.vision.hidden_size)
    if size == "small":
        return StudentConfig(image_size=teacher.vision.image_size, hidden_size=192, num_layers=6, num_heads=3,
                             mlp_dim=768, num_frames=16, out_dim=teacher.vision.hidden_size,
                             downsample=(DownsampleStage(2, (2, 2, 2), (3, 3, 3)),
                                         DownsampleStage(4, (2, 1, 1), (3, 1, 1))))
    return StudentConfig(image_size=teacher.vision.image_size, hidden_size=32, num_layers=2, num_heads=4, mlp_dim=64,
                         num_frames=4, out_dim=teacher.vision.hidden_size,
                         downsample=(DownsampleStage(1, (2, 2, 2), (3, 3, 3)),))


def _list(text: str, kind=str) -> tuple:
    return tuple(kind(x) for x in text.replace(",", "+").split("+") if x)


def get_config(arg: str | None = None):
    args = parse_arg(arg, choices={"size": SIZES}, size="real", dtype="", attention="xla", frames="",
                     pipelines="teacher+teacher_wap+student", stages="vision+prefill")
    size = args.size
    dtype = args.dtype or ("bfloat16" if size == "real" else "float32")
    if size == "real":
        teacher = InternVLConfig.from_dict(internvl3_8b.get_config().model.to_dict())
    elif size == "small":
        teacher = _small_teacher()
    else:
        teacher = InternVLConfig.from_dict(internvl3_tiny.get_config().model.to_dict())
    teacher = teacher.replace(dtype=dtype, attention_impl=args.attention)
    student = _student(size, teacher).replace(dtype=dtype, attention_impl=args.attention)
    wap = WAPConfig(window=(2, 2, 2)) if size == "tiny" else WAPConfig()

    c = ml_collections.ConfigDict()
    c.kind = "latency"
    c.size = size
    c.dtype = dtype
    c.attention = args.attention
    c.frames = _list(args.frames, int) or {"real": (8, 16, 32, 64, 128, 256, 512), "small": (4, 8, 16, 32),
                                           "tiny": (2, 4)}[size]
    c.pipelines = _list(args.pipelines)
    c.stages = _list(args.stages)
    # The fixed text prompt: system turn + question + chat-template tokens around the video. Each <img> block
    # also carries its "FrameN: " label and a newline (group_text_tokens) besides the <img> </img> markers.
    c.text_tokens = {"real": 100, "small": 64, "tiny": 16}[size]
    c.group_text_tokens = 5
    c.repeats = {"real": 10, "small": 3, "tiny": 2}[size]
    c.warmup = {"real": 3, "small": 1, "tiny": 1}[size]
    c.seed = 0
    # Longer LLM sequences are recorded as skipped without running (the teacher at 512 frames needs ~135k
    # tokens, twice InternVL3's 64k context with dynamic RoPE); out-of-memory points are skipped as they happen.
    c.max_llm_tokens = 100_000
    c.fused = False  # also time vision + prefill as one jitted program
    c.frames_multiple = 8  # report "pipeline at k x the frames vs the teacher" for this k
    c.matmul_n = {"real": 8192, "small": 1024, "tiny": 256}[size]  # size of the matmul-rate yardstick
    c.teacher = model_config_dict(teacher)
    c.student = ml_collections.ConfigDict(student.to_dict())
    c.location = "pre_shuffle"  # where the student's output lives in the teacher's pipeline
    c.wap = ml_collections.ConfigDict(wap.to_dict())
    return c
