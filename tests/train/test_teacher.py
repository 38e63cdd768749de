"""The frozen or trained teacher of a training config: a checkpoint's LLM grown deeper (teacher.grow_text_layers)
starts out computing exactly what the stored one does, and bad growth requests fail with clear errors."""

import jax
import numpy as np
import pytest
from flax import linen as nn

from configs import lma
from liteframe_jax.checkpoints import store
from liteframe_jax.models.config import InternVLConfig
from liteframe_jax.models.internvl import init_params
from liteframe_jax.models.llm_front import prompt_logits
from liteframe_jax.train.experiment import teacher_model
from liteframe_jax.train.teacher import grown_llm, teacher_params


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A random tiny teacher (2 LLM layers) saved as an InternVL checkpoint: (path, config, params)."""
    config = lma.get_config("variant=tiny")
    cfg = InternVLConfig.from_dict(config.teacher.model.to_dict())
    params = jax.tree.map(np.asarray, nn.unbox(init_params(cfg, seed=3)))
    path = tmp_path_factory.mktemp("teacher") / "model"
    store.save_checkpoint(path, "internvl", cfg.to_dict(), params)
    return path, cfg, params


def config_for(path, grow):
    config = lma.get_config("variant=tiny")
    config.teacher.checkpoint, config.teacher.grow_text_layers = str(path), grow
    return config


def test_a_grown_llm_gives_the_stored_llms_logits(stored):
    path, cfg, params = stored
    config = config_for(path, 4)
    grown_cfg = teacher_model(config)
    assert grown_cfg.text.num_layers == 4 and cfg.text.num_layers == 2
    grown = teacher_params(config, grown_cfg)
    assert sorted(k for k in grown["llm"] if k.startswith("layers_")) == [f"layers_{i}" for i in range(4)]
    for a, b in zip(jax.tree.leaves(grown["vision"]), jax.tree.leaves(params["vision"]), strict=True):
        np.testing.assert_array_equal(a, b)
    ids = np.random.default_rng(0).integers(1, 400, (2, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    before = prompt_logits(cfg, params["llm"], ids, None, mask)
    after = prompt_logits(grown_cfg, grown["llm"], ids, None, mask)
    np.testing.assert_allclose(np.asarray(after), np.asarray(before), rtol=1e-6, atol=1e-6)
    # the new layers are not inert copies: only their output projections start at zero
    new, last = grown["llm"]["layers_3"], params["llm"]["layers_1"]
    assert not np.any(new["attn"]["o"]["kernel"]) and not np.any(new["down"]["kernel"])
    np.testing.assert_array_equal(new["attn"]["q"]["kernel"], last["attn"]["q"]["kernel"])


def test_growing_keeps_the_stored_depth_when_asked_for_it_and_never_shrinks(stored):
    path, cfg, params = stored
    assert teacher_model(config_for(path, 2)).text.num_layers == 2
    assert teacher_model(config_for(path, 0)).text.num_layers == 2
    with pytest.raises(ValueError, match="fewer than the checkpoint's 2 LLM layers"):
        teacher_model(config_for(path, 1))
    with pytest.raises(ValueError, match="cannot grow an LLM of 2 layers to 1"):
        grown_llm(params["llm"], 1)
    with pytest.raises(ValueError, match="deepens a teacher.checkpoint's LLM; none is set"):
        teacher_model(config_for("", 4))
