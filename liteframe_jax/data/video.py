"""Video files <-> uint8 RGB frames with PyAV (FFmpeg ships inside the `av` wheel): probe, decode, encode.

Frame i is the i-th frame the decoder outputs when decoding from the start. `decode_frames` reaches the wanted
frames either sequentially (decode from the start, keep the wanted frames, stop after the last one) or by seeking
to the keyframe before each wanted frame and decoding forward from there (`data.video_index`: the frame index of
a stream and the seek plan). method="auto" picks whichever decodes fewer frames (seeking by a margin), so
sampling from a long video costs about what is sampled, not the video's length. With a frame index, H.264 and
HEVC decoders also skip the unwanted non-reference frames (most B-frames), which no other frame needs, so short
clips decode faster than frame by frame. All paths give bit-identical frames; when frames cannot be located by
timestamp (packets without timestamps, a truncated file) or the decoder does not produce them where the index
says, decoding falls back to sequential and logs it once per file.

The frame index of an MP4/MOV comes from FFmpeg's index of the stream plus the file's composition offsets
(`data.mp4_boxes`, milliseconds for an hour of video); other containers, fragmented MP4s and edit lists that cut
frames are demuxed packet by packet (about 0.5 s per hour of 30 fps video). Frames an MP4 edit list cuts are
decoded for reference but never output, so they are not counted.

Frames are converted to RGB at native size by FFmpeg (as decord does), then resized to `size` ignoring aspect
ratio with bicubic filtering: `resample="pil"` (default) is Pillow's `Image.resize(BICUBIC)`, exactly InternVL's
per-frame resize; `resample="swscale"` uses FFmpeg's bicubic scaler (no Pillow needed, ~2x faster, within about 1
grey level on average of Pillow's result).

Threads: `threads` is FFmpeg's codec thread count (0 = auto, one per core) with frame+slice threading. Use
`threads=1` when many loader worker processes decode at once (one per grain worker), otherwise the workers
oversubscribe the cores; keep 0 for a single decoder.

Every failure to read a file raises `VideoDecodeError` (a ValueError) naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fractions
import functools
import itertools
import logging
import operator
import os

import av
import numpy as np

from liteframe_jax.data.sampling import fixed_fps_indices, segment_middle_indices
from liteframe_jax.data.mp4_boxes import read_sample_table
from liteframe_jax.data.video_index import FrameIndex, plan_seeks, prefer_seeking, sequential_plan

_AV_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError, IndexError)
DECODE_METHODS = ("auto", "sequential", "seek")
_log = logging.getLogger(__name__)
_AVINDEX_KEYFRAME, _AVINDEX_DISCARD_FRAME = 1, 2  # AVIndexEntry.flags bits
_CHECKED_PACKETS = 64  # index entries / packets checked at each end of a stream
_fallback_logged: set[str] = set()  # files whose fallback to sequential decoding was logged (once per file)

# codec -> (pixel format, encoder options) used by write_video unless overridden.
CODEC_DEFAULTS = {
    "libx264": ("yuv420p", {"crf": "18"}),     # H.264, visually lossless; chroma subsampled (lossy)
    "libx264rgb": ("rgb24", {"qp": "0"}),      # H.264 in RGB at qp 0: bit-exact lossless, fits in .mp4
    "mpeg4": ("yuv420p", {"qmin": "1", "qmax": "3"}),  # MPEG-4 part 2, high quality
    "ffv1": ("bgr0", {}),                      # lossless; needs .mkv/.avi; the container stores no frame count
}


class VideoDecodeError(ValueError):
    """A video file could not be read; `path` and `reason` say which and why."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path!r}: {reason}")

    def __reduce__(self):  # keep the (path, reason) signature through pickling (errors cross grain workers)
        return type(self), (self.path, self.reason)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """Stream facts from `probe_video`: frame count, frames per second, frame size in pixels, seconds."""

    num_frames: int
    fps: float
    width: int
    height: int
    duration: float


def _check_threads(threads) -> int:
    t = operator.index(threads)
    if t < 0:
        raise ValueError(f"threads must be >= 0 (0 = FFmpeg auto), got {t}")
    return t


@contextlib.contextmanager
def _open_video(path, threads: int = 0):
    """Yield (container, first video stream) with `threads` decode threads; failures become VideoDecodeError."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise VideoDecodeError(p, "file not found")
    if not os.path.isfile(p):
        raise VideoDecodeError(p, "not a regular file")
    if os.path.getsize(p) == 0:
        raise VideoDecodeError(p, "file is empty")
    try:
        container = av.open(p)
    except _AV_ERRORS as e:
        raise VideoDecodeError(p, f"unreadable or corrupt ({type(e).__name__}: {e})") from e
    try:
        if not container.streams.video:
            raise VideoDecodeError(p, "no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        stream.codec_context.thread_type = "AUTO"
        yield container, stream
    finally:
        container.close()


def _count_packets(container, stream) -> int:
    """Video packets up to the end or the first read error (demux only, no decoding): the frame count when the
    container stores none (e.g. Matroska)."""
    count = 0
    try:
        for packet in container.demux(stream):
            count += packet.size > 0  # the final flush packet is empty
    except _AV_ERRORS:
        pass
    return count


def _discarded_frames(stream) -> int:
    """Frames the container's index marks discard (an MP4 edit list that cuts the start or end: those frames are
    decoded for reference, never output). Cuts sit at the ends, so only then are all entries counted."""
    entries = stream.index_entries
    n = len(entries)
    ends = [entries[i] for i in (*range(min(n, _CHECKED_PACKETS)), *range(max(0, n - _CHECKED_PACKETS), n))]
    if not any(e.is_discard for e in ends):
        return 0
    return sum(e.is_discard for e in entries)


def probe_video(path) -> VideoInfo:
    """VideoInfo of the first video stream, from container metadata (frames are not decoded; when the container
    has no frame count the packets are counted). A truncated file may report more frames than can be decoded;
    `decode_frames` then raises. VideoDecodeError for a missing, empty or unreadable file, no video stream,
    or a stream with no frames."""
    p = os.fspath(path)
    with _open_video(p) as (container, stream):
        num_frames = (stream.frames - _discarded_frames(stream)) if stream.frames else _count_packets(container, stream)
        if num_frames <= 0:
            raise VideoDecodeError(p, "the video stream has no frames")
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoDecodeError(p, "the video stream has no frame size")
        duration = None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if rate:
            fps = float(rate)
        elif duration:
            fps = num_frames / duration
        else:
            raise VideoDecodeError(p, "the video stream has no frame rate")
    return VideoInfo(num_frames=int(num_frames), fps=fps, width=int(width), height=int(height),
                     duration=duration if duration else num_frames / fps)


def _resizer(size, resample: str):
    """A function (H0, W0, 3) uint8 -> (h, w, 3) uint8 bicubic resize ignoring aspect; identity for size=None."""
    if resample not in ("pil", "swscale"):
        raise ValueError(f"resample must be 'pil' or 'swscale', got {resample!r}")
    if size is None:
        return lambda rgb: rgb
    h, w = (operator.index(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (height, width), got {size!r}")
    if resample == "pil":
        from PIL import Image

        def resize(rgb):
            if rgb.shape[:2] == (h, w):
                return rgb
            return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BICUBIC))
    else:
        def resize(rgb):
            if rgb.shape[:2] == (h, w):
                return rgb
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            return frame.reformat(width=w, height=h, interpolation="BICUBIC").to_ndarray()
    return resize


def decode_frames(path, indices, size: tuple[int, int] | None = (448, 448), threads: int = 0,
                  resample: str = "pil", method: str = "auto") -> np.ndarray:
    """Decode frames `indices` (any order, repeats allowed) -> uint8 (len(indices), h, w, 3) RGB.

    size=(height, width) resizes every frame to exactly that (bicubic, aspect ignored); None keeps the native
    size. method: "sequential" decodes from the start up to the largest wanted index (so early frames of a
    truncated file still decode); "seek" seeks to the keyframe before each wanted frame; "auto" (default) takes
    whichever decodes fewer frames (seeking only when clearly fewer: `video_index.SEEK_MARGIN`). Seeking falls back
    to sequential decoding when the frames cannot be located
    (logged once per file). VideoDecodeError when the file cannot be opened, yields no frame at all, or ends (or
    fails, e.g. cut short) before a wanted frame; the message lists the missing indices and how many frames were
    decoded.
    """
    p = os.fspath(path)
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be a non-empty 1-D sequence of integers, got {indices!r}")
    if idx.min() < 0:
        raise ValueError(f"frame indices must be >= 0, got {idx.min()}")
    if method not in DECODE_METHODS:
        raise ValueError(f"method must be one of {DECODE_METHODS}, got {method!r}")
    threads = _check_threads(threads)
    resize = _resizer(size, resample)
    wanted = idx.tolist()
    if method != "sequential":
        plan = None
        index = frame_index(p)
        if index is not None:
            plan = plan_seeks(index, wanted)
        if plan is not None and method == "auto" and not prefer_seeking(plan, wanted):
            plan = sequential_plan(wanted)  # from the start, still skipping what no wanted frame needs
        if plan is not None:
            with _open_video(p, threads) as (container, stream):
                found = _decode_planned(container, stream, index, plan, resize)
            if found is not None:
                return np.stack([found[i] for i in wanted])
            _log_fallback(p, "the decoder did not produce the frames where the frame index says")
        elif method == "seek":
            _log_fallback(p, "frames cannot be located by timestamp")
    return _decode_sequential(p, wanted, threads, resize)


def _log_fallback(path: str, reason: str) -> None:
    if path not in _fallback_logged and len(_fallback_logged) < 10_000:
        _fallback_logged.add(path)
        _log.warning("decoding %s sequentially: %s", path, reason)


def frame_index(path) -> FrameIndex | None:
    """The frame index of the first video stream (`data.video_index`), from an MP4's tables or from its packets (no
    decoding); None when frames cannot be located by timestamp or the file cannot be read to its end. Cached per
    file (path, size, modification time), so sampling a video again does not index it again."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError:
        return None
    return _frame_index_cached(p, st.st_size, st.st_mtime_ns)


def clear_index_cache() -> None:
    """Forget the cached frame indices (benchmarks time index building; files are re-indexed when changed anyway)."""
    _frame_index_cached.cache_clear()


@functools.lru_cache(maxsize=256)
def _frame_index_cached(path: str, size: int, mtime_ns: int) -> FrameIndex | None:
    del size, mtime_ns  # cache key only: a rewritten file is indexed again
    try:
        with _open_video(path, threads=1) as (container, stream):
            index = _index_from_sample_table(path, container, stream)
        if index is not None:
            return index
        with _open_video(path, threads=1) as (container, stream):
            return _index_from_packets(container, stream)
    except (VideoDecodeError, *_AV_ERRORS):
        return None


def _index_from_packets(container, stream) -> FrameIndex | None:
    """The frame index from every packet's pts and keyframe flag (demuxes the whole stream). Packets flagged
    discard (cut by an MP4 edit list) are decoded for reference but never output: they are not frames."""
    packets, count = [], 0
    for packet in container.demux(stream):
        if packet.size > 0:  # the final flush packet is empty
            count += 1
            if not packet.is_discard:
                packets.append((packet.pts, bool(packet.is_keyframe)))
    if stream.frames and stream.frames != count:
        return None
    return FrameIndex.from_packets(packets)


def _index_from_sample_table(path: str, container, stream) -> FrameIndex | None:
    """The frame index of an MP4/MOV stream without demuxing it: decode timestamps and keyframe flags from
    FFmpeg's index of the stream, composition offsets from the file's `ctts` (`data.mp4_boxes`). FFmpeg shifts
    timestamps by constants (edit lists, negative offsets); the shift is read off the first packets and checked
    on the packets of the first and last GOP. None whenever the tables do not describe every packet exactly
    (fragments, trimming edit lists, sample groups, another container): the caller demuxes instead."""
    if not {"mov", "mp4"} & set(container.format.name.split(",")):
        return None
    table = read_sample_table(path, stream.id)
    if table is None or table.has_sample_groups or stream.time_base != fractions.Fraction(1, table.timescale):
        return None
    entries = stream.index_entries
    n = len(entries)
    if n == 0 or n != table.num_samples or n != stream.frames:
        return None
    dts, flags = np.array([(e.timestamp, e.flags) for e in entries], np.int64).T
    if np.any(flags & _AVINDEX_DISCARD_FRAME) or np.any(np.diff(dts) <= 0):
        return None
    pts = dts + table.composition_offsets
    keyframe = (flags & _AVINDEX_KEYFRAME) != 0
    head = [p for p in itertools.islice(container.demux(stream), _CHECKED_PACKETS) if p.size > 0]
    if not head or head[0].dts is None:
        return None
    dts_shift = head[0].dts - int(dts[0])
    shifts: set[int] = set()  # packet pts - table pts: one constant when the table describes the packets

    def agrees(packets) -> bool:
        for packet in packets:
            if packet.size == 0:
                continue
            if packet.pts is None or packet.dts is None:
                return False
            i = int(np.searchsorted(dts, packet.dts - dts_shift))
            if i >= n or dts[i] != packet.dts - dts_shift or bool(packet.is_keyframe) != keyframe[i]:
                return False
            shifts.add(packet.pts - int(pts[i]))
        return len(shifts) == 1

    if not agrees(head):
        return None
    last_key = int(np.flatnonzero(keyframe)[-1]) if keyframe.any() else 0
    container.seek(int(dts[last_key] + dts_shift), stream=stream, backward=True, any_frame=False)
    if not agrees(container.demux(stream)):
        return None
    return FrameIndex.from_arrays(pts + shifts.pop(), keyframe)


def _decode_planned(container, stream, index: FrameIndex, plan, resize) -> dict[int, np.ndarray] | None:
    """{frame number: resized RGB} for plan.frames, following the plan's seeks (a plan starting without a seek
    decodes from the start); None when the decoder does not produce the frames where the index says (the caller
    then decodes sequentially). The decoder skips the non-reference frames (e.g. most B-frames) that are not
    wanted: no other frame depends on them, so the wanted frames stay bit-identical."""
    found: dict[int, np.ndarray] = {}
    wanted_pts = {int(index.pts[f]) for f in plan.frames}
    frames = None
    floor = 0
    try:
        for want, key in zip(plan.frames, plan.seeks):
            if key is not None:
                container.seek(int(index.pts[key]), stream=stream, backward=True, any_frame=False)
            if key is not None or frames is None:
                frames, floor = _decode_skipping(container, stream, wanted_pts), key or 0
            for frame in frames:
                n = None if frame.pts is None else index.frame_of_pts(frame.pts)
                if n is None or n > want:
                    return None
                if n < floor:  # leading frames of an open GOP, or before the keyframe: not reliable, not needed
                    continue
                if n == want:
                    found[want] = resize(frame.to_ndarray(format="rgb24"))
                    break
            else:
                return None
    except _AV_ERRORS:
        return None
    finally:
        stream.codec_context.skip_frame = "DEFAULT"
    return found


# Decoders that apply skip_frame when a packet is decoded (not when a frame is returned, as libdav1d does, which
# would drop a wanted frame still queued inside the decoder).
_SKIPPING_DECODERS = frozenset({"h264", "hevc"})


def _decode_skipping(container, stream, wanted_pts: set[int]):
    """Frames decoded from the demuxer's position, telling the decoder to skip non-reference frames (FFmpeg's
    skip_frame=NONREF) for every packet whose pts is not wanted (H.264 and HEVC; other codecs decode all)."""
    context = stream.codec_context
    if context.name not in _SKIPPING_DECODERS:
        yield from container.decode(stream)
        return
    skip = None
    for packet in container.demux(stream):
        mode = "DEFAULT" if packet.pts is None or packet.pts in wanted_pts else "NONREF"
        if mode != skip:
            context.skip_frame = skip = mode
        yield from packet.decode()


def _decode_sequential(p: str, wanted: list[int], threads: int, resize) -> np.ndarray:
    """Decode from the start up to the largest wanted frame number (see decode_frames)."""
    positions: dict[int, list[int]] = {}
    for pos, i in enumerate(wanted):
        positions.setdefault(i, []).append(pos)
    out: list[np.ndarray | None] = [None] * len(wanted)
    decoded, failure = 0, None
    with _open_video(p, threads) as (container, stream):
        try:
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if i in positions:
                    rgb = resize(frame.to_ndarray(format="rgb24"))
                    for pos in positions.pop(i):
                        out[pos] = rgb
                    if not positions:
                        break
        except _AV_ERRORS as e:
            failure = f"{type(e).__name__}: {e}"
    if decoded == 0:
        raise VideoDecodeError(p, "zero decodable frames" + (f" ({failure})" if failure else ""))
    if positions:
        missing = sorted(positions)
        shown = ", ".join(map(str, missing[:8])) + (", ..." if len(missing) > 8 else "")
        ended = f"decoding stopped after {decoded} frames" + (f" ({failure})" if failure else "")
        raise VideoDecodeError(p, f"frame indices [{shown}] not decodable: {ended}; truncated or corrupt file?")
    return np.stack(out)


def load_clip(path, num_frames: int | None, size: tuple[int, int] | None = (448, 448), sampling: str = "segment",
              fps: float | None = None, bound: tuple[float, float] | None = None, threads: int = 0,
              resample: str = "pil", method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Probe, choose frames, decode -> (frames uint8 (T, h, w, 3), indices int64 (T,)).

    sampling="segment": InternVL's rule, T = num_frames segment-middle frames (`segment_middle_indices`; `fps`
    must be None, the video's own fps converts `bound`). sampling="fps": frames at `fps` per second, at most
    num_frames of them (None = no cap) (`fixed_fps_indices`). method: as `decode_frames` (auto: sequential or
    seeking, whichever decodes fewer frames). Errors as `probe_video` / `decode_frames`, and
    ValueError from the sampling rule (e.g. a bound outside the video).
    """
    if sampling not in ("segment", "fps"):
        raise ValueError(f"sampling must be 'segment' or 'fps', got {sampling!r}")
    if sampling == "segment" and fps is not None:
        raise ValueError("fps is the sampling rate of sampling='fps'; segment sampling takes num_frames only")
    if sampling == "fps" and fps is None:
        raise ValueError("sampling='fps' needs fps (frames per second to sample)")
    if sampling == "segment" and num_frames is None:
        raise ValueError("sampling='segment' needs num_frames")
    info = probe_video(path)
    if sampling == "segment":
        indices = segment_middle_indices(info.num_frames, num_frames, fps=info.fps, bound=bound)
    else:
        indices = fixed_fps_indices(info.num_frames, info.fps, fps, max_frames=num_frames, bound=bound)
    return decode_frames(path, indices, size=size, threads=threads, resample=resample, method=method), indices


def write_video(path, frames: np.ndarray, fps: float = 30.0, codec: str = "libx264", *, pix_fmt: str | None = None,
                options: dict[str, str] | None = None, faststart: bool = False) -> None:
    """Encode uint8 RGB frames (T, H, W, 3) to `path` (container from the extension) at `fps`.

    Defaults per codec are in CODEC_DEFAULTS (libx264: yuv420p crf 18; libx264rgb: lossless RGB; mpeg4: high
    quality; ffv1: lossless, .mkv). `options` override encoder options; faststart=True writes the MP4 index
    first (as streaming files do), so a truncated file still opens. ValueError for bad frames, odd sizes with
    a 4:2:0 pixel format, or a codec this FFmpeg build does not have.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        raise ValueError(f"frames must be non-empty uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    try:
        av.codec.Codec(codec, "w")
    except _AV_ERRORS:
        raise ValueError(f"codec {codec!r} has no encoder in this FFmpeg build") from None
    default_fmt, default_opts = CODEC_DEFAULTS.get(codec, ("yuv420p", {}))
    pix_fmt = pix_fmt or default_fmt
    _, height, width, _ = frames.shape
    if pix_fmt.endswith("420p") and (height % 2 or width % 2):
        raise ValueError(f"{pix_fmt} needs an even frame size, got {height}x{width}")
    rate = fractions.Fraction(fps).limit_denominator(100_000)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    with av.open(os.fspath(path), "w", options={"movflags": "faststart"} if faststart else {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = {**default_opts, **(options or {})}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
