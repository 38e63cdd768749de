"""Video decoding with PyAV: round trips through real files written offline, resizing, sampling, bad files."""

import contextlib
import pickle

import av
import numpy as np
import pytest
from PIL import Image

from liteframe_jax.data import video
from liteframe_jax.data.sampling import segment_middle_indices
from liteframe_jax.data.synthetic import SyntheticVideoSpec, make_synthetic_video
from liteframe_jax.data.video import (VideoDecodeError, VideoInfo, decode_frames, load_clip, probe_video,
                                      write_video)

T, SIZE, FPS = 24, 112, 8.0


@pytest.fixture(scope="module")
def clip():
    return make_synthetic_video(3, SyntheticVideoSpec(num_frames=T, size=SIZE, max_objects=3)).frames


@pytest.fixture(scope="module")
def files(clip, tmp_path_factory):
    """The same clip written lossless (libx264rgb, ffv1) and lossy (libx264 4:2:0, mpeg4)."""
    d = tmp_path_factory.mktemp("videos")
    paths = {"lossless": d / "lossless.mp4", "x264": d / "x264.mp4", "mpeg4": d / "mpeg4.mp4", "mkv": d / "ffv1.mkv"}
    write_video(paths["lossless"], clip, fps=FPS, codec="libx264rgb")
    write_video(paths["x264"], clip, fps=FPS, codec="libx264")
    write_video(paths["mpeg4"], clip, fps=FPS, codec="mpeg4")
    write_video(paths["mkv"], clip, fps=FPS, codec="ffv1")
    return paths


def mae(a, b):
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


# ------------------------------------------------------------------------------------------ codecs and probing

@pytest.mark.parametrize("codec", ["libx264", "libx264rgb", "mpeg4", "ffv1"])
def test_bundled_ffmpeg_has_the_encoders_the_tests_use(codec):
    assert av.codec.Codec(codec, "w").name == codec


def test_probe_reads_frame_count_rate_size_and_duration(files):
    assert probe_video(files["lossless"]) == VideoInfo(num_frames=T, fps=FPS, width=SIZE, height=SIZE,
                                                       duration=T / FPS)


def test_probe_counts_frames_when_the_container_stores_no_count(files):
    with av.open(str(files["mkv"])) as c:
        assert c.streams.video[0].frames == 0  # Matroska keeps no frame count
    info = probe_video(files["mkv"])
    assert info.num_frames == T and info.fps == FPS and info.duration == pytest.approx(T / FPS)


# --------------------------------------------------------------------------------------------------- decoding

def test_lossless_round_trip_is_exact(files, clip):
    idx = [0, 5, 11, T - 1]
    out = decode_frames(files["lossless"], idx, size=None)
    assert out.dtype == np.uint8 and out.shape == (4, SIZE, SIZE, 3)
    np.testing.assert_array_equal(out, clip[idx])
    np.testing.assert_array_equal(decode_frames(files["mkv"], idx, size=None), clip[idx])


@pytest.mark.parametrize("name, limit", [("x264", 3.0), ("mpeg4", 6.0)])
def test_lossy_round_trip_is_close(files, clip, name, limit):
    out = decode_frames(files[name], range(T), size=None)
    assert mae(out, clip) < limit


def test_indices_in_any_order_with_repeats(files, clip):
    idx = [7, 2, 7, 0, 23]
    np.testing.assert_array_equal(decode_frames(files["lossless"], idx, size=None), clip[idx])


def test_resize_to_size_ignoring_aspect_with_pil_bicubic(files, clip):
    out = decode_frames(files["lossless"], [4, 9], size=(64, 80))
    assert out.shape == (2, 64, 80, 3)
    for got, src in zip(out, clip[[4, 9]]):
        np.testing.assert_array_equal(got, np.asarray(Image.fromarray(src).resize((80, 64), Image.BICUBIC)))


def test_default_size_is_448(files):
    assert decode_frames(files["lossless"], [0]).shape == (1, 448, 448, 3)


def test_swscale_resize_is_close_to_pil(files):
    pil = decode_frames(files["lossless"], [4, 9], size=(64, 80))
    sws = decode_frames(files["lossless"], [4, 9], size=(64, 80), resample="swscale")
    assert sws.shape == pil.shape and mae(sws, pil) < 3.0


def test_native_size_request_is_a_no_op(files, clip):
    np.testing.assert_array_equal(decode_frames(files["lossless"], [3], size=(SIZE, SIZE)), clip[[3]])


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_thread_count_does_not_change_frames(files, clip, threads):
    np.testing.assert_array_equal(decode_frames(files["lossless"], [1, 20], size=None, threads=threads), clip[[1, 20]])


def test_threads_sets_the_decoder_thread_count(files, monkeypatch):
    seen, real_open = [], video._open_video

    @contextlib.contextmanager
    def spy(path, threads=0):
        with real_open(path, threads) as (container, stream):
            seen.append(stream.codec_context.thread_count)
            yield container, stream

    monkeypatch.setattr(video, "_open_video", spy)
    for threads in (1, 3, 0):
        decode_frames(files["lossless"], [0], size=None, threads=threads)
    assert seen == [1, 3, 0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(indices=[]), "non-empty"),
    (dict(indices=[[0, 1]]), "1-D"),
    (dict(indices=[0.5]), "integers"),
    (dict(indices=[-1]), ">= 0"),
    (dict(indices=[0], threads=-1), "threads"),
    (dict(indices=[0], size=(0, 10)), "size"),
    (dict(indices=[0], resample="nearest"), "resample"),
])
def test_decode_rejects_bad_arguments(files, kwargs, match):
    with pytest.raises(ValueError, match=match):
        decode_frames(files["lossless"], **kwargs)


def test_indices_past_the_end_raise_naming_the_missing_frames(files):
    with pytest.raises(VideoDecodeError, match=r"\[24, 30\].*24 frames") as err:
        decode_frames(files["lossless"], [0, 24, 30], size=None)
    assert err.value.path == str(files["lossless"])


# ------------------------------------------------------------------------------------------------- load_clip

def test_load_clip_segment_sampling_uses_internvl_indices(files, clip):
    frames, idx = load_clip(files["lossless"], 8, size=None)
    np.testing.assert_array_equal(idx, segment_middle_indices(T, 8))
    np.testing.assert_array_equal(frames, clip[idx])


def test_load_clip_segment_sampling_with_a_time_bound(files, clip):
    frames, idx = load_clip(files["lossless"], 4, size=(32, 32), bound=(1.0, 2.0))
    np.testing.assert_array_equal(idx, segment_middle_indices(T, 4, fps=FPS, bound=(1.0, 2.0)))
    assert idx.min() >= 8 and idx.max() <= 16 and frames.shape == (4, 32, 32, 3)


def test_load_clip_fps_sampling_and_cap(files, clip):
    frames, idx = load_clip(files["lossless"], None, size=None, sampling="fps", fps=2.0)
    np.testing.assert_array_equal(idx, [0, 4, 8, 12, 16, 20])  # 3 s at 2 fps from an 8 fps video
    np.testing.assert_array_equal(frames, clip[idx])
    _, capped = load_clip(files["lossless"], 3, size=None, sampling="fps", fps=2.0)
    np.testing.assert_array_equal(capped, [0, 12, 20])  # positions 0, 2.5, 5 of the 6 samples (halves up)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_frames=8, sampling="random"), "sampling must be"),
    (dict(num_frames=8, fps=2.0), "fps is the sampling rate"),
    (dict(num_frames=8, sampling="fps"), "needs fps"),
    (dict(num_frames=None), "needs num_frames"),
    (dict(num_frames=8, bound=(10.0, 12.0)), "starts after the video ends"),
])
def test_load_clip_rejects_bad_arguments(files, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_clip(files["lossless"], **kwargs)


# ---------------------------------------------------------------------------------------------- bad input files

def _assert_decode_error(path, match):
    """probe_video, decode_frames and load_clip all raise VideoDecodeError naming the path."""
    for call in (lambda: probe_video(path), lambda: decode_frames(path, [0]), lambda: load_clip(path, 4)):
        with pytest.raises(VideoDecodeError, match=match) as err:
            call()
        assert str(path) in str(err.value) and err.value.path == str(path)


def test_missing_file(tmp_path):
    _assert_decode_error(tmp_path / "nope.mp4", "file not found")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    _assert_decode_error(tmp_path / "empty.mp4", "empty")


def test_text_file_renamed_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    _assert_decode_error(tmp_path / "notes.mp4", "unreadable or corrupt")


def test_directory_is_not_a_video(tmp_path):
    _assert_decode_error(tmp_path, "not a regular file")


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        c.mux(s.encode(frame))
        c.mux(s.encode())
    _assert_decode_error(path, "no video stream")


def test_truncated_mp4_with_index_at_the_end_is_unreadable(clip, tmp_path):
    path = tmp_path / "cut.mp4"
    write_video(path, clip, fps=FPS, codec="libx264")  # default MP4: the index (moov) is written last
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _assert_decode_error(path, "cut.mp4")


def test_truncated_streaming_mp4_decodes_up_to_the_cut_then_raises(clip, tmp_path):
    path = tmp_path / "cut_fast.mp4"
    write_video(path, clip, fps=FPS, codec="libx264rgb", faststart=True)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.8)])
    assert probe_video(path).num_frames == T  # the header still promises every frame
    np.testing.assert_array_equal(decode_frames(path, [0, 3], size=None), clip[[0, 3]])
    with pytest.raises(VideoDecodeError, match=r"\[23\] not decodable: decoding stopped after \d+ frames"):
        decode_frames(path, [0, T - 1], size=None)
    with pytest.raises(VideoDecodeError, match="not decodable"):
        load_clip(path, 8)


def test_corrupt_frame_data_means_zero_decodable_frames(clip, tmp_path):
    path = tmp_path / "zeroed.mp4"
    write_video(path, clip, fps=FPS, codec="libx264")
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    box_size = int.from_bytes(data[at - 4: at], "big")
    data[at + 4: at - 4 + box_size] = bytes(box_size - 8)  # keep the container, zero every coded frame
    path.write_bytes(bytes(data))
    assert probe_video(path).num_frames == T
    with pytest.raises(VideoDecodeError, match="zero decodable frames"):
        decode_frames(path, [0])


def test_decode_error_is_a_value_error_and_survives_pickling():
    err = VideoDecodeError("/data/v.mp4", "file not found")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, str(err))


# ------------------------------------------------------------------------------------------------ write_video

@pytest.mark.parametrize("frames, kwargs, match", [
    (np.zeros((2, 16, 16, 3), np.float32), {}, "uint8"),
    (np.zeros((0, 16, 16, 3), np.uint8), {}, "non-empty"),
    (np.zeros((2, 16, 16), np.uint8), {}, r"\(T, H, W, 3\)"),
    (np.zeros((2, 15, 16, 3), np.uint8), {}, "even frame size"),
    (np.zeros((2, 16, 16, 3), np.uint8), dict(codec="no-such-codec"), "no encoder"),
    (np.zeros((2, 16, 16, 3), np.uint8), dict(fps=0), "fps must be positive"),
])
def test_write_video_rejects_bad_input(tmp_path, frames, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / "x.mp4", frames, **kwargs)


def test_write_video_odd_size_works_with_a_full_chroma_format(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 15, 17, 3), dtype=np.uint8)
    write_video(tmp_path / "odd.mp4", frames, fps=5, codec="libx264rgb")
    np.testing.assert_array_equal(decode_frames(tmp_path / "odd.mp4", [0, 1, 2], size=None), frames)
