"""An experiment config (an ml_collections ConfigDict of configs/ctd.py or configs/lma.py) -> the typed, validated
pieces that training (the CTD and LMA tasks), memory planning (experiments.memory_plan) and teacher-target
precompute (experiments.precompute_teacher) build from: the one parser of experiment configs.

Parsing needs the config alone: model shapes come from config.teacher.model / config.student, or from a set
teacher.checkpoint / student.checkpoint's metadata (never its weights). With `for_run=True` (training, precompute)
it also checks what only a run needs: a teacher checkpoint outside the tiny demo, the CTD student's data path,
the LMA student checkpoint and train file outside the tiny demo. Plans pass `for_run=False`.
"""

from __future__ import annotations

import dataclasses

from liteframe_jax.checkpoints import store
from liteframe_jax.checkpoints.liteframe_store import read_liteframe_metadata
from liteframe_jax.compression.wap import WAPConfig
from liteframe_jax.data.pipeline import DataConfig
from liteframe_jax.data.video_qa import SYNTHETIC_TASKS
from liteframe_jax.losses.ctd import CTDLossConfig
from liteframe_jax.models.config import InternVLConfig, StudentConfig
from liteframe_jax.models.liteframe import LiteFrameConfig
from liteframe_jax.models.lora import LoRAConfig
from liteframe_jax.models.visual_path import configs_needed
from liteframe_jax.train.ctd_step import CTDSetup
from liteframe_jax.train.lma_step import LMASetup
from liteframe_jax.train.optim import OptimConfig
from liteframe_jax.train.task import LoopConfig
from liteframe_jax.train.tiny_demo import tiny_student, tiny_wap


@dataclasses.dataclass(frozen=True)
class CTDExperiment:
    setup: CTDSetup
    optim: OptimConfig
    data: DataConfig
    loop: LoopConfig


@dataclasses.dataclass(frozen=True)
class LMAExperiment:
    setup: LMASetup
    optim: OptimConfig  # total_steps: the curriculum's
    curriculum: list[tuple[int, int]]  # (frames, steps) per stage
    group_lrs: dict[str, float]  # trainable groups with their own peak lr
    loop: LoopConfig


def teacher_model(config, for_run: bool = True) -> InternVLConfig:
    """The teacher's architecture: its imported checkpoint's (at config.teacher.model.dtype; with
    teacher.grow_text_layers N > 0 its LLM N layers deep, the new ones added by train.teacher.grown_llm) when
    teacher.checkpoint is set, otherwise config.teacher.model. ValueError for a non-InternVL checkpoint, or (for a
    run) no checkpoint outside the tiny demo."""
    ckpt, grow = config.teacher.checkpoint, config.teacher.get("grow_text_layers", 0)
    if ckpt:
        meta = store.read_metadata(ckpt)
        if meta["kind"] != "internvl":
            raise ValueError(f"teacher.checkpoint {ckpt} holds a {meta['kind']!r} checkpoint; expected an imported "
                             "InternVL3 (converters.import_internvl3)")
        cfg = InternVLConfig.from_dict(meta["model"]).replace(dtype=config.teacher.model.dtype)
        if grow:
            if grow < cfg.text.num_layers:
                raise ValueError(f"teacher.grow_text_layers={grow} is fewer than the checkpoint's "
                                 f"{cfg.text.num_layers} LLM layers")
            cfg = cfg.replace(text=cfg.text.replace(num_layers=grow))
        return cfg.validate()
    if grow:
        raise ValueError("teacher.grow_text_layers deepens a teacher.checkpoint's LLM; none is set")
    if for_run and config.variant != "tiny":
        raise ValueError("teacher.checkpoint is required (import one with converters.import_internvl3); random "
                         "teachers are only allowed for the tiny demo variant")
    return InternVLConfig.from_dict(config.teacher.model.to_dict()).validate()


def variant_encoder(variant: str) -> tuple[StudentConfig, WAPConfig]:
    """The student and WAP a CTD run of `variant` distills: the tiny demo's, or the 87M student with WAP (4, 2, 2)
    before pixel shuffle (configs/ctd.py starts from these)."""
    if variant == "tiny":
        return tiny_student(), tiny_wap()
    return StudentConfig(dtype="bfloat16"), WAPConfig()


def liteframe_model(config, teacher: InternVLConfig, for_run: bool = True) -> LiteFrameConfig:
    """The LiteFrame encoder of encoder=student: the student checkpoint's (with `teacher`) when student.checkpoint
    is set, otherwise the one a CTD run of the config's variant distills (a run allows that only for the tiny
    demo's random student)."""
    if config.student.checkpoint:
        meta = read_liteframe_metadata(config.student.checkpoint)
        return dataclasses.replace(LiteFrameConfig.from_dict(meta["model"]), teacher=teacher).validate()
    if for_run and config.variant != "tiny":
        raise ValueError("student.checkpoint (a CTD run's DIR/student) is required for encoder=student")
    student, wap = variant_encoder(config.variant)
    return LiteFrameConfig(student, teacher, wap.location).validate()


def trainable_groups(config) -> tuple[str, ...]:
    """config.trainable ("projector+lora", commas allowed) as a tuple of group names."""
    return tuple(x for x in config.trainable.replace(" ", "").replace(",", "+").split("+") if x)


def parse_curriculum(text: str) -> list[tuple[int, int]]:
    """"64:2000,256:1000" -> [(64 frames, 2000 steps), (256, 1000)]."""
    stages = []
    for item in filter(None, text.replace(" ", "").split(",")):
        try:
            frames, steps = (int(x) for x in item.split(":"))
        except ValueError:
            raise ValueError(f"curriculum item {item!r} must be FRAMES:STEPS (integers)") from None
        if frames < 1 or steps < 1:
            raise ValueError(f"curriculum item {item!r}: frames and steps must be >= 1")
        stages.append((frames, steps))
    if not stages:
        raise ValueError("curriculum is empty; give FRAMES:STEPS[,FRAMES:STEPS...]")
    return stages


def extra_questions_problems(data) -> list[str]:
    """What is wrong with data.synthetic_extra_videos / synthetic_extra_tasks (the extra train questions of
    qa_data.extra_synthetic_questions); [] when they are fine or unused."""
    videos, tasks = data.get("synthetic_extra_videos", 0), data.get("synthetic_extra_tasks", "")
    if videos < 0:
        return [f"data.synthetic_extra_videos must be >= 0, got {videos}"]
    if not videos:
        return [f"data.synthetic_extra_tasks is {tasks!r} but data.synthetic_extra_videos is 0: set the number of "
                f"clips to draw them from, or clear the tasks"] if tasks else []
    if data.train_file:
        return ["data.synthetic_extra_videos applies to the embedded synthetic benchmark only (no data.train_file)"]
    known = SYNTHETIC_TASKS.get(data.synthetic_benchmark, ())
    unknown = sorted(set(tasks.split(",")) - set(known))
    if not tasks or unknown:
        return [f"data.synthetic_extra_tasks must name tasks of the {data.synthetic_benchmark!r} benchmark "
                f"(comma-separated, from {', '.join(known)}), got {tasks!r}"]
    return []


def _raise(kind: str, errors: list[str]) -> None:
    if errors:
        raise ValueError(f"invalid {kind} config:\n  - " + "\n  - ".join(errors))


def parse_ctd(config, frames: int | None = None, for_run: bool = True, process_count: int = 1) -> CTDExperiment:
    """A CTD config's pieces, each validated and checked against the others; `frames` replaces the clip length
    (student.num_frames and data.num_frames). ValueError (ConfigError for one piece) naming every problem."""
    teacher = teacher_model(config, for_run)
    student = StudentConfig.from_dict(config.student.to_dict())
    data = DataConfig.from_dict(config.data.to_dict())
    if frames is not None:
        student, data = student.replace(num_frames=frames), data.replace(num_frames=frames)
    setup = CTDSetup(student, teacher, WAPConfig.from_dict(config.wap.to_dict()),
                     CTDLossConfig.from_dict(config.loss.to_dict())).validate()
    optim = OptimConfig.from_dict(config.optim.to_dict()).validate()
    data = data.validate(require_path=for_run)
    t = config.train
    loop = LoopConfig.from_config(t)
    errors = loop.problems(process_count)
    if t.total_steps != optim.total_steps:
        errors.append(f"train.total_steps={t.total_steps} != optim.total_steps={optim.total_steps}")
    if data.num_frames != student.num_frames or tuple(data.image_size) != tuple(student.image_size):
        errors.append(f"data clips ({data.num_frames} x {tuple(data.image_size)}) must match the student "
                      f"({student.num_frames} x {student.image_size})")
    if t.stats_batches < 1:
        errors.append(f"train.stats_batches={t.stats_batches} must be >= 1")
    _raise("CTD", errors)
    return CTDExperiment(setup, optim, data, loop)


def parse_lma(config, for_run: bool = True, process_count: int = 1) -> LMAExperiment:
    """An LMA config's pieces, each validated and checked against the others: the setup (visual path, trainable
    groups, LoRA), the optimizer over the curriculum's total steps, the curriculum and the per-group lrs."""
    teacher = teacher_model(config, for_run)
    trainable = trainable_groups(config)
    lora = LoRAConfig.from_dict(config.lora.to_dict()) if "lora" in trainable else None
    need = configs_needed(config.encoder)
    liteframe = liteframe_model(config, teacher, for_run) if "liteframe" in need else None
    wap = WAPConfig.from_dict(config.wap.to_dict()).validate() if "wap" in need else None
    setup = LMASetup(config.encoder, teacher, trainable, liteframe, wap, lora).validate()
    curriculum = parse_curriculum(config.curriculum)
    total = sum(s for _, s in curriculum)
    optim = OptimConfig.from_dict({**config.optim.to_dict(), "total_steps": total,
                                   "warmup_steps": min(config.optim.warmup_steps, total - 1)}).validate()
    loop = LoopConfig.from_config(config.train)
    errors = loop.problems(process_count)
    if for_run and config.variant != "tiny" and not config.data.train_file:
        errors.append("data.train_file (JSONL QA records) is required outside the tiny demo")
    embedded_events = not config.data.train_file and config.data.synthetic_benchmark == "events"
    clips = config.data.get("synthetic_train_clips", "benchmark")
    extra_clips = config.data.get("synthetic_extra_clips", "benchmark")
    for field, value in (("synthetic_train_clips", clips), ("synthetic_extra_clips", extra_clips)):
        if value not in ("benchmark", "dense"):
            errors.append(f"data.{field} must be 'benchmark' or 'dense', got {value!r}")
    for field, used in (("synthetic_separate_persistent", config.data.get("synthetic_separate_persistent", False)),
                        ("synthetic_train_clips='dense'", clips == "dense"),
                        ("synthetic_extra_clips='dense'", extra_clips == "dense")):
        if used and not embedded_events:
            errors.append(f"data.{field} applies to the embedded events benchmark only (no data.train_file, "
                          "data.synthetic_benchmark='events')")
    errors += extra_questions_problems(config.data)
    _raise("LMA", errors)
    group_lrs = {k: v for k, v in (("projector", config.optim_projector_lr), ("student", config.optim_student_lr))
                 if v > 0 and k in trainable}
    return LMAExperiment(setup, optim, curriculum, group_lrs, loop)
