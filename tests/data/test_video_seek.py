"""Seeking gives the same frames as decoding from the start: B-frames, open GOPs, variable frame rate, non-zero
start times, MP4 / MKV / WebM, H.264 / HEVC / VP9 / AV1; and the frame index and seek plan behind it."""

import fractions
import logging

import av
import numpy as np
import pytest

import struct

from liteframe_jax.data import video
from liteframe_jax.data.mp4_boxes import read_sample_table
from liteframe_jax.data.video import VideoDecodeError, decode_frames, frame_index, load_clip, probe_video
from liteframe_jax.data.video_index import SEEK_COST_FRAMES, FrameIndex, plan_seeks, sequential_cost

H, W, T = 64, 96, 72


def moving_scene(t: int) -> np.ndarray:
    """(H, W, 3) uint8: a gradient background, a moving square and a little noise (so every frame differs and
    inter prediction has real work to do)."""
    rng = np.random.default_rng(t)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([(x * 2 + t * 3) % 256, (y * 3 + t) % 256, ((x + y) + 5 * t) % 256], -1).astype(np.int32)
    r, c = (t * 2) % (H - 16), (t * 3) % (W - 16)
    img[r:r + 16, c:c + 16] = (255 - 4 * t % 256, 40, 200)
    img += rng.integers(-6, 7, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write(path, codec: str, options: dict, *, pts=None, time_base=fractions.Fraction(1, 25), pix_fmt="yuv420p",
          container_options=None):
    """Encode T moving_scene frames; `pts` (T,) sets each frame's timestamp in `time_base` (VFR, offsets)."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base  # the encoder keeps our pts
        stream.options = options
        for t in range(T):
            frame = av.VideoFrame.from_ndarray(moving_scene(t), format="rgb24")
            frame.pts = int(pts[t]) if pts is not None else t
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


X264_BFRAMES = {"g": "12", "bf": "3", "x264-params": "scenecut=0"}
STREAMS = {
    "h264_bframes_mp4": ("mp4", "libx264", X264_BFRAMES),
    "h264_open_gop_mp4": ("mp4", "libx264", {"g": "12", "bf": "3", "x264-params": "open-gop=1:scenecut=0"}),
    "h264_bframes_mkv": ("mkv", "libx264", X264_BFRAMES),
    "hevc_mkv": ("mkv", "libx265", {"x265-params": "keyint=12:min-keyint=12:bframes=3:log-level=none"}),
    "hevc_mp4": ("mp4", "libx265", {"x265-params": "keyint=12:min-keyint=12:bframes=3:log-level=none"}),
    "vp9_webm": ("webm", "libvpx-vp9", {"g": "12", "deadline": "realtime", "cpu-used": "8"}),
    "av1_webm": ("webm", "libsvtav1", {"g": "12", "preset": "12"}),
    "av1_mp4": ("mp4", "libsvtav1", {"g": "12", "preset": "12"}),
}
WANTED = [[70, 3, 41], [5, 6, 7, 8, 60, 61], [0, T - 1], [33, 33, 12, 50, 50, 13], list(range(0, T, 9))]


def assert_seek_equals_sequential(path, caplog):
    with caplog.at_level(logging.WARNING, logger="liteframe_jax.data.video"):
        for wanted in WANTED:
            seq = decode_frames(path, wanted, size=None, method="sequential")
            np.testing.assert_array_equal(decode_frames(path, wanted, size=None, method="seek"), seq)
            np.testing.assert_array_equal(decode_frames(path, wanted, size=None, method="auto"), seq)
    assert not [r for r in caplog.records if "sequentially" in r.getMessage()], "seeking fell back"


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_seeking_gives_the_frames_of_sequential_decoding(tmp_path, caplog, name):
    ext, codec, options = STREAMS[name]
    path = write(tmp_path / f"{name}.{ext}", codec, options)
    index = frame_index(path)
    assert index is not None and index.num_frames == T
    assert len(index.keyframes) >= 4  # one every 12 frames: the plans below really seek
    assert_seek_equals_sequential(path, caplog)


def test_variable_frame_rate_and_a_non_zero_start(tmp_path, caplog):
    gaps = np.random.default_rng(0).integers(20, 90, T)  # milliseconds between frames
    pts = 5000 + np.concatenate([[0], np.cumsum(gaps[:-1])])
    path = write(tmp_path / "vfr.mkv", "libx264", X264_BFRAMES, pts=pts, time_base=fractions.Fraction(1, 1000))
    index = frame_index(path)
    assert index is not None and index.num_frames == T and index.pts[0] >= 5000
    assert len(set(np.diff(index.pts).tolist())) > 10  # really variable
    assert_seek_equals_sequential(path, caplog)


def test_load_clip_from_a_long_video_seeks_and_matches(tmp_path):
    path = write(tmp_path / "clip.mp4", "libx264", X264_BFRAMES)
    seq, idx = load_clip(path, 4, size=(32, 32), method="sequential")
    auto, idx_auto = load_clip(path, 4, size=(32, 32))
    np.testing.assert_array_equal(idx_auto, idx)
    np.testing.assert_array_equal(auto, seq)


def test_a_truncated_file_decodes_what_is_there_and_falls_back_once_for_the_rest(tmp_path, caplog):
    path = write(tmp_path / "cut.mkv", "libx264", X264_BFRAMES)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with caplog.at_level(logging.WARNING, logger="liteframe_jax.data.video"):
        early = decode_frames(path, [1, 2, 13], size=None, method="seek")
        for late in ([T - 2], [T - 1]):  # beyond the cut: sequential decoding gives the usual error
            with pytest.raises(VideoDecodeError, match="not decodable"):
                decode_frames(path, late, size=None, method="seek")
    np.testing.assert_array_equal(early, decode_frames(path, [1, 2, 13], size=None, method="sequential"))
    assert len([r for r in caplog.records if "sequentially" in r.getMessage()]) == 1


def indices_from_both_paths(path):
    """(index from the MP4 sample tables or None, index from demuxing every packet)."""
    with video._open_video(path, 1) as (container, stream):
        from_tables = video._index_from_sample_table(str(path), container, stream)
    with video._open_video(path, 1) as (container, stream):
        return from_tables, video._index_from_packets(container, stream)


@pytest.mark.parametrize("name", sorted(n for n in STREAMS if STREAMS[n][0] == "mp4"))
def test_a_long_mp4_is_indexed_from_its_sample_tables_exactly_as_by_demuxing(tmp_path, name):
    ext, codec, options = STREAMS[name]
    path = write(tmp_path / f"{name}.{ext}", codec, options)
    from_tables, demuxed = indices_from_both_paths(path)
    if name.startswith("h264"):
        assert from_tables is not None  # the common case takes the fast path
    if from_tables is not None:
        np.testing.assert_array_equal(from_tables.pts, demuxed.pts)
        assert from_tables.keyframes == demuxed.keyframes


def test_the_sample_table_index_handles_a_non_zero_start_and_a_variable_frame_rate(tmp_path):
    gaps = np.random.default_rng(1).integers(20, 90, T)
    pts = 7000 + np.concatenate([[0], np.cumsum(gaps[:-1])])
    path = write(tmp_path / "vfr.mp4", "libx264", X264_BFRAMES, pts=pts, time_base=fractions.Fraction(1, 1000))
    from_tables, demuxed = indices_from_both_paths(path)
    assert from_tables is not None and len(set(np.diff(from_tables.pts).tolist())) > 10
    np.testing.assert_array_equal(from_tables.pts, demuxed.pts)
    assert from_tables.keyframes == demuxed.keyframes


def trim_start(path, frames: int):
    """Rewrite the MP4's edit list in place so that playback starts `frames` frames later (as `ffmpeg -ss ... -c
    copy` cuts do): FFmpeg then decodes those frames for reference but never outputs them."""
    data = bytearray(path.read_bytes())
    at = data.find(b"elst")
    assert at > 0 and data[at + 4] == 0 and struct.unpack_from(">I", data, at + 8)[0] == 1  # one version-0 edit
    media_time = struct.unpack_from(">i", data, at + 16)[0]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame_ticks = int(1 / (stream.average_rate * stream.time_base))
    struct.pack_into(">i", data, at + 16, media_time + frames * frame_ticks)
    path.write_bytes(bytes(data))


def test_frames_cut_by_an_edit_list_are_not_counted_and_seeking_still_matches(tmp_path, caplog):
    path = write(tmp_path / "cut.mp4", "libx264", X264_BFRAMES)
    trim_start(path, 5)
    assert probe_video(path).num_frames == T - 5
    with video._open_video(path, 1) as (container, stream):
        assert video._index_from_sample_table(str(path), container, stream) is None  # discards: demux instead
    index = frame_index(path)
    assert index is not None and index.num_frames == T - 5
    for wanted in ([10, 40], [20], [7, 8, 9, 66], [0, 3, 30, 66]):
        seq = decode_frames(path, wanted, size=None, method="sequential")
        np.testing.assert_array_equal(decode_frames(path, wanted, size=None, method="seek"), seq)
        np.testing.assert_array_equal(decode_frames(path, wanted, size=None, method="auto"), seq)
    with pytest.raises(VideoDecodeError, match="not decodable"):
        decode_frames(path, [T - 5], size=None, method="sequential")


def test_a_fragmented_mp4_is_demuxed_for_its_index(tmp_path, caplog):
    path = write(tmp_path / "frag.mp4", "libx264", X264_BFRAMES,
                 container_options={"movflags": "frag_keyframe+empty_moov"})
    with av.open(str(path)) as container:
        assert read_sample_table(path, container.streams.video[0].id) is None
    index = frame_index(path)
    assert index is not None and index.num_frames == T
    assert_seek_equals_sequential(path, caplog)


def test_unwanted_non_reference_frames_are_not_decoded(tmp_path):
    path = write(tmp_path / "b.mp4", "libx264", X264_BFRAMES)
    index = frame_index(path)
    wanted_pts = {int(index.pts[f]) for f in (3, 40)}
    with video._open_video(path, 1) as (container, stream):
        produced = [f.pts for f in video._decode_skipping(container, stream, wanted_pts)]
    assert wanted_pts <= set(produced)
    assert len(produced) < T * 3 // 4  # x264 with 3 B-frames: about a third of the frames are non-reference


def test_a_bad_method_is_refused(tmp_path):
    path = write(tmp_path / "a.mp4", "libx264", X264_BFRAMES)
    with pytest.raises(ValueError, match="method must be one of"):
        decode_frames(path, [0], method="fast")


# ------------------------------------------------------------------------------------------------ index and plan

def test_frame_index_orders_packets_by_presentation_time():
    # decode order I P B B (pts 0 3 1 2) then I P B (4 6 5): frames are the pts in ascending order
    index = FrameIndex.from_packets([(0, True), (3, False), (1, False), (2, False), (4, True), (6, False), (5, False)])
    np.testing.assert_array_equal(index.pts, [0, 1, 2, 3, 4, 5, 6])
    assert index.keyframes == (0, 4)
    assert index.frame_of_pts(5) == 5 and index.frame_of_pts(7) is None
    assert index.keyframe_before(3) == 0 and index.keyframe_before(6) == 4


@pytest.mark.parametrize("packets", [[], [(0, True), (None, False)], [(0, True), (1, False), (1, False)]])
def test_frames_that_cannot_be_located_give_no_index(packets):
    assert FrameIndex.from_packets(packets) is None


def gop_index(n: int, gop: int) -> FrameIndex:
    return FrameIndex(np.arange(n, dtype=np.int64), tuple(range(0, n, gop)))


def test_the_plan_seeks_only_where_it_saves_decoding():
    index = gop_index(10_000, 120)
    sparse = [100, 5000, 9000]
    plan = plan_seeks(index, sparse)
    assert plan.num_seeks == 3
    assert plan.cost == sum(w - index.keyframe_before(w) + 1 + SEEK_COST_FRAMES for w in sparse)
    assert plan.cost < sequential_cost(sparse) / 20
    dense = [0, 2, 4, 6, 8]  # consecutive wanted frames in one GOP: decode forward, one seek at the start
    plan = plan_seeks(index, dense)
    assert plan.seeks == (0, None, None, None, None)
    assert plan.cost == 9 + SEEK_COST_FRAMES


def test_no_plan_for_frames_outside_the_index_or_before_the_first_keyframe():
    index = gop_index(100, 10)
    assert plan_seeks(index, [100]) is None
    assert plan_seeks(FrameIndex(np.arange(20), (5,)), [2]) is None
