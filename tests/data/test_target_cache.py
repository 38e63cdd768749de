"""Teacher-target cache: round trip, atomic completion, metadata checks, and targets attached by the pipeline."""

import ml_dtypes
import numpy as np
import pytest

from liteframe_jax.data.pipeline import DataConfig, DataError, build_dataset, cache_identity
from liteframe_jax.data.target_cache import TargetCache, TargetCacheError, TargetCacheWriter

SHAPE = (2, 3, 3, 8)  # (T', H', W', C)
META = {"wap": {"window": [2, 2, 2], "weighting": "norm"}, "teacher": "tiny-random"}


def targets_for(indices):
    """Distinct, index-dependent targets (B, *SHAPE)."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=SHAPE).astype(np.float32)
    return np.stack([base + i for i in np.asarray(indices)]).astype(np.float32)


def write_cache(path, n=6, dtype="float32", meta=META, **kw):
    with TargetCacheWriter(path, n, SHAPE, dtype, num_frames=4, metadata=meta, **kw) as w:
        for batch in (np.array([4, 0, 2]), np.array([1, 5, 3])):
            w.write(batch, targets_for(batch), np.stack([np.arange(4) + 10 * i for i in batch]))
    return path


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_write_then_read_round_trips(tmp_path, dtype):
    c = TargetCache(write_cache(tmp_path / "cache", dtype=dtype))
    assert (len(c), c.target_shape, c.num_frames, c.dtype) == (6, SHAPE, 4, dtype)
    assert c.metadata == META
    indices = np.array([5, 0, 5, 3])  # any order, repeats allowed
    targets, frames = c.read(indices)
    assert targets.dtype == np.float32 and targets.shape == (4, *SHAPE)
    expected = targets_for(indices)
    if dtype == "bfloat16":
        expected = expected.astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(targets, expected)
    np.testing.assert_array_equal(frames, [np.arange(4) + 10 * i for i in indices])


def test_unfinished_or_partial_caches_are_refused(tmp_path):
    path = tmp_path / "cache"
    w = TargetCacheWriter(path, 4, SHAPE, num_frames=4)
    w.write([0, 1], targets_for([0, 1]))
    with pytest.raises(TargetCacheError, match="no target cache.*unfinished writes"):
        TargetCache(path)  # a crashed writer leaves nothing at `path`
    with pytest.raises(TargetCacheError, match="2 of 4 examples were not written"):
        w.close()
    w.close(allow_partial=True)
    with pytest.raises(TargetCacheError, match="partial: 2 of 4"):
        TargetCache(path)
    c = TargetCache(path, allow_partial=True)
    assert c.read([1])[0].shape == (1, *SHAPE)
    import pickle
    again = pickle.loads(pickle.dumps(c))  # a grain worker's copy reopens the cache, still allowing it partial
    np.testing.assert_array_equal(again.read([1])[0], c.read([1])[0])
    with pytest.raises(TargetCacheError, match=r"no targets for examples \[3\]"):
        c.read([1, 3])
    (tmp_path / "other").mkdir()
    with pytest.raises(TargetCacheError, match="cache.json is missing"):
        TargetCache(tmp_path / "other")


def test_an_exception_while_writing_leaves_no_cache_and_existing_ones_are_kept(tmp_path):
    path = write_cache(tmp_path / "cache")
    with pytest.raises(TargetCacheError, match="already exists"):
        TargetCacheWriter(path, 6, SHAPE, num_frames=4)
    with pytest.raises(RuntimeError):
        with TargetCacheWriter(path, 6, SHAPE, num_frames=4, metadata={"teacher": "new"}, overwrite=True) as w:
            w.write([0], targets_for([0]))
            raise RuntimeError("teacher crashed")
    assert TargetCache(path).metadata == META  # the old cache is intact, and no partial directory is left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    write_cache(path, meta={"teacher": "new"}, overwrite=True)
    assert TargetCache(path).metadata == {"teacher": "new"}


def test_bad_writes_are_rejected(tmp_path):
    w = TargetCacheWriter(tmp_path / "cache", 3, SHAPE, num_frames=4)
    with pytest.raises(TargetCacheError, match="shape"):
        w.write([0], np.zeros((1, 2, 3, 3, 7)))
    with pytest.raises(TargetCacheError, match=r"in \[0, 3\)"):
        w.write([3], targets_for([0]))
    with pytest.raises(TargetCacheError, match="distinct"):
        w.write([1, 1], targets_for([1, 1]))
    with pytest.raises(TargetCacheError, match="NaN"):
        w.write([0], np.full((1, *SHAPE), np.nan))
    w.abort()


def test_metadata_mismatch_names_the_differing_fields(tmp_path):
    c = TargetCache(write_cache(tmp_path / "cache"))
    c.check_compatible({"wap": {"window": (2, 2, 2)}})  # tuples match lists; unlisted fields are not compared
    with pytest.raises(TargetCacheError) as e:
        c.check_compatible({"wap": {"window": [4, 2, 2], "weighting": "norm"}, "teacher": "tiny-random",
                            "data": {"image_size": [56, 56]}})
    message = str(e.value)
    assert "wap.window: cache has [2, 2, 2], expected [4, 2, 2]" in message
    assert "data: missing in the cache" in message
    assert "weighting" not in message and "teacher" not in message


# ---- in the pipeline ---------------------------------------------------------------------------------------------

CFG = DataConfig(num_frames=4, image_size=(32, 32), synthetic_videos=12, synthetic_size=32, eval_fraction=0.25)


def cache_for(cfg, path, dtype="float32"):
    n = cfg.synthetic_videos
    meta = {"data": {**cfg.to_dict(), **cache_identity(cfg)["data"]}, **META}
    with TargetCacheWriter(path, n, SHAPE, dtype, num_frames=cfg.num_frames, metadata=meta) as w:
        w.write(np.arange(n), targets_for(np.arange(n)))
    return path


def test_pipeline_attaches_the_cached_targets_of_each_example(tmp_path):
    path = cache_for(CFG, tmp_path / "cache")
    for split in ("train", "eval"):
        ds, _ = build_dataset(CFG, split, 2, cache=str(path), augment=False)
        it = iter(ds)
        for _ in range(3):
            b = next(it)
            assert b["targets"].shape == (2, *SHAPE) and b["targets"].dtype == np.float32
            np.testing.assert_array_equal(b["targets"], targets_for(b["index"]))


def test_pipeline_refuses_augmentation_or_a_cache_of_other_data(tmp_path):
    path = cache_for(CFG, tmp_path / "cache")
    with pytest.raises(ValueError, match="un-augmented"):
        build_dataset(CFG.replace(hflip=True), "train", 2, cache=str(path))
    build_dataset(CFG.replace(hflip=True), "train", 2, cache=str(path), augment=False)  # explicitly off: fine
    with pytest.raises(DataError, match=r"data.image_size: cache has \[32, 32\], expected \[64, 64\]"):
        build_dataset(CFG.replace(image_size=(64, 64)), "train", 2, cache=str(path))
    with pytest.raises(DataError, match="holds 12 examples, the data has 16"):
        build_dataset(CFG.replace(synthetic_videos=16), "train", 2, cache=str(path))
    with pytest.raises(TargetCacheError, match="no target cache"):
        build_dataset(CFG, "train", 2, cache=str(tmp_path / "nope"))
