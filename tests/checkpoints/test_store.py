"""Parameter checkpoints: a subtree selection of what is stored can be restored alone (CTD loads only the
teacher's vision tower and projector, never its LLM)."""

import jax
import numpy as np
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
