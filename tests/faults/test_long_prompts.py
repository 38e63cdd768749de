"""A prompt longer than the model's positions (issue 12, "Also"): generation still runs but says that positions
beyond max_position_embeddings were never trained."""

import dataclasses
import warnings

import numpy as np
import pytest

import liteframe_jax as lf
from configs import internvl3_tiny
from configs.common import model_from_config
from liteframe_jax.models.internvl import init_params


def tiny_model(max_positions: int):
    cfg = model_from_config(internvl3_tiny.get_config())
    cfg = dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, max_position_embeddings=max_positions))
    return lf.from_params(cfg, init_params(cfg, seed=3))


def test_generating_past_max_position_embeddings_warns_and_within_it_does_not():
    model = tiny_model(max_positions=16)
    ids = np.array([[5] + [model.config.image_token_id] * model.config.tokens_per_frame() + [6]])
    pixels = np.zeros((1, 56, 56, 3), np.float32)
    assert ids.shape[1] + 2 <= 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(ids, pixels, max_new_tokens=2)
    with pytest.warns(UserWarning, match=r"\+ 12 new tokens exceed the model's max_position_embeddings=16"):
        model.generate(ids, pixels, max_new_tokens=12)
