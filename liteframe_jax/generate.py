"""Answer one question about one video with a LiteFrame or InternVL3 checkpoint.

    python -m liteframe_jax.generate --checkpoint DIR --video FILE|synthetic:SEED:INDEX --question "..." \\
        [--frames 8] [--max_new_tokens 64] [--system_message default|none|TEXT] [--start S --end E] \\
        [--dtype auto|float32|bfloat16]

DIR is our checkpoint (LiteFrame after LMA, or an imported InternVL3 teacher, with or without post-hoc WAP) or a
PyTorch InternVL3 directory (imported on the fly); it must hold an LLM and tokenizer files. The video is decoded
with PyAV (or rendered, for the embedded synthetic videos "synthetic:<seed>:<index>"), --frames frames are taken
with InternVL's segment-middle rule (the middle frame of each of N equal segments of [start, end], or of the
whole video), resized to the model's image size and laid out as InternVL's chat prompt: one `<img>` block per
frame group (1 frame for the teacher, frames_per_group frames for LiteFrame). --frames defaults to 8 for every
model (8 is a whole number of groups for LiteFrame's usual 2- or 4-frame groups; a short last group is allowed).

Asking for more frames than the video (or the [start, end] span) has is not an error: InternVL's segment rule
then repeats frames (8 frames of a 4-frame video are frames 0,0,1,1,2,2,2,3), exactly as the reference does.

Greedy decoding stops at the end-of-turn token (<|im_end|>) or after --max_new_tokens. The answer goes to stdout;
timings go to stderr. Errors (missing or unreadable video, empty question, not a checkpoint, an encoder-only
checkpoint without an LLM) print `error: ...` and exit 1.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_FRAMES = 8
DEFAULT_MAX_NEW_TOKENS = 64
_SYNTHETIC = "synthetic:"


# ---------------------------------------------------------------------------------------------------- library

def system_message_arg(value: str | None) -> str | None:
    """--system_message value -> the system text (data.prompts.resolve_system_message: "default" = InternVL's,
    "none" or "" = no system turn, else the text itself)."""
    from liteframe_jax.data.prompts import resolve_system_message
    return resolve_system_message(value)


def check_checkpoint(path: str | os.PathLike) -> None:
    """Cheap checks before loading weights: ValueError unless `path` is a checkpoint with an LLM (or an InternVL3
    Hugging Face directory)."""
    from liteframe_jax.checkpoints import store
    p = Path(path)
    if not p.exists():
        raise ValueError(f"checkpoint {str(p)!r} does not exist")
    if not store.is_checkpoint(p):
        if (p / "config.json").is_file():
            return  # a PyTorch InternVL3 directory; lf.load imports it
        raise ValueError(f"{str(p)!r} is not a LiteFrame-JAX checkpoint (no liteframe.json + params/) nor an "
                         "InternVL3 directory with config.json")
    meta = store.read_metadata(p)
    if meta.get("kind") not in ("liteframe", "internvl"):
        raise ValueError(f"{str(p)!r} holds a {meta.get('kind')!r} checkpoint, not an InternVL or LiteFrame model")
    if meta["kind"] == "liteframe" and not meta.get("with_llm", True):
        raise ValueError(f"{str(p)!r} is an encoder-only LiteFrame checkpoint (CTD result, no LLM): it cannot "
                         "answer questions; use the model written by LMA (WORKDIR/model)")


def load_model(path: str | os.PathLike, dtype: str | None = None):
    """check_checkpoint + lf.load + the checkpoint's tokenizer -> VideoLLM (tokenizer loaded). ValueError with a
    readable message for anything unusable."""
    import liteframe_jax as lf
    check_checkpoint(path)
    try:
        model = lf.load(path, dtype=dtype)
        _ = model.tokenizer
    except FileNotFoundError as e:
        raise ValueError(str(e)) from e
    if "llm" not in model.params:
        raise ValueError(f"{path} has no LLM parameters (encoder-only); it cannot answer questions")
    return model


def video_record(video: str, question: str = "?", start: float | None = None, end: float | None = None):
    """A QARecord naming the clip to decode (file path or "synthetic:<seed>:<index>"). ValueError for a missing
    file, a malformed synthetic id or bad start/end."""
    from liteframe_jax.data.video_qa import QARecord, parse_synthetic_id
    if not video:
        raise ValueError("no video given")
    if video.startswith(_SYNTHETIC):
        parse_synthetic_id(video)
    elif not os.path.exists(video):
        raise ValueError(f"video file {video!r} does not exist")
    elif not os.path.isfile(video):
        raise ValueError(f"video {video!r} is not a file")
    return QARecord(video=video, question=question, answer="-", start=start, end=end)


def clip_pixels(model, record, num_frames: int, threads: int = 0) -> np.ndarray:
    """float32 (num_frames, H, W, 3) normalized frames of a record's clip at the model's image size
    (segment-middle sampling). Raises VideoDecodeError / ValueError."""
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.data.qa_pipeline import record_frames
    if num_frames < 1:
        raise ValueError(f"frames must be >= 1, got {num_frames}")
    return normalize_frames(record_frames(record, num_frames, model.image_size, threads=threads))


def end_token_id(model) -> int | None:
    """The token that ends an answer (`VideoLLM.end_token_id`)."""
    return model.end_token_id


def decode_answer(tokenizer, tokens, eos: int | None) -> str:
    from liteframe_jax.data.prompts import decode_answer as decode
    return decode(tokenizer, tokens, eos)


def prompt_layout(model, image_hw=None):
    from liteframe_jax.data.qa_pipeline import PromptLayout
    return PromptLayout(model.tokens_per_group(image_hw), model.frames_per_group)


def answer(model, pixels: np.ndarray, question: str, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
           system_message: str | None = "default") -> str:
    """Greedy answer to `question` about normalized frames `pixels` (F, H, W, 3); system_message as
    `system_message_arg` ("default", "none", or the text). Same as `VideoLLM.answer`."""
    return model.answer(pixels, question, max_new_tokens, system_message)


# -------------------------------------------------------------------------------------------------------- CLI

def _define_flags():
    """Flags are defined only when this module is the program (evaluate.py imports the helpers above)."""
    from absl import flags
    flags.DEFINE_string("checkpoint", None, "Checkpoint directory (LiteFrame after LMA, an imported InternVL3, or "
                        "a PyTorch InternVL3 directory).")
    flags.DEFINE_string("video", None, "Video file (any format FFmpeg reads) or synthetic:<seed>:<index>.")
    flags.DEFINE_string("question", None, "The question to ask about the video.")
    flags.DEFINE_integer("frames", DEFAULT_FRAMES, "Frames to sample (InternVL segment-middle rule; more frames "
                         "than the video has repeats frames).")
    flags.DEFINE_integer("max_new_tokens", DEFAULT_MAX_NEW_TOKENS, "Most tokens to generate.")
    flags.DEFINE_string("system_message", "default", "System turn: 'default' (InternVL's), 'none', or the text.")
    flags.DEFINE_float("start", None, "Clip start in seconds (with --end): sample frames within [start, end].")
    flags.DEFINE_float("end", None, "Clip end in seconds (with --start).")
    flags.DEFINE_enum("dtype", "auto", ["auto", "float32", "bfloat16"], "Compute dtype; auto keeps the "
                      "checkpoint's.")
    flags.DEFINE_integer("decode_threads", 0, "FFmpeg decode threads (0 = auto).")
    for name in ("checkpoint", "video", "question"):
        flags.mark_flag_as_required(name)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv):
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    from liteframe_jax.data.video import VideoDecodeError, probe_video
    try:
        if not f.question.strip():
            raise ValueError("the question is empty")
        if f.frames < 1 or f.max_new_tokens < 1:
            raise ValueError(f"--frames ({f.frames}) and --max_new_tokens ({f.max_new_tokens}) must be >= 1")
        record = video_record(f.video, f.question, f.start, f.end)
        if not record.video.startswith(_SYNTHETIC):
            probe_video(record.video)  # an unreadable file fails here, before the weights load
        check_checkpoint(f.checkpoint)
        t0 = time.perf_counter()
        _log(f"loading {f.checkpoint} ...")
        model = load_model(f.checkpoint, None if f.dtype == "auto" else f.dtype)
        t1 = time.perf_counter()
        _log(f"loaded {model.visual.label} model in {t1 - t0:.1f}s; decoding {f.frames} frames of {f.video} ...")
        pixels = clip_pixels(model, record, f.frames, threads=f.decode_threads)
        t2 = time.perf_counter()
        tokens = model.num_visual_tokens(f.frames, pixels.shape[1:3])
        _log(f"decoded in {t2 - t1:.2f}s; {tokens} visual tokens ({model.frames_per_group} frame(s) per group); "
             "generating ...")
        with warnings.catch_warnings(record=True) as said:  # e.g. a prompt longer than the model's positions
            warnings.simplefilter("always")
            text = answer(model, pixels, f.question, f.max_new_tokens, f.system_message)
        for w in said:
            _log(f"warning: {w.message}")
        _log(f"answered in {time.perf_counter() - t2:.2f}s (includes compilation)")
    except (ValueError, FileNotFoundError, VideoDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    from liteframe_jax.cli import run
    _define_flags()
    run(main)
