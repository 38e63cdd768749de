"""CTD loss and fidelity metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from liteframe_jax.losses.ctd import (ChannelStats, ChannelStatsAccumulator, CTDLossConfig, ctd_loss,
                                      fidelity_metrics, linear_cka)

rng = np.random.default_rng(0)


def test_channel_statistics_stream_equals_the_whole_data_statistics():
    data = rng.normal(size=(5, 7, 6)) * np.arange(1, 7) * 10 + np.arange(6)
    acc = ChannelStatsAccumulator()
    for chunk in data:
        acc.update(chunk)
    stats = acc.result()
    flat = data.reshape(-1, 6)
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std, flat.std(0, ddof=1), rtol=1e-5)
    assert ChannelStats.from_dict(stats.to_dict()).mean.tolist() == stats.mean.tolist()


def test_normalized_mse_weighs_every_channel_by_the_target_spread():
    t = rng.normal(size=(10, 4)).astype(np.float32) * np.array([1000.0, 1.0, 1.0, 1.0], np.float32)
    stats = ChannelStats(t.mean(0), t.std(0))
    off = np.zeros_like(t)
    off[:, 0] = t.std(0)[0]  # one std of error in the huge channel ...
    big, _ = ctd_loss(jnp.asarray(t + off), jnp.asarray(t), stats, CTDLossConfig())
    off2 = np.zeros_like(t)
    off2[:, 1] = t.std(0)[1]  # ... costs the same as one std of error in a small channel
    small, _ = ctd_loss(jnp.asarray(t + off2), jnp.asarray(t), stats, CTDLossConfig())
    np.testing.assert_allclose(float(big), 0.25, rtol=1e-5)
    np.testing.assert_allclose(float(big), float(small), rtol=1e-5)


def test_loss_is_zero_for_a_perfect_student_and_gradients_do_not_reach_the_targets():
    t = jnp.asarray(rng.normal(size=(3, 5, 8)), jnp.float32)
    stats = ChannelStats.identity(8)
    cfg = CTDLossConfig(cosine_weight=0.5)
    assert float(ctd_loss(t, t, stats, cfg)[0]) == pytest.approx(0.0, abs=1e-6)
    g_t = jax.grad(lambda tt: ctd_loss(t * 0.5, tt, stats, cfg)[0])(t)
    assert float(jnp.abs(g_t).max()) == 0.0


def test_cosine_term_is_added_with_its_weight():
    s, t = jnp.asarray(rng.normal(size=(6, 8)), jnp.float32), jnp.asarray(rng.normal(size=(6, 8)), jnp.float32)
    stats = ChannelStats.identity(8)
    base, terms = ctd_loss(s, t, stats, CTDLossConfig())
    both, _ = ctd_loss(s, t, stats, CTDLossConfig(cosine_weight=0.5))
    np.testing.assert_allclose(float(both), float(base) + 0.5 * float(terms["one_minus_cosine"]), rtol=1e-6)


def test_outlier_clipping_ignores_residuals_beyond_k_sigma():
    t = jnp.zeros((200, 4))
    s = jnp.asarray(rng.normal(size=(200, 4)) * 0.1, jnp.float32).at[0, 0].set(100.0)
    stats = ChannelStats.identity(4)
    plain, _ = ctd_loss(s, t, stats, CTDLossConfig())
    clipped, _ = ctd_loss(s, t, stats, CTDLossConfig(outlier_clip=3.0))
    assert float(plain) > 10 and float(clipped) < 0.05


def test_padding_weights_exclude_tokens():
    t = jnp.zeros((4, 3))
    s = jnp.zeros((4, 3)).at[3].set(5.0)
    loss, _ = ctd_loss(s, t, ChannelStats.identity(3), CTDLossConfig(), weights=jnp.array([1.0, 1.0, 1.0, 0.0]))
    assert float(loss) == 0.0


def test_linear_cka_is_invariant_to_rotation_and_scale_and_low_for_unrelated_features():
    x = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert float(linear_cka(x, 3.0 * x @ jnp.asarray(q, jnp.float32))) == pytest.approx(1.0, abs=1e-5)
    assert float(linear_cka(x, jnp.asarray(rng.normal(size=(64, 8)), jnp.float32))) < 0.5


def test_fidelity_metrics_of_identical_tokens():
    t = jnp.asarray(rng.normal(size=(2, 4, 4, 8)), jnp.float32)
    m = fidelity_metrics(t, t, ChannelStats.identity(8))
    assert float(m["cosine"]) == pytest.approx(1.0, abs=1e-6) and float(m["normalized_mse"]) == 0.0
    assert float(m["cka"]) == pytest.approx(1.0, abs=1e-5)


def test_invalid_loss_configs_are_rejected():
    with pytest.raises(ValueError, match="at least one of mse_weight / cosine_weight"):
        CTDLossConfig(mse_weight=0).validate()
    with pytest.raises(ValueError, match="outlier_clip=-1"):
        CTDLossConfig(outlier_clip=-1).validate()
