"""Language Model Adaptation: fine-tune the projector and LLM (LoRA or full) on video QA through a visual path.

    python -m liteframe_jax.train --config configs/lma.py[:variant=tiny|8b,encoder=student,...] --workdir DIR

encoder: "student" (LiteFrame; student.checkpoint = the CTD run's DIR/student), "teacher" (InternVL3, 256-style
  tokens per frame) or "teacher_wap" (the teacher + post-hoc WAP compression).
trainable: "+"-joined groups from projector, lora, llm, student, e.g. projector+lora (student at
  optim_student_lr when > 0).
curriculum: "FRAMES:STEPS,FRAMES:STEPS,..." e.g. "64:2000,256:2000,512:1000"; total steps = the sum.
data.frame_store: a QA store directory (python -m experiments.extract_frames --config configs/lma.py ... --out DIR)
  holding every curriculum frame count: frames are read there instead of decoded (same batches); a store that
  does not match the records, a frame count or the sampling is refused before compiling.
variant=tiny (default): tiny random teacher (unless teacher.checkpoint), the built-in tiny tokenizer, the embedded
  synthetic video-QA benchmark; minutes on a CPU. variant=8b: teacher.checkpoint and data.train_file required.
"""

import ml_collections

from configs import internvl3_8b, internvl3_tiny
from configs.common import parse_arg
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.models.lora import LoRAConfig
from liteframe_jax.sharding import DEFAULT_RULES
from liteframe_jax.train.optim import OptimConfig


def get_config(arg: str | None = None):
    args = parse_arg(arg, choices={"variant": ("tiny", "8b")}, variant="tiny",
                     encoder="student", trainable="projector+lora", curriculum="", batch_size=0)
    tiny = args.variant == "tiny"
    c = ml_collections.ConfigDict()
    c.kind = "lma"
    c.variant = args.variant
    c.seed = 0
    c.encoder = args.encoder
    c.trainable = args.trainable
    c.curriculum = args.curriculum or ("8:60" if tiny else "64:2000,256:2000,512:1000")

    c.teacher = ml_collections.ConfigDict()
    c.teacher.checkpoint = ""  # imported InternVL3 dir (projector + LLM [+ ViT for teacher encoders])
    c.teacher.model = (internvl3_tiny if tiny else internvl3_8b).get_config().model
    c.teacher.grow_text_layers = 0  # > 0: deepen the checkpoint's LLM to this many layers (new ones add nothing)
    c.student = ml_collections.ConfigDict()
    c.student.checkpoint = ""  # LiteFrame encoder from CTD (DIR/student); "" = random student (tiny demo only)
    c.wap = ml_collections.ConfigDict(WAPConfig(window=(2, 2, 2) if tiny else (4, 2, 2)).to_dict())  # teacher_wap
    c.lora = ml_collections.ConfigDict(LoRAConfig(rank=8 if tiny else 64, alpha=16.0 if tiny else 128.0).to_dict())

    c.optim = ml_collections.ConfigDict(OptimConfig(peak_lr=2e-3 if tiny else 1e-4, warmup_steps=5 if tiny else 100,
                                                    total_steps=1, weight_decay=0.0).to_dict())
    c.optim_projector_lr = 0.0  # > 0: the projector's own peak lr (paper proposal: 2e-5 with LoRA at 1e-4)
    c.optim_student_lr = 0.0  # > 0: the student's own peak lr when it trains

    c.data = ml_collections.ConfigDict()
    c.data.train_file = ""  # JSONL QA records (liteframe_jax.data.video_qa); "" = embedded synthetic benchmark
    c.data.eval_file = ""
    c.data.tokenizer = ""  # tokenizer dir; "" = the teacher checkpoint's, or the built-in tiny one (tiny variant)
    c.data.image_size = tuple(c.teacher.model.vision.image_size)
    c.data.max_length = 224 if tiny else 16384  # tokens per example; 0: fit, the longest example at each stage
    c.data.sampling = "segment"
    c.data.fps = 1.0
    c.data.decode_threads = 1
    c.data.frame_store = ""  # QA store directory (experiments.extract_frames) to read frames from; "" = decode
    c.data.normalize_on_host = True  # False: uint8 batches, normalized on the accelerator (4x fewer bytes)
    c.data.system_message = "" if tiny else "default"  # "default": InternVL's; "": no system turn; else the text
    c.data.answer_format = "letter"  # "text": reply with the right option's text (evaluate --method loglik_text)
    c.data.synthetic_benchmark = "shapes"  # or "events": 128-frame clips with brief, sparse events
    c.data.synthetic_train_videos = 400
    c.data.synthetic_test_videos = 60
    c.data.synthetic_video_frames = 16  # 128 for "events"
    c.data.synthetic_video_size = 112
    c.data.synthetic_seed = 0
    # events: ask the train split's event questions about its clips without the persistent object (README, "The
    # method at toy scale": with it in the clip a small model learns to push the clip's visible colours down)
    c.data.synthetic_separate_persistent = False
    # events: "dense" trains on 48-frame clips whose every event 12 frames see (synthetic_events.DENSE_FIELDS);
    # "benchmark" on clips like the eval split's
    c.data.synthetic_train_clips = "benchmark"
    # the questions of these tasks (comma-separated) about this many more clips like the eval split's, added to
    # the train split (their clips drawn with seed + 1): weights an under-trained task; 0 = none
    c.data.synthetic_extra_videos = 0
    c.data.synthetic_extra_tasks = ""
    c.data.synthetic_extra_clips = "benchmark"  # events: "dense" draws the extra questions' clips dense instead

    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.sharding_rules = [list(rule) for rule in DEFAULT_RULES]  # the library's table; override per run if needed

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = args.batch_size or (8 if tiny else 64)
    c.train.log_every = 5 if tiny else 20
    c.train.eval_every = 30 if tiny else 1000
    c.train.eval_batches = 2 if tiny else 20
    c.train.checkpoint_every = 20 if tiny else 500
    c.train.keep_checkpoints = 2
    c.train.async_checkpoints = True
    c.train.stop_at_step = -1
    return c
