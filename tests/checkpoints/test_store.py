"""Parameter checkpoints: a subtree selection of what is stored can be restored alone (CTD loads only the
teacher's vision tower and projector, never its LLM); LazyArray leaves are made and written one at a time into the
same files a plain save writes, and a failing one leaves nothing behind."""

import json
import os
import re

import jax
import ml_dtypes
import numpy as np
import pytest
from flax import linen as nn

from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.checkpoints import store
from liteframe_jax.models.internvl import abstract_params, init_params
from liteframe_jax.train.ctd_step import TEACHER_PARTS


def test_restoring_a_subtree_reads_only_those_arrays(tmp_path):
    cfg = model_from_config(internvl3_tiny.get_config())
    params = jax.device_get(nn.unbox(init_params(cfg, seed=0)))
    store.save_checkpoint(tmp_path / "t", "internvl", cfg.to_dict(), params)
    wanted = {k: v for k, v in nn.unbox(abstract_params(cfg)).items() if k in TEACHER_PARTS}
    got = store.restore_params(tmp_path / "t", wanted)
    assert sorted(got) == sorted(TEACHER_PARTS) == ["projector", "vision"]
    jax.tree.map(np.testing.assert_array_equal, got, {k: params[k] for k in TEACHER_PARTS})
    full = store.restore_params(tmp_path / "t", nn.unbox(abstract_params(cfg)))
    assert sorted(full) == ["llm", "projector", "vision"]


# ------------------------------------------------------------------------------------------------ LazyArray leaves
def _metadata_without_timestamps(path):
    meta = json.loads((path / store.PARAMS_DIR / "_CHECKPOINT_METADATA").read_text())
    return {k: v for k, v in meta.items() if "timestamp" not in k}


def _file_kinds(path):
    """The checkpoint's files with orbax's random data-file names masked. (How many OCDBT data files there are
    differs: each lazily written array is committed on its own, so it gets its own data file.)"""
    return {re.sub(r"[0-9a-f]{32}", "H", str(p.relative_to(path))) for p in path.rglob("*") if p.is_file()}


def test_lazy_leaves_write_the_same_checkpoint_as_plain_arrays_one_at_a_time(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    params = {"llm": {"embed": rng.standard_normal((64, 8), np.float32),
                      "layers_0": {"kernel": rng.standard_normal((8, 16)).astype(ml_dtypes.bfloat16)}},
              "scale": np.arange(5, dtype=np.int32)}
    live, order = [], []

    def lazy(path, x):
        def load():
            assert not live, "a second tensor was made before the first was written"
            live.append(path)
            order.append(path)
            return x.copy()
        return store.LazyArray(x.shape, x.dtype, load)

    class Released(store._LazyNumpyHandler):  # marks a tensor released once written
        async def _background_serialize(self, values, infos, args=None):
            for v, i, a in zip(values, infos, args):
                await super()._background_serialize([v], [i], [a])
                live.clear()

    lazy_params = jax.tree_util.tree_map_with_path(lambda p, x: lazy(jax.tree_util.keystr(p), x), params)
    store.save_checkpoint(tmp_path / "plain", "internvl", {}, params)
    monkeypatch.setattr(store, "_LazyNumpyHandler", Released)
    store.save_checkpoint(tmp_path / "lazy", "internvl", {}, lazy_params)
    assert sorted(order) == sorted(jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0])
    metadata = [(tmp_path / d / "params" / "_METADATA").read_bytes() for d in ("plain", "lazy")]
    assert metadata[0] == metadata[1]
    assert _metadata_without_timestamps(tmp_path / "plain") == _metadata_without_timestamps(tmp_path / "lazy")
    assert _file_kinds(tmp_path / "plain") == _file_kinds(tmp_path / "lazy")
    assert store.stored_arrays(tmp_path / "plain") == store.stored_arrays(tmp_path / "lazy")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    got = store.restore_params(tmp_path / "lazy", abstract)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), got, params)


def test_a_lazy_leaf_that_fails_or_lies_about_its_shape_leaves_nothing_behind(tmp_path):
    good = store.LazyArray((4,), np.float32, lambda: np.zeros(4, np.float32))

    def broken():
        raise OSError("read error")
    for bad, err, match in ((store.LazyArray((3,), np.float32, broken), OSError, "read error"),
                            (store.LazyArray((3,), np.float32, lambda: np.zeros(2, np.float32)), ValueError,
                             r"made float32\(2,\) where LazyArray\(float32\(3,\)\) was declared")):
        with pytest.raises(err, match=match):
            store.save_checkpoint(tmp_path / "out", "internvl", {}, {"a": good, "b": bad})
        assert os.listdir(tmp_path) == []
