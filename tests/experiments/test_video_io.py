"""experiments.video_io: test videos it makes, the methods it times, the feeding estimate."""

import numpy as np
import pytest

from experiments import video_io
from liteframe_jax.data import video
from liteframe_jax.data.sampling import segment_middle_indices


def test_made_videos_have_the_asked_length_and_keyframe_spacing(tmp_path):
    path = video_io.make_video(tmp_path / "a.mp4", minutes=0.05, codec="h264", gop=30, size=(48, 64),
                               log=lambda _: None)
    info = video.probe_video(path)
    assert info.num_frames == 90 and (info.width, info.height) == (64, 48)
    index = video.frame_index(path)
    assert index.keyframes == (0, 30, 60)
    frames = video.decode_frames(path, [0, 45], size=None, method="sequential")
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 5  # the scene moves


def test_every_method_is_timed_on_the_same_frames(tmp_path):
    path = video_io.make_video(tmp_path / "b.webm", minutes=0.05, codec="vp9", gop=30, size=(48, 64),
                               log=lambda _: None)
    idx = segment_middle_indices(90, 4)
    calls = []

    def counted(name, run):
        def wrapper():
            calls.append(name)
            return run()
        return wrapper

    runs = {m: counted(m, video_io.decode_with(path, idx, m)) for m in ("sequential", "seek", "auto")}
    results = video_io.time_interleaved(runs, repeats=3, once=frozenset({"sequential"}))
    for seconds, frames in results.values():
        assert seconds > 0
        np.testing.assert_array_equal(frames, results["sequential"][1])
    # round-robin, the slow method in the first round only
    assert calls == ["sequential", "seek", "auto", "seek", "auto", "seek", "auto"]


def test_cores_needed_scales_with_the_accelerator_rate():
    slow = video_io.cores_needed(clips_per_core=2.0, accel_tflops=100.0, mfu=0.5)
    fast = video_io.cores_needed(clips_per_core=2.0, accel_tflops=400.0, mfu=0.5)
    assert slow["flops_per_clip"] > 1e12  # 16 frames at 448 px through the 87M student x3 and InternViT-300M
    assert fast["cores"] == pytest.approx(4 * slow["cores"])


def test_the_loader_is_timed_decoding_and_reading_each_store_with_identical_raw_clips(tmp_path):
    path = video_io.make_video(tmp_path / "c.mp4", minutes=0.02, codec="h264", gop=12, size=(48, 64),
                               log=lambda _: None)
    row = video_io.time_loader(path, frames=4, size=(32, 32), repeats=1, work_dir=tmp_path)
    for name in ("loader_decode", *video_io.STORE_VARIANTS, "loader_decode_uint8", "store_resized_uint8"):
        assert row[name] > 0
    assert row["store_native_max_abs_diff"] == 0 and row["store_resized_max_abs_diff"] == 0
    assert 0 < row["store_jpeg_max_abs_diff"] < 1  # normalized units: lossy, but close
    assert row["store_native_bytes_per_clip"] > 4 * 48 * 64 * 3 > row["store_jpeg_bytes_per_clip"]
    assert 4 * 32 * 32 * 3 < row["store_resized_bytes_per_clip"] < 4 * 48 * 64 * 3


def test_a_long_video_repeats_the_segment_frame_for_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "SEGMENT_MINUTES", 0.05)  # 90 frames
    long = video_io.make_video(tmp_path / "h264_0.15min_gop30_48x64.mp4", minutes=0.15, codec="h264", gop=30,
                               size=(48, 64), log=lambda _: None)
    segment = tmp_path / "h264_0.05min_gop30_48x64.mp4"
    assert segment.exists() and video.probe_video(long).num_frames == 270
    assert video.frame_index(long).keyframes == tuple(range(0, 270, 30))
    idx = np.array([0, 89, 90, 91, 179, 180, 269])
    frames = video.decode_frames(long, idx, size=None, method="sequential")
    np.testing.assert_array_equal(frames, video.decode_frames(long, idx, size=None, method="seek"))
    np.testing.assert_array_equal(frames, video.decode_frames(segment, idx % 90, size=None, method="sequential"))


@pytest.mark.parametrize("minutes, codec, gop", [(0.12, "h264", 30), (0.15, "h264", 40), (0.15, "hevc", 30)])
def test_a_long_video_that_cannot_repeat_its_segment_is_refused(tmp_path, monkeypatch, minutes, codec, gop):
    monkeypatch.setattr(video_io, "SEGMENT_MINUTES", 0.05)
    with pytest.raises(ValueError, match="minutes"):
        video_io.make_video(tmp_path / f"x.{video_io.CODECS[codec][1]}", minutes, codec, gop, (48, 64))


def test_lma_cores_scale_with_the_rate_and_the_frames():
    base = video_io.lma_cores_needed(clips_per_core=1.0, accel_tflops=100.0, mfu=0.5, frames=64)
    assert video_io.lma_cores_needed(1.0, 200.0, 0.5, frames=64)["cores"] == pytest.approx(2 * base["cores"])
    longer = video_io.lma_cores_needed(1.0, 100.0, 0.5, frames=256)
    assert longer["llm_tokens"] > base["llm_tokens"] and longer["flops_per_clip"] > base["flops_per_clip"]


def test_non_positive_rounds_are_refused_before_any_video_is_made(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for flag in ("--repeats=0", "--short_repeats=0"):
        proc = subprocess.run([sys.executable, "-m", "experiments.video_io", flag, f"--video_dir={tmp_path / 'v'}"],
                              cwd=root, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "--short_repeats" in proc.stderr
        assert not (tmp_path / "v").exists()
