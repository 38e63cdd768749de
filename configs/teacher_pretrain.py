"""Teacher pre-training: the tiny InternVL3-shaped model (vision tower + projector + LLM, all trainable, from
random init) learns the synthetic video-QA domain, standing in for a pretrained InternVL3 in the CPU demo.

    python -m liteframe_jax.train --config configs/teacher_pretrain.py[:frames=8,steps=3000,vision_layers=4]
        --workdir DIR

It is the LMA trainer (config.kind "lma") through the teacher's own visual path with every group trainable; the
trained teacher is written to DIR/model as an InternVL checkpoint (export it to PyTorch with
converters.export_internvl3, use it as teacher.checkpoint of configs/ctd.py and configs/lma.py).
Answers are trained as the right option's text (data.answer_format="text"); evaluate with --method loglik_text.
benchmark: "events" (default; 128-frame clips with brief events) or "shapes". For events, clips=dense trains on
48-frame clips whose every event 12 frames see (data.synthetic_train_clips) and separate asks the event questions
about the clips without the always-visible object (data.synthetic_separate_persistent; README, "The method at toy
scale"); image_size=112 gives 16 visual tokens per frame instead of 4.
The default (the shipped teacher's recipe) trains on dense, separated clips for STAGES: 12 and 20 frames in
turn (a new frame count recompiles the step; the LLM sees both prompt lengths). `stages` takes that form with "/"
between the FRAMES:STEPS items; giving `frames` or `steps` trains one stage instead (frames 12, steps 3000
unless given). For benchmark=shapes the clips are the benchmark's own and `separate` does not apply.
The shipped teacher is the default run followed by SHAPE_STAGE, GROW_STAGE, COUNT_STAGE and PRESENCE_STAGE: the
last three teach it to count brief appearances and to tell which objects appear at all (README, "Teacher
pre-training"). init=DIR starts
from a teacher instead of random init, shape_videos=N adds the persistent-shape questions of N more benchmark train
clips (data.synthetic_extra_videos / synthetic_extra_tasks), extra_videos=N with extra_tasks=TASK+TASK... the
questions of those tasks about N more clips (extra_clips=dense: dense clips; data.synthetic_extra_clips).
text_layers: the LLM's depth (2 unless given); with init=DIR a larger one grows the checkpoint's LLM
(teacher.grow_text_layers: new layers copy its last one with zeroed output projections, so the grown teacher
starts out answering as it did).
"""

from configs import internvl3_tiny, lma
from configs.common import parse_arg
from liteframe_jax.train.experiment import parse_curriculum


STAGES = "12:600/20:400/12:600/20:400/12:500/20:500"
# the shipped teacher's second command: from the first command's teacher, 2500 steps at 12 frames on the same
# data plus the persistent-shape questions of 12000 more benchmark clips (README, "Teacher pre-training")
SHAPE_STAGE = "init=runs/teacher_pretrain/model,shape_videos=12000,frames=12,steps=2500"
# three more commands after it (README, "Teacher pre-training"): from the second command's teacher with its LLM
# grown to 4 layers (the new ones start silent), 2500 steps at 12 frames on the same data plus the persistent-shape
# and event-count questions of 12000 more dense clips with the always-visible object drawn; then 3000 more steps
# with the questions of both tasks about 24000 such clips instead; then 3000 more with the event-presence
# questions of those clips beside them
GROW_STAGE = ("init=runs/teacher_shape/model,text_layers=4,extra_videos=12000,extra_tasks=persistent_shape+event_count,"
              "extra_clips=dense,frames=12,steps=2500")
COUNT_STAGE = ("init=runs/teacher_count/model,extra_videos=24000,extra_tasks=persistent_shape+event_count,"
               "extra_clips=dense,frames=12,steps=3000")
PRESENCE_STAGE = ("init=runs/teacher_count2/model,extra_videos=24000,"
                  "extra_tasks=persistent_shape+event_count+event_presence,extra_clips=dense,frames=12,steps=3000")


def _stages(args) -> list[tuple[int, int]]:
    """(frames, steps) per stage: `stages`, or the one stage `frames:steps` when either is given."""
    if args.frames or args.steps:
        return [(args.frames or 12, args.steps or 3000)]
    try:
        return parse_curriculum(args.stages.replace("/", ","))
    except ValueError as e:
        raise ValueError(f"stages must look like FRAMES:STEPS/FRAMES:STEPS... with frames and steps >= 1 per stage, "
                         f"got {args.stages!r}: {e}") from None


def get_config(arg: str | None = None):
    args = parse_arg(arg, choices={"benchmark": ("events", "shapes"), "clips": ("", "benchmark", "dense"),
                                   "extra_clips": ("benchmark", "dense")}, steps=0,
                     frames=0, stages=STAGES, videos=3000, benchmark="events", batch_size=8, vision_layers=4,
                     text_layers=0, image_size=56, clips="", separate=True, shape_videos=0, extra_videos=0,
                     extra_tasks="", extra_clips="benchmark", init="")
    stages = _stages(args)
    steps, frames = sum(s for _, s in stages), max(f for f, _ in stages)
    if steps < 2 or min(min(s) for s in stages) < 1 or args.videos < 1:
        raise ValueError(f"need steps >= 2 in all, frames and steps >= 1 per stage and videos >= 1, got stages "
                         f"{stages} and videos {args.videos}")
    c = lma.get_config(f"variant=tiny,encoder=teacher,trainable=vision+projector+llm,batch_size={args.batch_size}")
    c.curriculum = ",".join(f"{f}:{s}" for f, s in stages)
    if args.image_size % 56:
        raise ValueError(f"image_size must be a multiple of 56 (whole visual tokens after WAP), got {args.image_size}")
    events = args.benchmark == "events"
    if args.clips == "dense" and not events:
        raise ValueError("clips=dense applies to benchmark=events only")
    c.teacher.model = internvl3_tiny.get_config(f"vision_layers={args.vision_layers},"
                                                f"text_layers={args.text_layers or 2},"
                                                f"image_size={args.image_size}").model
    c.data.image_size = tuple(c.teacher.model.vision.image_size)
    c.optim.peak_lr = 2e-3
    c.optim.warmup_steps = max(1, min(50, steps // 10))
    c.optim.weight_decay = 0.01
    c.data.answer_format = "text"
    c.data.synthetic_benchmark = args.benchmark
    c.data.synthetic_video_frames = 128 if events else 16
    c.data.synthetic_train_videos = args.videos
    c.data.synthetic_train_clips = args.clips or ("dense" if events else "benchmark")
    c.data.synthetic_separate_persistent = args.separate and events
    if args.shape_videos < 0 or args.extra_videos < 0:
        raise ValueError(f"shape_videos and extra_videos must be >= 0, got {args.shape_videos}, {args.extra_videos}")
    if args.shape_videos and (args.extra_videos or args.extra_tasks):
        raise ValueError("give shape_videos (the shape questions of N more clips) or extra_videos + extra_tasks, "
                         "not both")
    c.data.synthetic_extra_videos = args.shape_videos or args.extra_videos
    c.data.synthetic_extra_tasks = (("persistent_shape" if events else "shape") if args.shape_videos
                                    else args.extra_tasks.replace("+", ","))
    c.data.synthetic_extra_clips = args.extra_clips
    c.teacher.checkpoint = args.init
    c.teacher.grow_text_layers = args.text_layers if args.init else 0
    c.data.synthetic_test_videos = 60
    # the longest prompt: (image_size / 28)^2 visual tokens + about 12 text tokens per frame, plus the question
    c.data.max_length = 160 + (12 + (args.image_size // 28) ** 2) * frames
    c.train.log_every = 50
    c.train.eval_every = max(1, steps // 3)
    c.train.eval_batches = 8
    c.train.checkpoint_every = max(1, steps // 5)
    return c
