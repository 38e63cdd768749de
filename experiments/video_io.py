"""Video decoding speed: sequential decoding vs seeking vs the automatic choice, on videos this script makes.

    python -m experiments.video_io [--minutes 0.25,5,60] [--codecs h264,hevc,vp9] [--gop 120] [--frames 16,64,512]
        [--size 854x480] [--repeats 3] [--short_repeats 21] [--video_dir DIR] [--out FILE.json]
        [--store [--store_size 448]] [--lma_frames 64] [--accel_tflops 989 --mfu 0.4]

Makes one test video per (length, codec) in --video_dir (kept and reused: encoding a long video takes minutes):
a textured, slowly panning background with moving shapes and sensor noise at --size and 30 fps, keyframes every
--gop frames, B-frames where the codec has them. Videos longer than SEGMENT_MINUTES are that segment's packets
repeated (remuxed with shifted timestamps, not re-encoded, so an hour takes seconds; --gop must divide the
segment's frame count so that every join is a keyframe; H.264 and VP9): same codec, size, GOP and decode cost
per frame. For each video and each frame count T it samples T frames with InternVL's segment-middle rule and
times, with one decode thread (per-core numbers), decoding them:
  sequential  from the start to the last wanted frame, every frame (method="sequential": no frame index);
  seek        to the keyframe before each wanted frame (the frame index is built first, from an MP4's tables or
              the packets, and that time is included: the first sample of a video pays it);
  auto        the library's default (whichever decodes fewer frames; both skip unwanted non-reference frames);
  decord      decord's VideoReader.get_batch, when the optional `decord` package is installed (never required).
With --store it also times what the CTD loader does per clip at --store_size (decode or read, resize, normalize:
`pipeline.ClipLoader`, un-augmented, one thread; and its uint8 stage alone, `frames_*`: decode or read + resize,
without the float normalization both share): decoding the video (`loader_decode`) against reading the clip
from a frame store written by experiments.extract_frames: native frames raw (`store_native`, resized when read),
frames stored resized (`store_resized`) and native JPEG (`store_jpeg`), with each store's bytes per clip; the
raw stores must give the decoded clip bit for bit. The store is read warm (page cache): disk reads are not timed.
Frames are checked identical between the methods. Clips under SHORT_MINUTES take --short_repeats rounds
(a fraction of a second each, where one slow spell of the machine moves a median of a few runs by 30% or more).
It reports seconds per clip and clips/s per core, and how many
CPU cores one accelerator needs to keep the CTD step fed at a stated rate (--accel_tflops x --mfu against the
step's analytic FLOPs per clip, experiments/flops.py: CTD of configs/ctd.py:8b at 16 frames; LMA of the 87M student
and InternVL3-8B's LLM at --lma_frames, the projector and the LLM trained, in the prompt layout of
configs/latency.py:size=real).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import av
import numpy as np
from absl import flags

from configs import ctd
from experiments import flops
from liteframe_jax.cli import error as cli_error, run
from liteframe_jax.data import video
from liteframe_jax.data.sampling import segment_middle_indices
from liteframe_jax.models.config import InternVLConfig, StudentConfig

CODECS = {"h264": ("libx264", "mp4", {"preset": "ultrafast", "bf": "2", "x264-params": "scenecut=0"}),
          "hevc": ("libx265", "mkv", {"preset": "ultrafast", "x265-params": "bframes=2:scenecut=0:log-level=none"}),
          "vp9": ("libvpx-vp9", "webm", {"deadline": "realtime", "cpu-used": "8"}),
          "av1": ("libsvtav1", "mkv", {"preset": "12"})}
FPS = 30
SEGMENT_MINUTES = 5.0
SHORT_MINUTES = 1.0  # videos this short are timed --short_repeats rounds
REPEATABLE = ("h264", "vp9")  # closed GOPs: a copy of the segment after another decodes as it does alone


def scene(t: int, h: int, w: int, base: np.ndarray) -> np.ndarray:
    """Frame t (h, w, 3) uint8: the panning textured `base`, three moving shapes, a little noise."""
    shift = (t // 2) % base.shape[1]
    img = np.roll(base, -shift, axis=1)[:h, :w].astype(np.int16)
    for k, color in enumerate(((230, 40, 40), (40, 200, 60), (50, 80, 230))):
        cy = int((0.5 + 0.35 * np.sin(t / (40 + 17 * k) + k)) * h)
        cx = int((0.5 + 0.4 * np.cos(t / (55 + 11 * k) + 2 * k)) * w)
        r = h // (8 + 2 * k)
        img[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = color
    noise = np.random.default_rng(t).integers(-3, 4, img.shape, dtype=np.int16)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def make_video(path: Path, minutes: float, codec: str, gop: int, size: tuple[int, int], log=print) -> Path:
    """Writes the test video unless it exists (longer than SEGMENT_MINUTES: by repeating the segment, made first
    beside it); returns its path."""
    if path.exists():
        return path
    if minutes > SEGMENT_MINUTES:
        copies = round(minutes / SEGMENT_MINUTES)
        if codec not in REPEATABLE:
            raise ValueError(f"videos over {SEGMENT_MINUTES:g} minutes are made for {REPEATABLE} only (their streams "
                             f"join at a keyframe), got {codec}")
        if abs(copies * SEGMENT_MINUTES - minutes) > 1e-9 or int(SEGMENT_MINUTES * 60 * FPS) % gop:
            raise ValueError(f"videos over {SEGMENT_MINUTES:g} minutes repeat a {SEGMENT_MINUTES:g}-minute segment: "
                             f"minutes must be a multiple of it and --gop must divide its "
                             f"{int(SEGMENT_MINUTES * 60 * FPS)} frames, got {minutes:g} and {gop}")
        segment = path.with_name(path.name.replace(f"_{minutes:g}min_", f"_{SEGMENT_MINUTES:g}min_"))
        return repeat_video(make_video(segment, SEGMENT_MINUTES, codec, gop, size, log), path, copies, log)
    encoder, _, options = CODECS[codec]
    h, w = size
    y, x = np.mgrid[0:h, 0:2 * w]
    base = np.stack([128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0), (x * 0.2 + y * 0.5) % 256,
                     128 + 90 * np.sin((x + y) / 51.0)], -1).astype(np.uint8)
    n = int(minutes * 60 * FPS)
    t0 = time.perf_counter()
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream(encoder, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": str(gop), **options}
        if codec == "hevc":
            stream.options["x265-params"] += f":keyint={gop}:min-keyint={gop}"
        for t in range(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(scene(t, h, w, base), format="rgb24")))
        container.mux(stream.encode())
    tmp.rename(path)
    log(f"[video_io] wrote {path.name}: {n} frames in {time.perf_counter() - t0:.0f} s, "
        f"{path.stat().st_size / 2**20:.1f} MiB")
    return path


def repeat_video(source: Path, path: Path, copies: int, log=print) -> Path:
    """Writes `copies` times the video stream of `source` one after the other into `path` (same container kind),
    packets copied with their timestamps shifted by the source's duration; returns `path`."""
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    with av.open(str(source)) as inp, av.open(str(tmp), "w") as out:
        src = inp.streams.video[0]
        packets = [p for p in inp.demux(src) if p.dts is not None]
        stamps = [(p.pts, p.dts) for p in packets]  # muxing rebases a packet's timestamps in place
        span = max(p.pts + p.duration for p in packets) - min(pts for pts, _ in stamps)
        stream = out.add_stream_from_template(src)
        for k in range(copies):
            for p, (pts, dts) in zip(packets, stamps):
                p.time_base, p.stream = src.time_base, stream
                p.pts, p.dts = pts + k * span, dts + k * span
                out.mux(p)
    tmp.rename(path)
    log(f"[video_io] wrote {path.name}: {copies} x {source.name}, {path.stat().st_size / 2**20:.1f} MiB")
    return path


def decode_with(path: Path, indices: np.ndarray, method: str):
    """A run of decoding `indices` (native size, one thread) with `method`, the index cache cleared first (as
    for a video not seen before)."""
    def decode():
        video.clear_index_cache()
        return video.decode_frames(path, indices, size=None, threads=1, method=method)
    return decode


def decord_with(path: Path, indices: np.ndarray):
    """A run of decord's get_batch on `indices`, or None when decord is not installed."""
    try:
        import decord
    except ImportError:
        return None
    return lambda: decord.VideoReader(str(path), num_threads=1).get_batch(list(indices)).asnumpy()


def time_interleaved(runs: dict, repeats: int, once: frozenset = frozenset()) -> dict:
    """{name: (median seconds, last output)} of the callables in `runs`, timed round-robin (one run of each per
    round, `repeats` rounds; names in `once` in the first round only), so that a slow spell of the machine
    (page reclaim, another process) hits every method alike instead of one method's block of runs."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    outputs = {}
    for r in range(repeats):
        for name, call in runs.items():
            if r and name in once:
                continue
            t0 = time.perf_counter()
            outputs[name] = call()
            times[name].append(time.perf_counter() - t0)
    return {name: (float(np.median(times[name])), outputs[name]) for name in runs}


STORE_VARIANTS = {"store_native": ("native", "raw"), "store_resized": ("config", "raw"),
                  "store_jpeg": ("native", "jpeg")}


def time_loader(path: Path, frames: int, size: tuple[int, int], repeats: int, work_dir: Path) -> dict:
    """Median seconds per clip of the CTD loader (`pipeline.ClipLoader`, un-augmented) on the video at `path`:
    decoding it (frame-index cache cleared before each run, as for a video not seen before) and reading it from
    each STORE_VARIANTS store, with the stores' bytes per clip and the largest difference to the decoded clip."""
    from liteframe_jax.data.extract import extract_frame_store
    from liteframe_jax.data.frame_store import FrameStore
    from liteframe_jax.data.pipeline import ClipLoader, DataConfig, crop_resize, load_examples, native_clip

    manifest = work_dir / "manifest.jsonl"
    manifest.write_text(json.dumps({"video": str(path.resolve())}) + "\n")
    cfg = DataConfig(source="manifest", path=str(manifest), num_frames=frames, image_size=size, eval_fraction=0.0,
                     decode_threads=1)
    examples = load_examples(cfg)

    def timed(c, read):
        """(seconds of the whole loader step, seconds of its uint8 frames stage (`read` + resize), pixels)"""
        loader, whole, stage, out = ClipLoader(c, examples, augment=False), [], [], None
        for _ in range(repeats):
            video.clear_index_cache()
            t0 = time.perf_counter()
            crop_resize(read()[0], size)
            t1 = time.perf_counter()
            video.clear_index_cache()
            out = loader.random_map(0, np.random.default_rng(0))["pixels"]
            whole.append(time.perf_counter() - t1)
            stage.append(t1 - t0)
        return float(np.median(whole)), float(np.median(stage)), out

    row = {}
    row["loader_decode"], row["frames_decode"], reference = timed(cfg, lambda: native_clip(cfg, examples, 0))
    for name, (frame_size, encoding) in STORE_VARIANTS.items():
        store = work_dir / name
        result = extract_frame_store(cfg, str(store), frame_size, encoding, overwrite=True, progress=False)
        row[name], row[f"frames_{name}"], pixels = timed(cfg.replace(frame_store=str(store)),
                                                         functools.partial(FrameStore(store).read, 0))
        row[f"{name}_bytes_per_clip"] = result["bytes"]
        row[f"{name}_max_abs_diff"] = float(np.abs(pixels - reference).max())  # normalized units
    # uint8 batches (data.normalize_on_host=False: the accelerator normalizes): decoding vs the resized store
    raw = cfg.replace(normalize_on_host=False)
    row["loader_decode_uint8"] = timed(raw, lambda: native_clip(cfg, examples, 0))[0]
    row["store_resized_uint8"] = timed(raw.replace(frame_store=str(work_dir / "store_resized")),
                                       functools.partial(FrameStore(work_dir / "store_resized").read, 0))[0]
    return row


def cores_needed(clips_per_core: float, accel_tflops: float, mfu: float, frames: int = 16) -> dict:
    """CPU cores per accelerator for the CTD step of configs/ctd.py:8b at `frames` frames per clip."""
    c = ctd.get_config("8b")
    student = StudentConfig.from_dict({**c.student.to_dict(), "num_frames": frames})
    vit = flops.internvit(InternVLConfig.from_dict(c.teacher.model.to_dict()).vision, frames)["total"]
    per_clip = 3 * flops.student_encoder(student, frames)["total"] + vit
    clips_per_s = accel_tflops * 1e12 * mfu / per_clip
    return {"flops_per_clip": per_clip, "accelerator_clips_per_s": clips_per_s,
            "cores": clips_per_s / clips_per_core if clips_per_core > 0 else None}


def lma_cores_needed(clips_per_core: float, accel_tflops: float, mfu: float, frames: int = 64) -> dict:
    """CPU cores per accelerator for an LMA step of the 87M student (frozen: forward only) with InternVL3-8B's
    projector and LLM trained (forward + backward = 3x the forward over the whole prompt, LM head on every
    position), at `frames` frames per clip in the prompt layout of configs/latency.py:size=real."""
    from configs import latency as latency_config
    from experiments import latency

    plan = latency.validate(latency_config.get_config("size=real"))
    vision = flops.student_vision(plan.student, frames)
    length = latency.llm_length(plan, *latency.layout(plan, "student", frames))
    per_clip = (vision["encoder"] + 3 * vision["projector"]
                + 3 * flops.qwen2_prefill(plan.teacher.text, length, last_only=False)["total"])
    clips_per_s = accel_tflops * 1e12 * mfu / per_clip
    return {"frames": frames, "llm_tokens": length, "flops_per_clip": per_clip,
            "accelerator_clips_per_s": clips_per_s, "cores": clips_per_s / clips_per_core}


def main(argv):
    del argv
    f = flags.FLAGS
    try:
        minutes = [float(m) for m in f.minutes]
        counts = [int(t) for t in f.frames]
        w, h = (int(v) for v in f.size.lower().split("x"))
    except ValueError:
        return cli_error(f"--minutes, --frames must be numbers and --size WIDTHxHEIGHT, got {f.minutes} "
                         f"{f.frames} {f.size}")
    unknown = [c for c in f.codecs if c not in CODECS]
    if (unknown or any(m <= 0 for m in minutes) or any(t < 1 for t in counts) or f.gop < 1
            or min(f.repeats, f.short_repeats) < 1):
        return cli_error(f"unknown --codecs {unknown} (known: {sorted(CODECS)}), or a non-positive --minutes, "
                         "--frames, --gop, --repeats or --short_repeats")
    video_dir = Path(f.video_dir)
    video_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in minutes:
        for codec in f.codecs:
            ext = CODECS[codec][1]
            path = make_video(video_dir / f"{codec}_{m:g}min_gop{f.gop}_{w}x{h}.{ext}", m, codec, f.gop, (h, w))
            n = video.probe_video(path).num_frames
            for t in counts:
                if t > n:
                    continue
                idx = segment_middle_indices(n, t)
                row = {"codec": codec, "minutes": m, "frames": t, "gop": f.gop}
                runs = {method: decode_with(path, idx, method) for method in ("sequential", "seek", "auto")}
                if (dec := decord_with(path, idx)) is not None:
                    runs["decord"] = dec
                # sequential decoding of a long video takes minutes per run: once
                once = frozenset({"sequential"} if m > f.sequential_max_minutes else ())
                repeats = f.short_repeats if m < SHORT_MINUTES else f.repeats
                timed = time_interleaved(runs, repeats, once)
                reference = timed["sequential"][1]
                for method in ("seek", "auto"):
                    if not np.array_equal(timed[method][1], reference):
                        return cli_error(f"{method} frames differ from sequential decoding for {path.name}")
                row.update({method: timed[method][0] for method in ("sequential", "seek", "auto")})
                row["decord"] = timed["decord"][0] if "decord" in timed else None
                if "decord" in timed:
                    row["decord_max_abs_diff"] = int(np.abs(timed["decord"][1].astype(int)
                                                            - reference.astype(int)).max())
                row["speedup_auto_vs_sequential"] = row["sequential"] / row["auto"]
                if f.store:
                    row.update(time_loader(path, t, (f.store_size, f.store_size), repeats, video_dir))
                    for name in STORE_VARIANTS:
                        if STORE_VARIANTS[name][1] == "raw" and row[f"{name}_max_abs_diff"] != 0:
                            return cli_error(f"{name} clip differs from the decoded one for {path.name}")
                    for stage, prefix, base in (("uint8 frames", "frames_", row["frames_decode"]),
                                                ("loader incl. normalize", "", row["loader_decode"])):
                        print(f"[video_io] {codec} {m:g} min, {t} frames at {f.store_size} px, {stage} per clip: "
                              f"decode {base:.3f} s ({1 / base:.1f} clips/s/core); "
                              + "; ".join(f"{n} {row[prefix + n]:.3f} s ({base / row[prefix + n]:.1f}x, "
                                          f"{row[n + '_bytes_per_clip'] / 2**20:.1f} MiB/clip)"
                                          for n in STORE_VARIANTS), flush=True)
                    print(f"[video_io] {codec} {m:g} min, {t} frames at {f.store_size} px, loader with uint8 "
                          f"batches per clip: decode {row['loader_decode_uint8']:.3f} s, store_resized "
                          f"{row['store_resized_uint8']:.3f} s "
                          f"({row['loader_decode_uint8'] / row['store_resized_uint8']:.1f}x)", flush=True)
                rows.append(row)
                print(f"[video_io] {codec} {m:g} min, {t} frames: sequential {row['sequential']:.2f} s, "
                      f"seek {row['seek']:.2f} s, auto {row['auto']:.2f} s "
                      f"({row['speedup_auto_vs_sequential']:.1f}x)"
                      + (f", decord {row['decord']:.2f} s" if row["decord"] is not None else ", decord not installed"),
                      flush=True)
    feed = {}
    for step, frames, estimate in (("ctd", 16, cores_needed), ("lma", f.lma_frames, lma_cores_needed)):
        at = [r for r in rows if r["frames"] == frames]
        if not at:
            continue
        slowest = max(at, key=lambda r: r["auto"])
        feed[step] = estimate(1.0 / slowest["auto"], f.accel_tflops, f.mfu, frames=frames)
        feed[step]["from"] = {k: slowest[k] for k in ("codec", "minutes", "frames")}
        print(f"[video_io] {step.upper()} at {f.accel_tflops:g} TFLOP/s x MFU {f.mfu:g}: "
              f"{feed[step]['accelerator_clips_per_s']:.1f} clips/s of {frames} frames per accelerator; at "
              f"{1.0 / slowest['auto']:.2f} clips/s per core decoding ({slowest['codec']}, {slowest['minutes']:g} "
              f"min) that is {feed[step]['cores']:.1f} cores", flush=True)
    if f.out:
        Path(f.out).write_text(json.dumps({"rows": rows, "feed": feed}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    flags.DEFINE_list("minutes", ["0.25", "5", "60"], "Video lengths in minutes (over 5: the 5-minute video "
                      "repeated, h264/vp9).")
    flags.DEFINE_list("codecs", ["h264"], "Codecs: " + ", ".join(CODECS))
    flags.DEFINE_integer("gop", 120, "Frames between keyframes.")
    flags.DEFINE_list("frames", ["16", "64", "512"], "Frames sampled per clip (segment-middle rule).")
    flags.DEFINE_integer("lma_frames", 64, "Frames per clip of the LMA step in the feeding estimate.")
    flags.DEFINE_string("size", "854x480", "Video size WIDTHxHEIGHT.")
    flags.DEFINE_integer("repeats", 3, "Timed runs per method (median).")
    flags.DEFINE_integer("short_repeats", 21, f"Timed runs per method for videos under {SHORT_MINUTES:g} minute "
                         "(median; their runs are short and noisy).")
    flags.DEFINE_float("sequential_max_minutes", 10.0, "Longer videos time sequential decoding once, not --repeats "
                       "times (it decodes the whole video).")
    flags.DEFINE_string("video_dir", "runs/video_io", "Where the test videos are made and kept.")
    flags.DEFINE_float("accel_tflops", 989.0, "Accelerator peak for the feeding estimate (TFLOP/s).")
    flags.DEFINE_float("mfu", 0.4, "Model FLOP utilization assumed for the feeding estimate.")
    flags.DEFINE_string("out", None, "Write the rows as JSON here.")
    flags.DEFINE_bool("store", False, "Also time the CTD loader decoding vs reading frame stores (time_loader).")
    flags.DEFINE_integer("store_size", 448, "Clip size (square) the loader delivers for --store.")
    run(main)
