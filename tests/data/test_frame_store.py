"""The frame store: round trip, atomic writes, refusal of stores that do not match the data, and training from a
store giving the batches decoding the videos gives."""

import json
import os
import pickle

import numpy as np
import pytest

from liteframe_jax.data.extract import extract_frame_store as extract
from liteframe_jax.data.frame_store import FrameStore, FrameStoreError, FrameStoreWriter, StoredSkip
from liteframe_jax.data.frames import moving_square_clip
from liteframe_jax.data.pipeline import DataConfig, DataError, build_dataset
from liteframe_jax.data.video import write_video

T = 4


def clip(seed, size=(24, 40)):
    return np.random.default_rng(seed).integers(0, 256, (T, *size, 3), dtype=np.uint8)


# ---- the store itself -------------------------------------------------------------------------------------------

def test_round_trip_is_bit_identical_and_keeps_skips_and_native_sizes(tmp_path):
    with FrameStoreWriter(tmp_path / "s", 3, T, metadata={"data": {"k": 1}}) as w:
        w.write(0, clip(0), [0, 3, 6, 9], source=(100, 5))
        w.skip(1, "file not found")
        w.write(2, clip(2, (16, 8)), [1, 1, 2, 2])  # native stores take any frame size per example
    store = FrameStore(tmp_path / "s")
    assert len(store) == 3 and store.num_frames == T and store.frame_size == "native"
    frames, idx = store.read(0)
    np.testing.assert_array_equal(frames, clip(0))
    np.testing.assert_array_equal(idx, [0, 3, 6, 9])
    assert idx.dtype == np.int64 and frames.dtype == np.uint8
    with pytest.raises(StoredSkip, match="^file not found$"):
        store.read(1)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(store)).read(2)[0], clip(2, (16, 8)))
    np.testing.assert_array_equal(store.sources, [[100, 5], [-1, -1], [-1, -1]])
    assert store.metadata == {"data": {"k": 1}}


def test_jpeg_encoding_is_smaller_and_close(tmp_path):
    y, x = np.mgrid[0:64, 0:96]
    picture = np.stack([x * 2, y * 3, 128 + 60 * np.sin(x / 9.0)], -1).astype(np.uint8)  # smooth, like video
    frames = np.stack([np.roll(picture, 5 * t, axis=1) for t in range(T)])
    size = {}
    for encoding in ("raw", "jpeg"):
        with FrameStoreWriter(tmp_path / encoding, 1, T, encoding=encoding) as w:
            w.write(0, frames, np.arange(T))
        size[encoding] = w.bytes_written
    jpeg = FrameStore(tmp_path / "jpeg").read(0)[0]
    assert jpeg.shape == frames.shape and not np.array_equal(jpeg, frames)
    assert np.abs(jpeg.astype(int) - frames.astype(int)).mean() < 3
    assert size["jpeg"] < size["raw"] / 4


def test_bad_writes_are_refused(tmp_path):
    with FrameStoreWriter(tmp_path / "s", 2, T, frame_size=(24, 40)) as w:
        with pytest.raises(FrameStoreError, match="index order: expected index 0, got 1"):
            w.write(1, clip(1), np.arange(T))
        with pytest.raises(FrameStoreError, match=r"must be \(24, 40\)"):
            w.write(0, clip(0, (24, 24)), np.arange(T))
        with pytest.raises(FrameStoreError, match="uint8"):
            w.write(0, clip(0).astype(np.float32), np.arange(T))
        w.write(0, clip(0), np.arange(T))
        with pytest.raises(FrameStoreError, match="1 of 2 examples were not written"):
            w.close()
        w.skip(1, "bad")
    assert FrameStore(tmp_path / "s").frame_size == (24, 40)


def test_an_interrupted_write_leaves_nothing_and_keeps_an_existing_store(tmp_path):
    path = tmp_path / "s"
    with pytest.raises(RuntimeError, match="killed"):
        with FrameStoreWriter(path, 3, T) as w:
            w.write(0, clip(0), np.arange(T))
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == []  # neither the store nor its unfinished folder
    with pytest.raises(FrameStoreError, match="no frame store at"):
        FrameStore(path)
    with FrameStoreWriter(path, 1, T) as w:
        w.write(0, clip(0), np.arange(T))
    with pytest.raises(FrameStoreError, match="already exists"):
        FrameStoreWriter(path, 1, T)
    with pytest.raises(RuntimeError):
        with FrameStoreWriter(path, 1, T, overwrite=True) as w:
            raise RuntimeError("killed")
    np.testing.assert_array_equal(FrameStore(path).read(0)[0], clip(0))  # the old store is intact
    with FrameStoreWriter(path, 1, T, overwrite=True) as w:
        w.write(0, clip(7), np.arange(T))
    np.testing.assert_array_equal(FrameStore(path).read(0)[0], clip(7))
    assert sorted(os.listdir(tmp_path)) == ["s"]


def test_unfinished_or_foreign_directories_are_refused(tmp_path):
    w = FrameStoreWriter(tmp_path / "s", 1, T)  # a writer that never finishes (a killed process)
    with pytest.raises(FrameStoreError, match=r"no frame store at .*found unfinished extractions: .*s\.partial-"):
        FrameStore(tmp_path / "s")
    w.abort()
    (tmp_path / "other").mkdir()
    with pytest.raises(FrameStoreError, match="store.json is missing"):
        FrameStore(tmp_path / "other")
    (tmp_path / "other" / "store.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(FrameStoreError, match="not a complete liteframe_jax.frame_store"):
        FrameStore(tmp_path / "other")


# ---- in the pipeline --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A manifest of five real videos of two sizes, one with a span, and an unreadable file."""
    root = tmp_path_factory.mktemp("store_videos")
    lines = []
    for i, (n, size) in enumerate(((12, 64), (16, 48), (10, 64), (20, 48))):
        write_video(root / f"v{i}.mp4", moving_square_clip(n, size, seed=i), fps=8)
        lines.append({"video": f"v{i}.mp4"})
    (root / "broken.mp4").write_text("not a video")
    lines.insert(2, {"video": "broken.mp4"})
    lines.append({"video": "v3.mp4", "start": 0.5, "end": 2.0})
    (root / "m.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = DataConfig(source="manifest", path=str(root / "m.jsonl"), num_frames=T, image_size=(32, 32),
                     eval_fraction=0.3, random_resized_crop_scale=(0.3, 0.8), hflip=True, seed=3)
    return root, cfg


def batches(cfg, split="train", n=6, **kw):
    ds, skips = build_dataset(cfg, split, 2, **kw)
    it = iter(ds)
    return [next(it) for _ in range(n)], skips


def assert_same_batches(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_training_from_a_native_store_gives_the_batches_of_the_videos(tmp_path, data):
    _, cfg = data
    result = extract(cfg, str(tmp_path / "s"), progress=False)
    assert (result["stored"], result["skipped"]) == (5, 1)
    stored = cfg.replace(frame_store=str(tmp_path / "s"))
    skipped = []
    for split, kw in (("train", {}), ("train", {"augment": False}), ("eval", {})):
        (from_videos, skips_v), (from_store, skips_s) = batches(cfg, split, **kw), batches(stored, split, **kw)
        assert_same_batches(from_videos, from_store)  # augmented crops and flips included
        assert skips_v.examples == skips_s.examples  # the same skipped example, with the same reason
        skipped += skips_s.examples
    assert any("broken.mp4: unreadable or corrupt" in e for e in skipped)
    # frames are stored before resizing: the same store serves another image_size
    other = {"image_size": (24, 40)}
    assert_same_batches(batches(cfg.replace(**other))[0], batches(stored.replace(**other))[0])


def test_a_resized_store_gives_the_same_batches_without_random_crops(tmp_path, data):
    _, cfg = data
    extract(cfg, str(tmp_path / "s"), frame_size="config", progress=False)
    flip_only = cfg.replace(random_resized_crop_scale=None)
    assert_same_batches(batches(flip_only)[0], batches(flip_only.replace(frame_store=str(tmp_path / "s")))[0])
    with pytest.raises(DataError, match=r"already resized to \[32, 32\]; random_resized_crop crops the native"):
        build_dataset(cfg.replace(frame_store=str(tmp_path / "s")), "train", 2)
    # un-augmented uses (eval, a teacher-target cache) are fine with the crop configured
    build_dataset(cfg.replace(frame_store=str(tmp_path / "s")), "train", 2, augment=False)
    with pytest.raises(DataError, match=r"data.image_size: store has \[32, 32\], expected \[48, 48\]"):
        build_dataset(flip_only.replace(image_size=(48, 48), frame_store=str(tmp_path / "s")), "train", 2)


def test_a_jpeg_store_gives_batches_within_the_stated_tolerance(tmp_path, data):
    _, cfg = data
    extract(cfg, str(tmp_path / "s"), encoding="jpeg", progress=False)
    for x, y in zip(batches(cfg)[0], batches(cfg.replace(frame_store=str(tmp_path / "s")))[0]):
        np.testing.assert_array_equal(x["index"], y["index"])
        np.testing.assert_array_equal(x["frame_indices"], y["frame_indices"])
        err = np.abs(x["pixels"] - y["pixels"]) * 0.226 * 255  # normalized -> grey levels (std ~0.226)
        assert 0 < err.mean() < 3 and np.quantile(err, 0.99) < 16


@pytest.mark.parametrize("change, message", [
    ({"num_frames": 6}, "it holds 4 frames per clip, the data asks for 6"),
    ({"sampling": "fps", "fps": 2.0}, 'data.sampling: store has "segment", expected "fps"'),
    ({"source": "synthetic", "synthetic_videos": 5}, 'data.source: store has "manifest", expected "synthetic"'),
    ({"source": "synthetic", "synthetic_videos": 9}, "it holds 6 examples, the data has 9"),
])
def test_a_store_of_other_data_is_refused_naming_the_difference(tmp_path, data, change, message):
    _, cfg = data
    extract(cfg, str(tmp_path / "s"), progress=False)
    with pytest.raises(DataError, match=f"does not match the data config.*{message}"):
        build_dataset(cfg.replace(frame_store=str(tmp_path / "s"), **change), "train", 2)


def test_a_store_of_other_manifest_lines_or_changed_videos_is_refused(tmp_path, data):
    root, cfg = data
    extract(cfg, str(tmp_path / "s"), progress=False)
    stored = cfg.replace(frame_store=str(tmp_path / "s"))
    manifest = tmp_path / "m.jsonl"
    lines = (root / "m.jsonl").read_text().splitlines()
    manifest.write_text("\n".join(json.dumps({**json.loads(x), "video": str(root / json.loads(x)["video"])})
                                  for x in reversed(lines)) + "\n")
    with pytest.raises(DataError, match="data.examples_sha256: store has"):
        build_dataset(stored.replace(path=str(manifest)), "train", 2)
    build_dataset(stored, "train", 2)
    video = root / "v1.mp4"
    st = os.stat(video)
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # rewritten since the extraction
    try:
        with pytest.raises(DataError, match=r"other versions of 1 source video\(s\).*v1\.mp4; re-extract"):
            build_dataset(stored, "train", 2)
    finally:
        os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(DataError, match="data.frame_store: no frame store at"):
        build_dataset(cfg.replace(frame_store=str(tmp_path / "missing")), "train", 2)


def test_a_store_serves_without_its_videos(tmp_path):
    for i in range(3):
        write_video(tmp_path / f"v{i}.mp4", moving_square_clip(8, 32, seed=i), fps=8)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"video": f"v{i}.mp4"}) + "\n" for i in range(3)))
    cfg = DataConfig(source="manifest", path=str(tmp_path / "m.jsonl"), num_frames=T, image_size=(32, 32),
                     eval_fraction=0.0, hflip=True)
    extract(cfg, str(tmp_path / "s"), progress=False)
    expected = batches(cfg, n=3)[0]
    for i in range(3):
        os.remove(tmp_path / f"v{i}.mp4")
    assert_same_batches(expected, batches(cfg.replace(frame_store=str(tmp_path / "s")), n=3)[0])
