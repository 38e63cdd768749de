"""Frame-index rules: InternVL's segment-middle `get_index` (exactly) and fixed-rate sampling."""

import numpy as np
import pytest

from liteframe_jax.data.sampling import fixed_fps_indices, segment_middle_indices


def internvl_get_index(bound, fps, max_frame, first_idx=0, num_segments=32):
    """InternVL's get_index, transcribed from the InternVL3 model card (the oracle)."""
    if bound:
        start, end = bound[0], bound[1]
    else:
        start, end = -100000, 100000
    start_idx = max(first_idx, round(start * fps))
    end_idx = min(round(end * fps), max_frame)
    seg_size = float(end_idx - start_idx) / num_segments
    return np.array([int(start_idx + (seg_size / 2) + np.round(seg_size * idx)) for idx in range(num_segments)])


# ----------------------------------------------------------------------------------------------- segment rule

def test_segment_worked_examples_from_the_reference():
    np.testing.assert_array_equal(segment_middle_indices(300, 8), [18, 55, 93, 130, 168, 205, 242, 280])
    np.testing.assert_array_equal(segment_middle_indices(64, 8), [3, 11, 19, 27, 35, 42, 50, 58])


def test_segment_returns_int_indices_inside_the_video():
    idx = segment_middle_indices(300, 8)
    assert idx.dtype == np.int64 and idx.shape == (8,)
    assert idx.min() >= 0 and idx.max() <= 299 and np.all(np.diff(idx) >= 0)


@pytest.mark.parametrize("n", [1, 2, 7, 31, 64, 100, 300, 1001])
@pytest.mark.parametrize("s", [1, 3, 8, 16, 32])
def test_segment_matches_internvl_get_index_without_bound(n, s):
    np.testing.assert_array_equal(segment_middle_indices(n, s, fps=30.0),
                                  internvl_get_index(None, 30.0, n - 1, num_segments=s))


@pytest.mark.parametrize("bound", [(2.0, 5.0), (0.0, 1.0), (1.25, 9.99), (3.3, 3.3), (4.0, 100.0)])
@pytest.mark.parametrize("fps", [30.0, 29.97, 8.0])
def test_segment_matches_internvl_get_index_with_bound(bound, fps):
    np.testing.assert_array_equal(segment_middle_indices(300, 8, fps=fps, bound=bound),
                                  internvl_get_index(bound, fps, 299, num_segments=8))


def test_segment_bound_converts_seconds_with_round_t_times_fps():
    # start = round(2*30) = 60, end = round(5*30) = 150, seg = 11.25; np.round(22.5) = 22 (half to even).
    np.testing.assert_array_equal(segment_middle_indices(300, 8, fps=30, bound=(2, 5)),
                                  [65, 76, 87, 99, 110, 121, 133, 144])


def test_segment_bound_end_past_the_video_is_clamped_to_the_last_frame():
    np.testing.assert_array_equal(segment_middle_indices(300, 8, fps=30, bound=(5, 100)),
                                  segment_middle_indices(300, 8, first_idx=150))


def test_segment_first_idx_moves_the_start():
    np.testing.assert_array_equal(segment_middle_indices(300, 8, first_idx=100),
                                  internvl_get_index(None, 1.0, 299, first_idx=100, num_segments=8))


def test_segment_more_segments_than_frames_repeats_indices_like_internvl():
    np.testing.assert_array_equal(segment_middle_indices(4, 8), [0, 0, 1, 1, 2, 2, 2, 3])
    np.testing.assert_array_equal(segment_middle_indices(1, 5), [0, 0, 0, 0, 0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_video_frames=0, num_segments=8), "num_video_frames must be positive"),
    (dict(num_video_frames=-3, num_segments=8), "num_video_frames must be positive"),
    (dict(num_video_frames=100, num_segments=0), "num_segments must be positive"),
    (dict(num_video_frames=100, num_segments=2.5), "num_segments must be an integer"),
    (dict(num_video_frames=100, num_segments=8, bound=(1, 2)), "needs the video fps"),
    (dict(num_video_frames=100, num_segments=8, fps=0, bound=(1, 2)), "fps must be positive"),
    (dict(num_video_frames=100, num_segments=8, fps=-30, bound=(1, 2)), "fps must be positive"),
    (dict(num_video_frames=100, num_segments=8, fps=30, bound=(2, 1)), "0 <= start <= end"),
    (dict(num_video_frames=100, num_segments=8, fps=30, bound=(-1, 2)), "0 <= start <= end"),
    (dict(num_video_frames=100, num_segments=8, fps=30, bound=(4, 9)), "starts after the video ends"),
    (dict(num_video_frames=100, num_segments=8, fps=30, bound=(1,)), "pair of seconds"),
    (dict(num_video_frames=100, num_segments=8, first_idx=100), "first_idx"),
])
def test_segment_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment_middle_indices(**kwargs)


# ------------------------------------------------------------------------------------------- fixed-rate rule

def test_fps_one_sample_per_second():
    np.testing.assert_array_equal(fixed_fps_indices(300, 30.0, 1.0), np.arange(0, 300, 30))


def test_fps_count_is_duration_times_rate():
    assert len(fixed_fps_indices(300, 30.0, 2.0)) == 20          # 10 s at 2 fps
    np.testing.assert_array_equal(fixed_fps_indices(300, 30.0, 2.0), np.arange(0, 300, 15))
    assert len(fixed_fps_indices(301, 30.0, 1.0)) == 11          # the 11th sample (t=10 s) is frame 300
    assert len(fixed_fps_indices(90, 30.0, 0.25)) == 1           # 3 s at one frame every 4 s


def test_fps_non_integer_ratio_takes_the_nearest_frame():
    idx = fixed_fps_indices(300, 29.97, 2.0)
    expected = np.floor(np.arange(len(idx)) * 29.97 / 2.0 + 0.5)
    np.testing.assert_array_equal(idx, expected)
    assert len(idx) == 20 and idx.max() <= 299


def test_fps_above_the_video_rate_repeats_frames():
    idx = fixed_fps_indices(10, 30.0, 60.0)
    assert len(idx) == 19 and idx.max() == 9
    assert set(np.bincount(idx)) <= {1, 2}


def test_fps_max_frames_subsamples_uniformly_and_keeps_the_ends():
    full = fixed_fps_indices(300, 30.0, 2.0)
    capped = fixed_fps_indices(300, 30.0, 2.0, max_frames=5)
    assert len(capped) == 5 and set(capped) <= set(full)
    assert capped[0] == full[0] and capped[-1] == full[-1]
    np.testing.assert_array_equal(capped, [0, 75, 150, 210, 285])
    np.testing.assert_array_equal(fixed_fps_indices(300, 30.0, 2.0, max_frames=100), full)


def test_fps_bound_includes_both_ends():
    np.testing.assert_array_equal(fixed_fps_indices(300, 30.0, 1.0, bound=(2.0, 5.0)), [60, 90, 120, 150])
    np.testing.assert_array_equal(fixed_fps_indices(300, 30.0, 1.0, bound=(8.0, 60.0)), [240, 270])


@pytest.mark.parametrize("args, kwargs, match", [
    ((0, 30.0, 1.0), {}, "num_video_frames must be positive"),
    ((100, 0.0, 1.0), {}, "video_fps must be positive"),
    ((100, 30.0, 0.0), {}, "sample_fps must be positive"),
    ((100, 30.0, float("nan")), {}, "sample_fps must be positive"),
    ((100, 30.0, 1.0), dict(max_frames=0), "max_frames must be positive"),
    ((100, 30.0, 1.0), dict(bound=(3, 2)), "0 <= start <= end"),
    ((100, 30.0, 1.0), dict(bound=(10, 20)), "starts after the video ends"),
])
def test_fps_rejects_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fixed_fps_indices(*args, **kwargs)
