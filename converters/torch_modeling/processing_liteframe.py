"""The processor of exported LiteFrame models: a video (file or uint8 frames) + a question -> model inputs.

    from transformers import AutoModelForCausalLM, AutoProcessor
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(OUT_DIR, trust_remote_code=True)
    print(model.chat(processor, "video.mp4", "What happens in the video?"))

`processor(video, question)` builds exactly what `python -m liteframe_jax.generate` feeds the JAX model:

* frames: `num_frames` frames chosen with InternVL's segment-middle rule (the middle frame of each of N equal
  segments of the video, or of [start, end] seconds); a file is decoded with PyAV, frame i being the i-th frame
  the decoder outputs; an array (T, H, W, 3) uint8 is sampled the same way;
* resize: each frame to the model's `image_size` with Pillow's bicubic filter, aspect ratio ignored (InternVL's);
* normalization: /255, then ImageNet mean and std; `pixel_values` is float32 (1, T, 3, H, W), channels first;
* prompt: InternVL's `internvl2_5` chat template, a system turn per `system_message` ("default" = InternVL's,
  None / "" / "none" = no system turn, else the text), and before the question one line per group of
  `frames_per_group` frames: "Frame1-4: <img>" + `tokens_per_group` x "<IMG_CONTEXT>" + "</img>".

The sampling rule, the normalization and the prompt code are LiteFrame-JAX's own modules (`liteframe_sampling.py`,
`liteframe_frames.py`, `liteframe_prompts.py`), copied beside this file by the exporter. This file imports numpy,
PyAV, Pillow, torch and transformers only: it never needs JAX.
"""

from __future__ import annotations

import os

import numpy as np
from transformers import BatchFeature, ProcessorMixin

try:  # in an exported directory: LiteFrame-JAX's modules, copied beside this file
    from .liteframe_frames import normalize_frames
    from .liteframe_prompts import IM_END, chat_prompt, decode_answer, encode_prompt, resolve_system_message, \
        video_prefix
    from .liteframe_sampling import segment_middle_indices
except ImportError:  # in the LiteFrame-JAX repository (converters/torch_modeling)
    from liteframe_jax.data.frames import normalize_frames
    from liteframe_jax.data.prompts import IM_END, chat_prompt, decode_answer, encode_prompt, \
        resolve_system_message, video_prefix
    from liteframe_jax.data.sampling import segment_middle_indices


class VideoReadError(ValueError):
    """A video file could not be read (missing, empty, corrupt, no video stream, or cut short)."""


def _open(path: str):
    import av

    if not os.path.isfile(path):
        raise VideoReadError(f"video file {path!r} does not exist or is not a file")
    if os.path.getsize(path) == 0:
        raise VideoReadError(f"video file {path!r} is empty")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoReadError(f"cannot open video {path!r}: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path!r} has no video stream")
    return container


def video_facts(path: str) -> tuple[int, float]:
    """(frame count, frames per second) of the first video stream, from the container (LiteFrame-JAX's rule: the
    stored frame count, else the number of packets; the stream's average, guessed or base rate, else
    frames / duration)."""
    import av

    with _open(path) as container:
        stream = container.streams.video[0]
        count = stream.frames
        if not count:
            count = 0
            try:
                count = sum(packet.size > 0 for packet in container.demux(stream))
            except (av.FFmpegError, OSError, EOFError, ValueError):
                pass
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else \
            (container.duration / av.time_base if container.duration else 0.0)
    if count <= 0:
        raise VideoReadError(f"{path!r}: the video stream has no frames")
    if rate:
        return int(count), float(rate)
    if seconds:
        return int(count), count / seconds
    raise VideoReadError(f"{path!r}: the video stream has no frame rate")


def read_frames(path: str, indices) -> np.ndarray:
    """uint8 RGB frames (len(indices), H, W, 3) at native size: frame i is the i-th frame decoded from the start
    (decoding stops after the last wanted one). VideoReadError when the file ends before a wanted frame."""
    import av

    wanted = [int(i) for i in indices]
    keep, last, got = set(wanted), max(wanted), {}
    with _open(path) as container:
        try:
            for i, frame in enumerate(container.decode(video=0)):
                if i in keep:
                    got[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
        except (av.FFmpegError, OSError, EOFError, ValueError) as e:
            if len(got) < len(keep):
                raise VideoReadError(f"decoding {path!r} failed before frame {last}: {e}") from e
    missing = sorted(keep - set(got))
    if missing:
        raise VideoReadError(f"{path!r} ends before frames {missing[:8]} (truncated or corrupt file?)")
    return np.stack([got[i] for i in wanted])


def resize_frames(frames: np.ndarray, size) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, h, w, 3): Pillow bicubic resize of each whole frame to size=(h, w)."""
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in frames])


class LiteFrameProcessor(ProcessorMixin):
    """Video + question -> {input_ids, attention_mask, pixel_values} for `LiteFrameForConditionalGeneration`.

    Settings (processor_config.json, written by the exporter from the JAX model): `num_frames` (default frames to
    sample), `image_size` [H, W], `frames_per_group`, `tokens_per_group` (LLM tokens per group at image_size),
    `system_message` ("default", "none" or a text)."""

    def __init__(self, tokenizer=None, num_frames: int = 8, image_size=(448, 448), frames_per_group: int = 1,
                 tokens_per_group: int = 256, system_message: str | None = "default", chat_template=None, **kwargs):
        self.num_frames = int(num_frames)
        self.image_size = [int(image_size[0]), int(image_size[1])]
        self.frames_per_group = int(frames_per_group)
        self.tokens_per_group = int(tokens_per_group)
        self.system_message = system_message
        if min(self.num_frames, self.frames_per_group, self.tokens_per_group, *self.image_size) < 1:
            raise ValueError("num_frames, frames_per_group, tokens_per_group and image_size must be positive")
        super().__init__(tokenizer, chat_template=chat_template, **kwargs)

    # ------------------------------------------------------------------ pieces
    def sample_frames(self, video, num_frames: int | None = None, start: float | None = None,
                      end: float | None = None) -> np.ndarray:
        """uint8 frames (num_frames, H, W, 3) at the model's image size: a file path (decoded with PyAV) or an
        array (T, H, W, 3) uint8 (torch tensors too), segment-middle sampled within [start, end] seconds (files
        only) or the whole video."""
        n = self.num_frames if num_frames is None else int(num_frames)
        if (start is None) != (end is None):
            raise ValueError("give both start and end (seconds), or neither")
        bound = None if start is None else (float(start), float(end))
        if isinstance(video, (str, os.PathLike)):
            path = os.fspath(video)
            count, fps = video_facts(path)
            frames = read_frames(path, segment_middle_indices(count, n, fps=fps, bound=bound))
        else:
            if bound is not None:
                raise ValueError("start/end need a video file (an array of frames has no timestamps)")
            frames = np.asarray(video.numpy() if hasattr(video, "numpy") else video)
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
                raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}")
            frames = frames[segment_middle_indices(len(frames), n)]
        return resize_frames(frames, self.image_size)

    def prompt(self, question: str, num_frames: int, system_message: str | None = "config") -> str:
        """The chat prompt text (frame lines + question, ending with the open assistant turn)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        setting = self.system_message if system_message == "config" else system_message
        prefix = video_prefix(num_frames, self.tokens_per_group, self.frames_per_group)
        return chat_prompt(prefix + question, resolve_system_message(setting))

    @property
    def end_token_id(self) -> int:
        """Id of <|im_end|>, the token that ends an answer."""
        return int(self.tokenizer.convert_tokens_to_ids(IM_END))

    def decode_answer(self, tokens, end_id: int | None = None) -> str:
        """Generated ids -> reply text: cut at the first end token (<|im_end|> by default), specials dropped."""
        tokens = tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)
        return decode_answer(self.tokenizer, np.asarray(tokens, np.int64),
                             self.end_token_id if end_id is None else end_id)

    # ------------------------------------------------------------------ call
    def __call__(self, video=None, text: str | None = None, num_frames: int | None = None,
                 system_message: str | None = "config", start: float | None = None, end: float | None = None,
                 return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """video (file path or uint8 (T, H, W, 3)) + text (the question) -> BatchFeature with input_ids (1, L),
        attention_mask (1, L) and pixel_values float32 (1, T, 3, H, W). `system_message` "config" uses the
        processor's setting; `videos=` is accepted for `video`."""
        video = kwargs.pop("videos", video)
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        if video is None or text is None:
            raise ValueError("the processor needs a video and a question (text)")
        frames = self.sample_frames(video, num_frames, start, end)
        ids = encode_prompt(self.tokenizer, self.prompt(text, len(frames), system_message)).astype(np.int64)
        pixels = normalize_frames(frames).transpose(0, 3, 1, 2)
        data = {"input_ids": ids[None], "attention_mask": np.ones((1, len(ids)), np.int64),
                "pixel_values": np.ascontiguousarray(pixels)[None]}
        return BatchFeature(data=data, tensor_type=return_tensors)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "pixel_values"]


__all__ = ["LiteFrameProcessor", "VideoReadError", "read_frames", "video_facts", "resize_frames"]
