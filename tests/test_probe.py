"""Linear probes of a VAE's latent means against the true state (course_lib.probe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.data import record_rollouts
from course_lib.models import SmallVAE
from course_lib.probe import (
    PROBE_TARGETS,
    ProbeResult,
    collect_probe_data,
    encode_mu,
    linear_probe,
    probe_targets,
    probe_vae,
    r2_score,
    split_rollouts,
)


def test_r2_perfect_and_mean():
    """Is R^2 1 for exact predictions, 0 for predicting the mean, negative for worse?"""
    y = np.array([1.0, 2.0, 4.0, 8.0])
    assert r2_score(y, y) == 1.0
    assert r2_score(y, np.full(4, y.mean())) == pytest.approx(0.0)
    assert r2_score(y, -y) < 0


def test_r2_constant_target_is_nan():
    """Is R^2 undefined (nan) when the target does not vary?"""
    assert np.isnan(r2_score(np.ones(5), np.arange(5.0)))


def test_r2_rejects_mismatched_shapes():
    """Is a ValueError raised when y and y_hat differ in shape?"""
    with pytest.raises(ValueError, match="both be"):
        r2_score(np.ones(3), np.ones(4))


def test_linear_probe_recovers_a_linear_state():
    """Does the probe score R^2 ~ 1 for a linear function of the features and ~ 0 for noise?"""
    rng = np.random.default_rng(0)
    features = rng.standard_normal((400, 6))
    w = rng.standard_normal(6)
    linear = features @ w + 3.0  # with a bias: the probe fits one
    noise = rng.standard_normal(400)
    scores = linear_probe(
        features[:300], {"linear": linear[:300], "noise": noise[:300]},
        features[300:], {"linear": linear[300:], "noise": noise[300:]},
    )
    assert scores["linear"] == pytest.approx(1.0, abs=1e-9)
    assert abs(scores["noise"]) < 0.1


def test_linear_probe_validates_names_and_shapes():
    """Are mismatched target names and lengths reported?"""
    f = np.zeros((5, 2))
    with pytest.raises(ValueError, match="targets differ"):
        linear_probe(f, {"a": np.zeros(5)}, f, {"b": np.zeros(5)})
    with pytest.raises(ValueError, match="does not match"):
        linear_probe(f, {"a": np.zeros(4)}, f, {"a": np.zeros(5)})
    with pytest.raises(ValueError, match="features"):
        linear_probe(f, {"a": np.zeros(5)}, np.zeros((5, 3)), {"a": np.zeros(5)})


@pytest.mark.parametrize("env_id", sorted(PROBE_TARGETS))
def test_probe_targets_columns(env_id):
    """Are the targets the documented observation columns (CartPole x and theta, Pendulum cos and sin)?"""
    obs = np.arange(12.0).reshape(4, 3) if env_id == "Pendulum-v1" else np.arange(16.0).reshape(4, 4)
    targets = probe_targets(env_id, obs)
    assert list(targets) == list(PROBE_TARGETS[env_id])
    for name, col in PROBE_TARGETS[env_id].items():
        np.testing.assert_array_equal(targets[name], obs[:, col])


def test_probe_targets_unknown_env():
    """Is an environment without targets a KeyError naming the known ones?"""
    with pytest.raises(KeyError, match="CartPole-v1"):
        probe_targets("Acrobot-v1", np.zeros((3, 6)))


def test_pendulum_targets_are_cos_and_sin():
    """Do real Pendulum observations give cos^2 + sin^2 = 1?"""
    (rollout,) = record_rollouts("Pendulum-v1", 1, max_steps=10, seed=0, progress=False)
    t = probe_targets("Pendulum-v1", rollout.observations)
    np.testing.assert_allclose(t["cos_theta"] ** 2 + t["sin_theta"] ** 2, 1.0, atol=1e-6)


def test_encode_mu_shape_and_mode(small_frames):
    """Does encode_mu give float64 (N, Z) means, deterministically, and restore training mode?"""
    torch.manual_seed(0)
    model = SmallVAE(z_size=4, width=8)
    model.train()
    mu = encode_mu(model, small_frames, batch_size=24)
    assert mu.shape == (64, 4) and mu.dtype == np.float64
    np.testing.assert_array_equal(mu, encode_mu(model, small_frames))
    assert model.training


def test_split_rollouts_by_episode():
    """Are whole episodes held out (the last 20%, at least one, never all)?"""
    rollouts = record_rollouts("CartPole-v1", 5, max_steps=10, seed=0, progress=False)
    train, val = split_rollouts(rollouts)
    assert len(train) == 4 and len(val) == 1 and val[0] is rollouts[-1]
    with pytest.raises(ValueError, match="two rollouts"):
        split_rollouts(rollouts[:1])


def test_collect_probe_data_counts_and_alignment():
    """Are at least n frames collected, each with its own state (frames and targets aligned)?"""
    train, train_t, val, val_t = collect_probe_data("CartPole-v1", 120, seed=3, max_steps=200)
    assert len(train) + len(val) >= 120 and len(val) > 0
    assert train.shape[1:] == (64, 64, 3) and train.dtype == np.uint8
    assert set(train_t) == {"cart_position", "pole_angle"}
    assert all(len(v) == len(train) for v in train_t.values())
    assert all(len(v) == len(val) for v in val_t.values())
    # Seeded: the same call gives the same frames and states.
    again = collect_probe_data("CartPole-v1", 120, seed=3, max_steps=200)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1]["pole_angle"], train_t["pole_angle"])


def test_probe_vae_end_to_end():
    """Does a tiny probe run train a SmallVAE and report finite R^2 scores and errors?"""
    result = probe_vae("CartPole-v1", n_frames=150, num_epochs=1, z_size=4, width=4, max_steps=100)
    assert isinstance(result, ProbeResult)
    assert set(result.r2) == {"cart_position", "pole_angle"}
    assert all(np.isfinite(v) for v in result.r2.values())
    assert result.val_mse > 0 and result.baseline_mse > 0 and result.ratio > 0
    assert result.settings["z_size"] == 4
