"""Synthetic videos: deterministic, attributes agree with the pixels, grain-compatible picklable source."""

import json
import pickle

import numpy as np
import pytest

from liteframe_jax.data.synthetic import (MOTIONS, PALETTE, SHAPES, SyntheticVideoSource, SyntheticVideoSpec,
                                          make_synthetic_video)

SPEC = SyntheticVideoSpec()
INDICES = range(40)


def color_mask(frame, color):
    return np.all(frame == np.array(PALETTE[color], np.uint8), axis=-1)


def bbox(mask):
    ys, xs = np.nonzero(mask)
    return (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


# -------------------------------------------------------------------------------------------------- determinism

def test_same_index_gives_identical_video():
    a, b = make_synthetic_video(7, SPEC), make_synthetic_video(7, SPEC)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.attributes() == b.attributes()


def test_different_index_or_seed_gives_a_different_video():
    base = make_synthetic_video(7, SPEC)
    for other in (make_synthetic_video(8, SPEC), make_synthetic_video(7, SyntheticVideoSpec(seed=1))):
        assert not np.array_equal(base.frames, other.frames)
        assert base.attributes()["objects"] != other.attributes()["objects"]


def test_default_video_shape_and_type():
    v = make_synthetic_video(0, SPEC)
    assert v.frames.dtype == np.uint8 and v.frames.shape == (16, 112, 112, 3)
    assert v.video_id == "synthetic:0:0"


# ------------------------------------------------------------------------------------------------ attributes

def test_attributes_are_json_serializable_and_well_formed():
    for i in INDICES:
        attrs = make_synthetic_video(i, SPEC).attributes()
        assert json.loads(json.dumps(attrs)) == attrs
        objs = attrs["objects"]
        assert SPEC.min_objects <= len(objs) <= SPEC.max_objects
        assert len({o["color"] for o in objs}) == len(objs)              # colours identify objects
        assert len({o["appear_frame"] for o in objs}) == len(objs)       # "which appeared first" has one answer
        for o in objs:
            assert o["color"] in PALETTE and o["shape"] in SHAPES and o["motion"] in MOTIONS
            assert 0 <= o["appear_frame"] < o["disappear_frame"] <= SPEC.num_frames
            assert len(o["boxes"]) == SPEC.num_frames


def test_each_objects_colour_is_exactly_its_recorded_box_while_visible_and_absent_otherwise():
    for i in INDICES:
        v = make_synthetic_video(i, SPEC)
        for o in v.objects:
            for t in range(SPEC.num_frames):
                m = color_mask(v.frames[t], o.color)
                if o.appear_frame <= t < o.disappear_frame:
                    assert bbox(m) == o.boxes[t], (i, o.color, t)
                    x0, y0, x1, y1 = o.boxes[t]
                    assert 0 <= x0 < x1 <= SPEC.size and 0 <= y0 < y1 <= SPEC.size
                else:
                    assert not m.any() and o.boxes[t] is None, (i, o.color, t)


FILL = {"square": (0.99, 1.01), "circle": (0.72, 0.86), "triangle": (0.45, 0.62)}


def test_shape_matches_how_much_of_the_box_the_colour_fills():
    seen = set()
    for i in INDICES:
        v = make_synthetic_video(i, SPEC)
        for o in v.objects:
            t = o.appear_frame
            x0, y0, x1, y1 = o.boxes[t]
            fill = color_mask(v.frames[t], o.color)[y0:y1, x0:x1].mean()
            lo, hi = FILL[o.shape]
            assert lo <= fill <= hi, (i, o.shape, fill)
            seen.add(o.shape)
    assert seen == set(SHAPES)


def centroids(v, o):
    ts = range(o.appear_frame, o.disappear_frame)
    return np.array([np.argwhere(color_mask(v.frames[t], o.color)).mean(0)[::-1] for t in ts])  # (x, y)


def test_motion_direction_agrees_with_the_centroid_track():
    seen = set()
    for i in INDICES:
        v = make_synthetic_video(i, SPEC)
        for o in v.objects:
            xy = centroids(v, o)
            dx, dy = np.diff(xy[:, 0]), np.diff(xy[:, 1])
            if len(xy) < 2:
                continue
            seen.add(o.motion)
            if o.motion == "static":
                assert np.all(dx == 0) and np.all(dy == 0)
                continue
            along, across = (dx, dy) if o.motion in ("left", "right") else (dy, dx)
            sign = -1 if o.motion in ("left", "up") else 1
            assert np.all(across == 0), (i, o.motion)
            # monotone, and at least ~1 px per frame overall (speed >= 1 px/frame, minus rounding)
            assert np.all(sign * along >= 0) and sign * along.sum() >= max(1, len(xy) - 2), (i, o.motion, along)
    assert seen == set(MOTIONS)


def test_objects_never_overlap():
    for i in INDICES:
        v = make_synthetic_video(i, SPEC)
        for t in range(SPEC.num_frames):
            visible = [o for o in v.objects if o.boxes[t] is not None]
            painted = sum(color_mask(v.frames[t], o.color).sum() for o in visible)
            boxes_area = sum(color_mask(v.frames[t], o.color)[o.boxes[t][1]:o.boxes[t][3],
                                                              o.boxes[t][0]:o.boxes[t][2]].sum() for o in visible)
            assert painted == boxes_area


def test_plain_background_is_one_grey_level():
    v = make_synthetic_video(5, SyntheticVideoSpec(background_noise=0))
    objects = np.zeros(v.frames.shape[:3], bool)
    for o in v.objects:
        objects |= np.stack([color_mask(f, o.color) for f in v.frames])
    assert np.all(v.frames[~objects] == v.background_level)
    assert v.attributes()["background"] == "plain"


def test_textured_background_is_grey_and_static():
    v = make_synthetic_video(5, SPEC)
    objects = np.zeros(v.frames.shape[:3], bool)
    for o in v.objects:
        objects |= np.stack([color_mask(f, o.color) for f in v.frames])
    bg = v.frames[~objects]
    assert np.all(bg[:, 0] == bg[:, 1]) and np.all(bg[:, 1] == bg[:, 2]) and bg.std() > 0
    never_covered = ~objects.any(0)
    assert np.all(v.frames[:, never_covered] == v.frames[0, never_covered])


def test_other_specs_honour_sizes_and_counts():
    spec = SyntheticVideoSpec(num_frames=5, size=48, min_objects=2, max_objects=2, seed=3)
    for i in range(10):
        v = make_synthetic_video(i, spec)
        assert v.frames.shape == (5, 48, 48, 3) and len(v.objects) == 2


@pytest.mark.parametrize("kwargs", [dict(num_frames=0), dict(size=8), dict(min_objects=0),
                                    dict(min_objects=3, max_objects=2), dict(max_objects=len(PALETTE) + 1),
                                    dict(background_noise=-1), dict(seed=-1), dict(fps=0)])
def test_spec_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SyntheticVideoSpec(**kwargs)


def test_negative_index_is_rejected():
    with pytest.raises(ValueError, match="index"):
        make_synthetic_video(-1, SPEC)


def test_generation_is_cheap_enough_for_a_loader():
    # A sanity run, not a timed assertion: 200 default clips render in well under a second on one core.
    for i in range(200):
        assert make_synthetic_video(i, SPEC).frames.shape == (16, 112, 112, 3)


# ------------------------------------------------------------------------------------------------------ source

def test_source_len_and_items():
    src = SyntheticVideoSource(SPEC, num_videos=10)
    assert len(src) == 10
    item = src[3]
    assert set(item) == {"frames", "video_id", "attributes"}
    assert item["video_id"] == "synthetic:0:3" and item["frames"].dtype == np.uint8
    np.testing.assert_array_equal(item["frames"], make_synthetic_video(3, SPEC).frames)
    assert item["attributes"] == make_synthetic_video(3, SPEC).attributes()
    assert src[np.int64(-1)]["video_id"] == "synthetic:0:9"
    with pytest.raises(IndexError):
        src[10]


def test_source_pickles_and_reproduces_items():
    src = SyntheticVideoSource(SyntheticVideoSpec(seed=4), num_videos=5)
    back = pickle.loads(pickle.dumps(src))
    assert len(back) == 5 and back.spec == src.spec
    np.testing.assert_array_equal(back[2]["frames"], src[2]["frames"])
    assert back[2]["attributes"] == src[2]["attributes"]


def test_source_plugs_into_grain():
    grain = pytest.importorskip("grain")
    src = SyntheticVideoSource(SPEC, num_videos=6)
    ds = grain.MapDataset.source(src).map(lambda x: x["frames"].shape)
    assert len(ds) == 6 and ds[2] == (16, 112, 112, 3)
