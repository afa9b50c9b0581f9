"""Reconstruction error, Gaussian KL, the KL floor, ``vae_loss`` and beta schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from course_lib.losses import (
    autoencoder_loss,
    cyclical_beta,
    gaussian_kl,
    kl_floor,
    per_pixel_mse,
    reconstruction_loss,
    vae_loss,
)


def random_pair(seed: int, shape=(4, 3, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), torch.rand(shape, generator=g)


def random_posterior(seed: int, shape=(6, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    logvar = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    return mu, logvar


def test_kl_of_standard_normal_is_zero():
    """Is KL(N(0, I) || N(0, I)) exactly zero?"""
    kl = gaussian_kl(torch.zeros(3, 7), torch.zeros(3, 7))
    assert kl.shape == (3, 7)
    assert (kl == 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_kl_is_non_negative(seed):
    """Is the KL non-negative for random means and log-variances?"""
    mu, logvar = random_posterior(seed)
    assert (gaussian_kl(mu, logvar) >= 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_kl_matches_torch_distributions(seed):
    """Does the closed form match torch.distributions' KL(N(mu, std) || N(0, 1))?"""
    mu, logvar = random_posterior(seed)
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected, rtol=1e-9, atol=1e-9)


def test_kl_matches_monte_carlo():
    """Does the closed form agree with a Monte-Carlo estimate E_q[log q(z) - log p(z)]?"""
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    logvar = torch.tensor([0.0, math.log(0.25), math.log(2.0)], dtype=torch.float64)
    q = Normal(mu, torch.exp(0.5 * logvar))
    eps = torch.randn(400_000, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = mu + q.scale * eps  # (400000, 3) samples of q
    estimate = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).mean(dim=0)
    closed_form = gaussian_kl(mu[None], logvar[None])[0]
    torch.testing.assert_close(closed_form, estimate, rtol=0.02, atol=0.01)


def test_kl_uses_log_variance():
    """Is ``logvar`` read as the log of the variance, not of the standard deviation?"""
    # Variance 4 (std 2): KL = 0.5 * (4 - 1 - log 4).
    kl = gaussian_kl(torch.zeros(1, 1), torch.full((1, 1), math.log(4.0)))
    assert float(kl) == pytest.approx(0.5 * (4 - 1 - math.log(4)), rel=1e-6)


def test_kl_gradients():
    """Do gradients reach mu and logvar, with the analytic values mu and (exp(logvar) - 1) / 2?"""
    mu, logvar = random_posterior(0)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    gaussian_kl(mu, logvar).sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    torch.testing.assert_close(mu.grad, mu.detach())
    torch.testing.assert_close(logvar.grad, 0.5 * (logvar.detach().exp() - 1))


def test_kl_shape_mismatch():
    """Is a ValueError raised when mu and logvar differ in shape?"""
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("seed", range(3))
def test_reconstruction_loss_formula(seed):
    """Is the reconstruction loss the squared error summed over pixels, averaged over the batch?"""
    x, x_hat = random_pair(seed)
    expected = sum(((x[b] - x_hat[b]) ** 2).sum() for b in range(len(x))) / len(x)
    torch.testing.assert_close(reconstruction_loss(x, x_hat), expected)
    assert reconstruction_loss(x, x_hat).ndim == 0


def test_reconstruction_loss_sums_pixels_and_averages_batch():
    """Does it double when each image is duplicated side by side, but not when the batch is?"""
    x, x_hat = random_pair(0)
    base = reconstruction_loss(x, x_hat)
    wide = reconstruction_loss(torch.cat([x, x], dim=-1), torch.cat([x_hat, x_hat], dim=-1))
    tall_batch = reconstruction_loss(torch.cat([x, x], dim=0), torch.cat([x_hat, x_hat], dim=0))
    torch.testing.assert_close(wide, 2 * base)
    torch.testing.assert_close(tall_batch, base)


def test_reconstruction_loss_zero_for_perfect_reconstruction():
    """Is the loss zero when x_hat equals x?"""
    x, _ = random_pair(1)
    assert float(reconstruction_loss(x, x.clone())) == 0.0


@pytest.mark.parametrize(
    ("x", "x_hat"),
    [(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5)), (torch.zeros(5), torch.zeros(5))],
    ids=["shape-mismatch", "no-batch"],
)
def test_reconstruction_loss_rejects_bad_shapes(x, x_hat):
    """Is a ValueError raised for mismatched shapes or a missing batch dimension?"""
    with pytest.raises(ValueError):
        reconstruction_loss(x, x_hat)


def test_per_pixel_mse():
    """Is per-pixel MSE the plain mean, i.e. the reconstruction loss over the pixel count?"""
    x, x_hat = random_pair(2)
    torch.testing.assert_close(per_pixel_mse(x, x_hat), ((x - x_hat) ** 2).mean())
    torch.testing.assert_close(per_pixel_mse(x, x_hat) * 3 * 8 * 8, reconstruction_loss(x, x_hat))


def floor_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Two samples with z_size 2: KL 0 and KL 10 nats (mean 5, floor 0.5 * 2 = 1)."""
    mu = torch.tensor([[0.0, 0.0], [math.sqrt(10.0), math.sqrt(10.0)]])
    return mu, torch.zeros_like(mu)


def test_kl_floor_is_per_sample():
    """Is the floor applied to each sample before the batch mean (5.5 nats, not max(5, 1) = 5)?"""
    mu, logvar = floor_case()
    per_sample = gaussian_kl(mu, logvar).sum(dim=1)
    torch.testing.assert_close(per_sample, torch.tensor([0.0, 10.0]))
    torch.testing.assert_close(kl_floor(per_sample, 0.5, 2), torch.tensor([1.0, 10.0]))
    x = torch.zeros(2, 3, 4, 4)
    terms = vae_loss(x, x, mu, logvar, kl_tolerance=0.5)
    assert float(terms["kl"]) == pytest.approx(5.5)
    assert float(terms["kl_raw"]) == pytest.approx(5.0)


def test_kl_floor_stops_gradient_below_floor():
    """Does a sample below the floor get no KL gradient while one above it does?"""
    mu, logvar = floor_case()
    mu.requires_grad_(True)
    x = torch.zeros(2, 3, 4, 4)
    vae_loss(x, x, mu, logvar, kl_tolerance=0.5)["loss"].backward()
    assert (mu.grad[0] == 0).all()
    assert (mu.grad[1] != 0).all()


def test_kl_floor_rejects_per_dimension_kl():
    """Is a (B, Z) tensor rejected where a per-sample (B,) KL is expected?"""
    with pytest.raises(ValueError, match=r"\(B,\)"):
        kl_floor(torch.zeros(2, 3), 0.5, 3)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
@pytest.mark.parametrize("kl_tolerance", [0.0, 0.5])
def test_vae_loss_terms(beta, kl_tolerance):
    """Does ``vae_loss`` return scalar loss, recon, kl, kl_raw with loss = recon + beta * kl?"""
    x, x_hat = random_pair(3)
    mu, logvar = (t.float() for t in random_posterior(3, shape=(4, 5)))
    terms = vae_loss(x, x_hat, mu, logvar, beta=beta, kl_tolerance=kl_tolerance)
    assert set(terms) == {"loss", "recon", "kl", "kl_raw"}
    for value in terms.values():
        assert isinstance(value, torch.Tensor) and value.ndim == 0
    torch.testing.assert_close(terms["loss"], terms["recon"] + beta * terms["kl"])
    torch.testing.assert_close(terms["recon"], reconstruction_loss(x, x_hat))
    torch.testing.assert_close(terms["kl_raw"], gaussian_kl(mu, logvar).sum(dim=1).mean())
    assert float(terms["kl"]) >= float(terms["kl_raw"])
    if kl_tolerance == 0:
        torch.testing.assert_close(terms["kl"], terms["kl_raw"])


def test_autoencoder_loss():
    """Is the autoencoder loss the reconstruction error alone, with a zero KL term?"""
    x, x_hat = random_pair(4)
    terms = autoencoder_loss(x, x_hat)
    torch.testing.assert_close(terms["loss"], reconstruction_loss(x, x_hat))
    assert float(terms["kl"]) == 0.0 and terms["kl"].ndim == 0


@pytest.mark.parametrize(
    ("total_steps", "n_cycles", "ratio", "beta_max"),
    [(100, 4, 0.5, 1.0), (120, 3, 0.25, 2.0), (60, 1, 1.0, 1.0), (80, 2, 0.75, 0.5)],
)
def test_cyclical_beta_shape(total_steps, n_cycles, ratio, beta_max):
    """Does beta rise linearly to beta_max in the first ``ratio`` of each cycle, then stay?"""
    betas = [cyclical_beta(s, total_steps, n_cycles, ratio, beta_max) for s in range(total_steps)]
    period = total_steps // n_cycles
    ramp = ratio * period
    for s, b in enumerate(betas):
        tau = s % period
        expected = beta_max * tau / ramp if tau < ramp else beta_max
        assert b == pytest.approx(expected, abs=1e-12), f"step {s}"
    assert min(betas) == 0.0
    if ratio < 1:  # with ratio 1 the ramp ends exactly where the next cycle starts
        assert max(betas) == pytest.approx(beta_max)
    # n_cycles cycles: beta restarts at 0 exactly at the start of each one.
    assert [s for s, b in enumerate(betas) if b == 0.0] == [k * period for k in range(n_cycles)]
    assert all(0.0 <= b <= beta_max for b in betas)


def test_cyclical_beta_ramp_is_linear():
    """Are the increments of beta on the ramp equal, and zero on the plateau?"""
    betas = [cyclical_beta(s, 100, n_cycles=1, ratio=0.5) for s in range(100)]
    ramp = [betas[s + 1] - betas[s] for s in range(49)]
    assert all(d == pytest.approx(1 / 50) for d in ramp)
    assert all(b == 1.0 for b in betas[50:])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total_steps": 0},
        {"total_steps": -5},
        {"n_cycles": 0},
        {"ratio": 0.0},
        {"ratio": 1.5},
    ],
)
def test_cyclical_beta_bad_arguments(kwargs):
    """Is a ValueError raised for non-positive steps or cycles or a ratio outside (0, 1]?"""
    args = {"step": 0, "total_steps": 100, "n_cycles": 4, "ratio": 0.5, **kwargs}
    with pytest.raises(ValueError):
        cyclical_beta(**args)
