"""The MDN-RNN: shapes, the mixture density against a direct computation, sampling, training, dreams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.mdn_rnn import (
    MDNRNN,
    Mixture,
    dream,
    gaussian_baseline_nll,
    load_sequences,
    mdn_loss,
    mixture_log_prob,
    sample_batch,
    sample_codes,
    sample_mixture,
    sequence_nll,
    train_mdn_rnn,
)


def _sequences(n: int = 4, length: int = 40, z_size: int = 4, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Rollouts whose next code is a fixed function of the code and the action (learnable)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        actions = rng.uniform(-1, 1, (length, 3)).astype(np.float32)
        mu = np.zeros((length, z_size), np.float32)
        mu[0] = rng.standard_normal(z_size)
        for t in range(1, length):
            mu[t] = 0.8 * np.roll(mu[t - 1], 1) + 0.5 * actions[t - 1, 0]
        out.append({"mu": mu, "logvar": np.full_like(mu, -12.0), "actions": actions})
    return out


@pytest.mark.parametrize(("batch", "steps", "z_size", "k"), [(2, 5, 32, 5), (1, 1, 3, 1), (4, 7, 8, 3)])
def test_forward_shapes_and_normalised_weights(batch, steps, z_size, k):
    """Does the head give (B, T, Z, K) parameters with mixture weights that sum to one?"""
    model = MDNRNN(z_size=z_size, action_size=3, hidden_size=16, n_gaussians=k)
    mixture, (h, c) = model(torch.randn(batch, steps, z_size), torch.randn(batch, steps, 3))
    for t in (mixture.logpi, mixture.mu, mixture.logsigma):
        assert t.shape == (batch, steps, z_size, k)
    assert torch.allclose(mixture.logpi.exp().sum(-1), torch.ones(batch, steps, z_size), atol=1e-6)
    assert h.shape == c.shape == (1, batch, 16)


def test_forward_rejects_mismatched_shapes():
    """Are z and actions of the wrong sizes refused with a message naming the expected shapes?"""
    model = MDNRNN(z_size=4, action_size=3, hidden_size=8)
    with pytest.raises(ValueError, match=r"\(B, T, 4\)"):
        model(torch.randn(2, 5, 5), torch.randn(2, 5, 3))
    with pytest.raises(ValueError):
        model(torch.randn(2, 5, 4), torch.randn(2, 4, 3))


def test_log_prob_matches_a_direct_computation():
    """Is the mixture log-density equal to log(sum_k pi_k N(x; mu_k, sigma_k)) computed directly?"""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    mixture = Mixture(
        torch.log_softmax(logits, -1),
        torch.randn(3, 4, 5, generator=gen, dtype=torch.float64),
        0.5 * torch.randn(3, 4, 5, generator=gen, dtype=torch.float64),
    )
    x = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    got = mixture_log_prob(mixture, x).numpy()
    pi, mu, sigma = (mixture.logpi.exp().numpy(), mixture.mu.numpy(), mixture.logsigma.exp().numpy())
    normal = np.exp(-0.5 * ((x.numpy()[..., None] - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density = (pi * normal).sum(-1)
    np.testing.assert_allclose(got, np.log(density), rtol=1e-10)


def test_log_prob_is_stable_far_in_the_tails():
    """Does the log-density stay finite where every component's density underflows to zero?"""
    mixture = Mixture(torch.log(torch.tensor([[0.5, 0.5]])), torch.zeros(1, 2), torch.full((1, 2), -3.0))
    value = mixture_log_prob(mixture, torch.tensor([50.0]))
    assert torch.isfinite(value).all() and value.item() < -1e5


def test_loss_is_the_mean_nll_and_respects_the_mask():
    """Is mdn_loss the mean negative log-density, over the unmasked steps only?"""
    gen = torch.Generator().manual_seed(1)
    logits, mu, logsigma = torch.randn(3, 2, 3, 4, 2, generator=gen)
    mixture = Mixture(torch.log_softmax(logits, -1), mu, logsigma)
    target = torch.randn(2, 3, 4, generator=gen)
    nll = -mixture_log_prob(mixture, target)
    assert torch.isclose(mdn_loss(mixture, target), nll.mean())
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.isclose(mdn_loss(mixture, target, mask), nll[mask.bool()].mean())


def test_sampling_matches_the_mixture():
    """Do samples of a two-component mixture have its mean and variance, and shrink with the temperature?"""
    n = 20000
    logpi = torch.log(torch.tensor([0.3, 0.7])).expand(n, 1, 2)
    mu = torch.tensor([-2.0, 1.0]).expand(n, 1, 2)
    logsigma = torch.log(torch.tensor([0.5, 0.2])).expand(n, 1, 2)
    mixture = Mixture(logpi, mu, logsigma)
    x = sample_mixture(mixture, generator=torch.Generator().manual_seed(0))[:, 0]
    mean = 0.3 * -2 + 0.7 * 1
    var = 0.3 * (0.25 + 4) + 0.7 * (0.04 + 1) - mean**2
    assert abs(x.mean().item() - mean) < 0.05
    assert abs(x.var().item() - var) / var < 0.05
    cold = sample_mixture(mixture, temperature=0.05, generator=torch.Generator().manual_seed(0))[:, 0]
    assert (cold > 0).float().mean() > 0.99  # almost always the heavier component
    with pytest.raises(ValueError):
        sample_mixture(mixture, temperature=0.0)


def test_sample_batch_windows_are_aligned():
    """Is z_next the step after z_in, with the action taken at z_in's step (low-noise posterior)?"""
    sequences = _sequences(n=2, length=12)
    z_in, actions, z_next = sample_batch(sequences, 16, 5, np.random.default_rng(0))
    assert z_in.shape == z_next.shape == (16, 5, 4) and actions.shape == (16, 5, 3)
    expected = 0.8 * torch.roll(z_in, 1, dims=-1) + 0.5 * actions[..., :1]
    assert torch.allclose(z_next, expected, atol=0.05)
    with pytest.raises(ValueError):
        sample_batch(sequences, 2, 12, np.random.default_rng(0))


def test_training_lowers_the_loss_and_beats_the_gaussian_baseline():
    """Does training on learnable fixed sequences lower the NLL below that of one Gaussian per dimension?"""
    torch.manual_seed(0)
    train, test = _sequences(n=6, seed=0), _sequences(n=2, seed=1)
    model = MDNRNN(z_size=4, action_size=3, hidden_size=32, n_gaussians=3)
    before = sequence_nll(model, test)
    losses = train_mdn_rnn(model, train, num_steps=150, batch_size=16, seq_len=10, lr=3e-3, progress=False)
    after = sequence_nll(model, test)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5
    assert after < before - 0.5
    assert after < gaussian_baseline_nll(train, test) - 0.5


def test_sample_codes_are_reproducible_posterior_draws():
    """Are evaluation codes drawn from N(mu, exp(logvar)), the same for the same seed, new for another?"""
    seq = {"mu": np.full((4000, 2), 3.0, np.float32), "logvar": np.log(np.full((4000, 2), 0.25, np.float32))}
    seq["actions"] = np.zeros((4000, 3), np.float32)
    a, b, c = sample_codes([seq], 0)[0], sample_codes([seq], 0)[0], sample_codes([seq], 1)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(a.mean() - 3.0) < 0.02 and abs(a.std() - 0.5) < 0.02


def test_dream_has_one_code_per_action_and_is_reproducible():
    """Does a dream start at z0, add one code per action, and repeat with the same generator seed?"""
    model = MDNRNN(z_size=4, action_size=3, hidden_size=8, n_gaussians=2)
    z0, actions = torch.randn(4), torch.randn(6, 3)
    a = dream(model, z0, actions, temperature=1.2, generator=torch.Generator().manual_seed(3))
    b = dream(model, z0, actions, temperature=1.2, generator=torch.Generator().manual_seed(3))
    assert a.shape == (7, 4) and torch.equal(a[0], z0) and torch.equal(a, b)


def test_load_sequences_reads_the_rnn_dataset(tmp_path):
    """Are rollout_*.npz files read in order, and is a file missing an array reported?"""
    for i, seq in enumerate(_sequences(n=3, length=5)):
        np.savez(tmp_path / f"rollout_{i:04d}.npz", **seq)
    loaded = load_sequences(tmp_path)
    assert [s["mu"].shape for s in loaded] == [(5, 4)] * 3
    np.savez(tmp_path / "rollout_0003.npz", mu=np.zeros((2, 4)))
    with pytest.raises(KeyError, match="rollout_0003"):
        load_sequences(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_sequences(tmp_path / "nothing")
