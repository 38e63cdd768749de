"""Events clips: deterministic, every object is drawn exactly in its recorded frames and box (the persistent one
on top), events are brief, sparse and strictly ordered, flashes fill the frame in one new colour, events are inside
a free quadrant (or, event_size="large", large and central), and rendering is cheap."""

import json
import time

import numpy as np
import pytest

from liteframe_jax.data.synthetic import PALETTE, SHAPES, shape_mask
from liteframe_jax.data.synthetic_events import (LARGE_JITTER, LARGE_SIDE, MAX_FLASHES, MAX_REPEATS, NUM_SINGLES,
                                                 EventVideoSpec, event_starts, make_event_video)

SPEC = EventVideoSpec()
SMALL = EventVideoSpec(num_frames=40, size=48, min_event_frames=2, max_event_frames=4, min_gap_frames=1, seed=5,
                       background_noise=0, flash_frames=3)
LARGE = EventVideoSpec(event_size="large")
INDICES = range(30)


def packed(frames):
    """int32 (T, H, W): each pixel's RGB as one number, so a colour is found with one comparison."""
    f = frames.astype(np.int32)
    return (f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]


def color_pixels(pixels, color):
    """bool (T, H, W): where packed frames (T, H, W) show exactly the palette colour."""
    r, g, b = PALETTE[color]
    return pixels == (r << 16 | g << 8 | b)


@pytest.fixture(scope="module")
def videos():
    return [make_event_video(i, SPEC) for i in INDICES]


# -------------------------------------------------------------------------------------------------- determinism

def test_same_index_and_spec_give_the_identical_clip():
    a, b = make_event_video(3, SPEC), make_event_video(3, SPEC)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.attributes() == b.attributes()
    assert not np.array_equal(a.frames, make_event_video(4, SPEC).frames)
    assert not np.array_equal(a.frames, make_event_video(3, EventVideoSpec(seed=1)).frames)


def test_default_clip_shape_type_and_id(videos):
    v = videos[0]
    assert v.frames.dtype == np.uint8 and v.frames.shape == (128, 112, 112, 3)
    assert v.video_id == "synthetic:0:0"


# ---------------------------------------------------------------------------------------------------- content

def drawn_mask(o, shape):
    """bool (T, H, W): where object `o` would be drawn on its own."""
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = o.box
    mask[o.start:o.end, y0:y1, x0:x1] = shape_mask(o.shape, x1 - x0)
    return mask


def test_each_object_is_drawn_exactly_in_its_frames_and_box_and_nowhere_else(videos):
    large = [make_event_video(i, LARGE) for i in range(10)]
    for v in videos + [make_event_video(i, SMALL) for i in range(10)] + large:
        colors, pixels = {v.persistent.color} | {e.color for e in v.events}, packed(v.frames)
        on_top = drawn_mask(v.persistent, pixels.shape)  # the persistent object hides what is under it
        covered = np.zeros(pixels.shape, bool)  # where some object is drawn
        for color in colors:
            drawn = color_pixels(pixels, color)
            if color == v.persistent.color:
                expected = on_top
            else:
                expected = np.logical_or.reduce([drawn_mask(o, pixels.shape) for o in v.appearances(color)]) & ~on_top
            np.testing.assert_array_equal(drawn, expected, err_msg=f"{v.video_id} {color}")
            covered |= expected
        flash_colors = {f.color for f in v.flashes}
        for color in flash_colors:  # a flash fills its frames wherever no object is drawn (no background noise
            expected = np.zeros(pixels.shape, bool)  # in SMALL; the default's noise keeps some pixels off)
            for f in v.flashes:
                expected[f.start:f.end] = True
            drawn = color_pixels(pixels, color)
            assert not (drawn & ~expected).any() and not (drawn & covered).any(), v.video_id
            if not v.spec.background_noise:
                np.testing.assert_array_equal(drawn, expected & ~covered, err_msg=f"{v.video_id} flash")
        for color in set(PALETTE) - colors - flash_colors:
            assert not color_pixels(pixels, color).any()


def test_flashes_are_one_new_colour_full_frame_and_separated(videos):
    counts = set()
    for v in videos + [make_event_video(i, SMALL) for i in range(10)]:
        spec = v.spec
        assert 1 <= len(v.flashes) <= spec.max_flashes
        assert len({f.color for f in v.flashes}) == 1
        assert v.flashes[0].color not in {v.persistent.color} | {e.color for e in v.events}
        for f in v.flashes:
            assert f.end - f.start == spec.flash_frames and f.box == (0, 0, spec.size, spec.size)
        for a, b in zip(v.flashes, v.flashes[1:]):
            assert b.start - a.end >= spec.min_gap_frames
        counts.add(len(v.flashes))
    assert counts == set(range(1, MAX_FLASHES + 1))


def test_switching_flashes_off_leaves_the_rest_of_the_clip_unchanged():
    for i in range(5):
        with_flashes, without = make_event_video(i, SPEC), make_event_video(i, EventVideoSpec(max_flashes=0))
        assert without.flashes == ()
        assert (with_flashes.persistent, with_flashes.events) == (without.persistent, without.events)
        still = np.ones(SPEC.num_frames, bool)
        for f in with_flashes.flashes:
            still[f.start:f.end] = False
        np.testing.assert_array_equal(with_flashes.frames[still], without.frames[still])
        assert not np.array_equal(with_flashes.frames[~still], without.frames[~still])


def test_leaving_the_persistent_object_out_changes_only_its_pixels():
    for i in range(5):
        shown, hidden = make_event_video(i, SPEC), make_event_video(i, EventVideoSpec(show_persistent=False))
        assert hidden.persistent is None and hidden.attributes()["persistent"] is None
        assert (shown.events, shown.flashes, shown.repeated) == (hidden.events, hidden.flashes, hidden.repeated)
        x0, y0, x1, y1 = shown.persistent.box
        inside = np.zeros(shown.frames.shape[1:3], bool)
        inside[y0:y1, x0:x1] = shape_mask(shown.persistent.shape, x1 - x0)
        np.testing.assert_array_equal(shown.frames[:, ~inside], hidden.frames[:, ~inside])
        assert not color_pixels(packed(hidden.frames), shown.persistent.color).any()


def test_events_are_brief_ordered_and_separated(videos):
    for v in videos + [make_event_video(i, SMALL) for i in range(10)]:
        spec = v.spec
        for e in v.events:
            assert spec.min_event_frames <= e.end - e.start <= spec.max_event_frames
            assert 0 <= e.start < e.end <= spec.num_frames
        for a, b in zip(v.events, v.events[1:]):
            assert b.start - a.end >= spec.min_gap_frames, v.video_id


def test_roles_colours_and_counts(videos):
    repeats = set()
    for v in videos:
        assert len(v.singles) == NUM_SINGLES
        assert all(len(v.appearances(e.color)) == 1 for e in v.singles)
        colors = [v.persistent.color, v.repeated[0]] + [e.color for e in v.singles]
        assert len(set(colors)) == len(colors)  # a colour names one object
        assert all(e.shape == v.repeated[1] for e in v.appearances(v.repeated[0]))
        repeats.add(len(v.appearances(v.repeated[0])))
    assert repeats == set(range(MAX_REPEATS + 1))


def test_large_events_are_central_squares_reaching_into_every_quadrant():
    half, size = SPEC.size // 2, SPEC.size
    for v in [make_event_video(i, LARGE) for i in INDICES]:
        for e in v.events:
            x0, y0, x1, y1 = e.box
            assert x1 - x0 == y1 - y0 and round(LARGE_SIDE[0] * size) <= x1 - x0 <= round(LARGE_SIDE[1] * size)
            assert 0 <= x0 and 0 <= y0 and x1 <= size and y1 <= size
            reach = LARGE_JITTER * size + 1
            assert abs((x0 + x1) / 2 - half) <= reach and abs((y0 + y1) / 2 - half) <= reach
            assert min(half - x0, x1 - half, half - y0, y1 - half) >= 0.15 * size  # a good part of every quadrant


def test_large_events_change_only_the_events_boxes(videos):
    for v in videos[:5]:
        q = make_event_video(v.index, LARGE)
        assert q.persistent == v.persistent and q.flashes == v.flashes and q.repeated == v.repeated
        assert q.background_level == v.background_level
        assert [(e.color, e.shape, e.start, e.end) for e in q.events] == [(e.color, e.shape, e.start, e.end)
                                                                         for e in v.events]
        assert all(a.box != b.box for a, b in zip(q.events, v.events))


def test_objects_are_large_and_never_share_a_quadrant_with_the_persistent_object(videos):
    half = SPEC.size // 2
    for v in videos:
        quadrant = {(o.box[0] // half, o.box[1] // half) for o in (v.persistent,)}
        for o in (v.persistent, *v.events):
            x0, y0, x1, y1 = o.box
            assert x1 - x0 == y1 - y0 and 0.33 * SPEC.size <= x1 - x0 <= half
            assert x0 // half == (x1 - 1) // half and y0 // half == (y1 - 1) // half  # inside one quadrant
        for e in v.events:
            assert (e.box[0] // half, e.box[1] // half) not in quadrant


def test_shapes_and_background_vary(videos):
    assert {o.shape for v in videos for o in (v.persistent, *v.events)} == set(SHAPES)
    v = make_event_video(0, EventVideoSpec(background_noise=0))
    painted = np.zeros(v.frames.shape[:3], bool)
    for color in PALETTE:
        painted |= color_pixels(packed(v.frames), color)
    assert np.all(v.frames[~painted] == v.background_level)


def test_attributes_are_json_serializable(videos):
    attrs = videos[1].attributes()
    assert json.loads(json.dumps(attrs)) == attrs
    assert attrs["kind"] == "events" and len(attrs["events"]) == len(videos[1].events)
    assert len(attrs["flashes"]) == len(videos[1].flashes)


def test_event_starts_fill_the_clip_without_overlap():
    rng = np.random.default_rng(0)
    durations = np.array([3, 2, 4])
    for _ in range(50):
        s = event_starts(rng, durations, 12, 1)  # 9 event frames + 2 gaps: only 1 free frame
        assert s[0] >= 0 and s[-1] + durations[-1] <= 12
        assert np.all(s[1:] - (s[:-1] + durations[:-1]) >= 1)
    with pytest.raises(ValueError, match="fit"):
        event_starts(rng, durations, 10, 1)


@pytest.mark.parametrize("kwargs", [dict(kind="shapes"), dict(size=8), dict(min_event_frames=0),
                                    dict(min_event_frames=5, max_event_frames=4), dict(min_gap_frames=0),
                                    dict(num_frames=60), dict(background_noise=21), dict(seed=-1), dict(fps=0),
                                    dict(max_flashes=-1), dict(max_flashes=MAX_FLASHES + 1), dict(flash_frames=0),
                                    dict(flash_frames=40), dict(event_size="huge"), dict(show_persistent=1)])
def test_spec_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        EventVideoSpec(**kwargs)


def test_negative_index_is_rejected():
    with pytest.raises(ValueError, match="index"):
        make_event_video(-1)


def test_a_long_clip_renders_in_well_under_50_ms():
    make_event_video(0)  # warm the shape-mask cache
    start = time.perf_counter()
    for i in range(10):
        make_event_video(i)
    per_clip = (time.perf_counter() - start) / 10
    assert per_clip < 0.05, f"{per_clip * 1e3:.1f} ms per 128-frame clip"
