"""Optimizer: schedule shape, decay mask, clipping."""

import jax.numpy as jnp
import numpy as np
import pytest

from liteframe_jax.train.optim import OptimConfig, decay_mask, make_optimizer, schedule


def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_end_ratio():
    cfg = OptimConfig(peak_lr=1.0, warmup_steps=10, total_steps=110, end_lr_ratio=0.1)
    lr = schedule(cfg)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.5) and float(lr(10)) == pytest.approx(1.0)
    assert float(lr(60)) == pytest.approx(0.55, abs=1e-6)  # half-way down the cosine
    assert float(lr(110)) == pytest.approx(0.1)


def test_weight_decay_skips_norms_biases_layer_scales_and_position_tables():
    params = {"fc": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "norm": {"scale": jnp.ones(2)},
              "pos_spatial": jnp.ones((4, 4, 2)), "ls1": jnp.ones(2), "temporal": {"kernel": jnp.ones((3, 2))}}
    mask = decay_mask(params)
    assert mask["fc"]["kernel"] and mask["temporal"]["kernel"]
    assert not any([mask["fc"]["bias"], mask["norm"]["scale"], mask["pos_spatial"], mask["ls1"]])


def test_decay_applies_only_where_the_mask_says():
    cfg = OptimConfig(peak_lr=0.1, warmup_steps=0, total_steps=10, weight_decay=0.5, clip_norm=0)
    tx = make_optimizer(cfg)
    params = {"w": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zero = {"w": jnp.zeros((2, 2)), "bias": jnp.zeros(2)}
    updates, _ = tx.update(zero, tx.init(params), params)
    assert float(jnp.abs(updates["bias"]).max()) == 0.0 and float(updates["w"][0, 0]) == pytest.approx(-0.05)


def test_gradients_are_clipped_to_the_global_norm_before_adam():
    cfg = OptimConfig(peak_lr=1.0, warmup_steps=0, total_steps=10, clip_norm=1.0)
    unclipped = make_optimizer(OptimConfig(peak_lr=1.0, warmup_steps=0, total_steps=10, clip_norm=0))
    p = {"a": jnp.zeros(4)}
    g1, g2 = {"a": jnp.full((4,), 10.0)}, {"a": jnp.array([0.1, -0.1, 0.2, 0.0])}  # norms 20 and ~0.24

    def two_steps(tx, grads):
        state = tx.init(p)
        for g in grads:
            u, state = tx.update(g, state, p)
        return np.asarray(u["a"])

    clipped_g1 = {"a": jnp.full((4,), 0.5)}  # g1 rescaled to global norm 1
    np.testing.assert_allclose(two_steps(make_optimizer(cfg), [g1, g2]), two_steps(unclipped, [clipped_g1, g2]),
                               rtol=1e-6)
    assert not np.allclose(two_steps(make_optimizer(cfg), [g1, g2]), two_steps(unclipped, [g1, g2]), rtol=1e-3)


def test_invalid_optimizer_configs_are_rejected():
    with pytest.raises(ValueError, match="warmup_steps=20 must lie in"):
        OptimConfig(warmup_steps=20, total_steps=10).validate()


def test_param_groups_get_their_own_peak_learning_rate():
    import jax
    cfg = OptimConfig(peak_lr=1e-2, warmup_steps=0, total_steps=10, weight_decay=0.0, clip_norm=0.0)
    tx = make_optimizer(cfg, {"student": 1e-3})
    params = {"student": {"w": jnp.ones((2, 2))}, "projector": {"w": jnp.ones((2, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Adam's first step moves every weight by ~lr (sign of the gradient)
    assert abs(float(updates["projector"]["w"][0, 0]) + 1e-2) < 1e-4
    assert abs(float(updates["student"]["w"][0, 0]) + 1e-3) < 1e-5
