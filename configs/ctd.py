"""Compressed Token Distillation: train the LiteFrame student to predict WAP-compressed teacher tokens.

    python -m liteframe_jax.train --config configs/ctd.py[:variant=tiny|8b,...] --workdir DIR [--config.X=V ...]

variant=tiny (default): tiny InternVL3-shaped teacher (random weights unless teacher.checkpoint is set), tiny
  student, embedded synthetic videos; runs on a laptop CPU in about a minute.
variant=8b: InternVL3-8B teacher (teacher.checkpoint required: an imported checkpoint dir), the 87M student, WAP
  (4, 2, 2) before pixel shuffle (16 tokens/frame), a video manifest (data.path required).
"""

import ml_collections

from configs import internvl3_8b, internvl3_tiny
from configs.common import parse_arg
from liteframe_jax.losses.ctd import CTDLossConfig
from liteframe_jax.sharding import DEFAULT_RULES
from liteframe_jax.train.experiment import variant_encoder
from liteframe_jax.train.optim import OptimConfig


def get_config(arg: str | None = None):
    args = parse_arg(arg, choices={"variant": ("tiny", "8b")}, variant="tiny", steps=0, batch_size=0)
    tiny = args.variant == "tiny"
    c = ml_collections.ConfigDict()
    c.kind = "ctd"
    c.variant = args.variant
    c.seed = 0

    c.teacher = ml_collections.ConfigDict()
    c.teacher.checkpoint = ""  # imported teacher dir (converters.import_internvl3); "" = random init (tiny only)
    c.teacher.model = (internvl3_tiny if tiny else internvl3_8b).get_config().model

    student, wap = variant_encoder(args.variant)
    c.student = ml_collections.ConfigDict(student.to_dict())
    # optional image ViT (HF ViT / CLIP / SigLIP safetensors dir) for the student's spatial part; "" = random
    c.student_init_checkpoint = ""
    c.wap = ml_collections.ConfigDict(wap.to_dict())
    c.loss = ml_collections.ConfigDict(CTDLossConfig().to_dict())
    steps = args.steps or (40 if tiny else 100_000)
    c.optim = ml_collections.ConfigDict(OptimConfig(
        peak_lr=3e-3 if tiny else 5e-4, warmup_steps=max(1, steps // 20), total_steps=steps).to_dict())

    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic" if tiny else "manifest"
    c.data.path = ""
    c.data.num_frames = student.num_frames
    c.data.image_size = student.image_size
    c.data.sampling = "segment"
    c.data.fps = 1.0
    c.data.decode_threads = 1
    c.data.num_workers = 0 if tiny else 8
    c.data.shuffle = True
    c.data.seed = 0
    c.data.synthetic_videos = 256
    c.data.synthetic_kind = "shapes"  # or "events": windows of the long clips with brief events
    c.data.eval_fraction = 0.1
    c.data.random_resized_crop_scale = (0.5, 1.0)
    c.data.hflip = True
    c.data.frame_store = ""  # frame store from experiments.extract_frames; "" = decode the videos
    c.data.normalize_on_host = True  # False: uint8 batches, normalized on the accelerator (4x fewer bytes)

    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.sharding_rules = [list(rule) for rule in DEFAULT_RULES]  # the library's table; override per run if needed

    c.train = ml_collections.ConfigDict()
    c.train.total_steps = steps
    c.train.batch_size = args.batch_size or (8 if tiny else 256)  # global, over all processes
    c.train.log_every = 5 if tiny else 50
    c.train.eval_every = 20 if tiny else 2000
    c.train.eval_batches = 2 if tiny else 20
    c.train.checkpoint_every = 10 if tiny else 1000
    c.train.keep_checkpoints = 3
    c.train.async_checkpoints = True
    c.train.stats_batches = 4 if tiny else 40  # batches used once to estimate the targets' channel statistics
    c.train.target_cache = ""  # tensorstore cache from experiments.precompute_teacher; "" = run the teacher online
    c.train.stop_at_step = -1  # >= 0: stop as if interrupted after this step (for resume tests)
    return c
