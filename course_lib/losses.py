"""VAE losses: reconstruction error, Gaussian KL, the World Models KL floor, beta schedules.

Sources:
- Kingma & Welling 2014, "Auto-Encoding Variational Bayes", https://arxiv.org/abs/1312.6114
  (the ELBO and the closed-form KL of a diagonal Gaussian against N(0, I)).
- Ha & Schmidhuber 2018, "World Models", https://worldmodels.github.io (squared error summed
  over pixels, KL floored at ``kl_tolerance * z_size`` per sample; hardmaru/WorldModelsExperiments).
- Higgins et al. 2017, "beta-VAE" (the KL weight ``beta``).
- Fu et al. 2019, "Cyclical Annealing Schedule: A Simple Approach to Mitigating KL Vanishing",
  https://arxiv.org/abs/1903.10145.

Every loss returns a dict of named scalar tensors (``loss``, ``recon``, ``kl``); ``loss`` is
what to minimise.
"""

from __future__ import annotations

import torch


def _check_pair(x: torch.Tensor, x_hat: torch.Tensor) -> None:
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if x.ndim < 2:
        raise ValueError(f"expected a batch (B, ...), got shape {tuple(x.shape)}")


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Squared error summed over pixels and channels, averaged over the batch.

    Args:
        x: targets ``(B, C, H, W)`` in [0, 1].
        x_hat: reconstructions, same shape.

    Returns:
        Scalar tensor: ``mean_b sum_{c,h,w} (x - x_hat)^2``. This is the Gaussian negative
        log-likelihood with unit variance up to constants (World Models' ``r_loss``).

    Raises:
        ValueError: if the shapes differ or there is no batch dimension.
    """
    _check_pair(x, x_hat)
    return (x - x_hat).pow(2).flatten(1).sum(dim=1).mean()


def per_pixel_mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel value (mean over batch, channels and pixels).

    The unit used to compare models with the mean-image baseline; it does not depend on the
    image size.
    """
    _check_pair(x, x_hat)
    return (x - x_hat).pow(2).mean()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``N(mu, exp(logvar))`` from ``N(0, I)``, per sample and latent dimension.

    ``KL = -0.5 * (1 + logvar - mu^2 - exp(logvar))``, which is >= 0 and is 0 exactly when
    ``mu = 0`` and ``logvar = 0``. ``logvar`` is the log of the variance (not of the std).

    Args:
        mu: ``(B, Z)`` posterior means.
        logvar: ``(B, Z)`` posterior log-variances.

    Returns:
        ``(B, Z)`` tensor of KL terms in nats (sum over ``Z`` for the KL of a sample).

    Raises:
        ValueError: if the shapes differ.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())


def kl_floor(kl_per_sample: torch.Tensor, kl_tolerance: float, z_size: int) -> torch.Tensor:
    """World Models' free bits: ``max(kl, kl_tolerance * z_size)`` for each sample.

    The floor is applied per sample, *before* the batch mean: below the floor the KL has no
    gradient, so the encoder may use up to ``kl_tolerance`` nats per dimension for free.

    Args:
        kl_per_sample: ``(B,)`` KL of each sample (summed over the latent dimensions).
        kl_tolerance: free nats per latent dimension (World Models: 0.5).
        z_size: number of latent dimensions.

    Returns:
        ``(B,)`` floored KL.
    """
    if kl_per_sample.ndim != 1:
        raise ValueError(f"expected a (B,) tensor of per-sample KL, got shape {tuple(kl_per_sample.shape)}")
    return kl_per_sample.clamp(min=kl_tolerance * z_size)


def vae_loss(
    x: torch.Tensor,
    x_hat: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
    kl_tolerance: float = 0.0,
) -> dict[str, torch.Tensor]:
    """The negative ELBO with a KL weight and an optional KL floor.

    ``loss = recon + beta * kl`` where ``recon`` is :func:`reconstruction_loss` (sum over pixels,
    mean over the batch) and ``kl`` is the per-sample KL summed over ``Z``, floored at
    ``kl_tolerance * Z`` per sample when ``kl_tolerance > 0``, then averaged over the batch.

    Args:
        x: ``(B, C, H, W)`` targets in [0, 1].
        x_hat: ``(B, C, H, W)`` reconstructions.
        mu: ``(B, Z)``.
        logvar: ``(B, Z)`` log-variances.
        beta: KL weight (beta-VAE; 1 is the plain ELBO).
        kl_tolerance: free nats per latent dimension (World Models uses 0.5; 0 disables).

    Returns:
        Dict of scalar tensors: ``loss``, ``recon``, ``kl`` (floored, as optimised) and
        ``kl_raw`` (without the floor, for monitoring).
    """
    recon = reconstruction_loss(x, x_hat)
    kl_per_sample = gaussian_kl(mu, logvar).sum(dim=1)  # (B,)
    kl_raw = kl_per_sample.mean()
    if kl_tolerance > 0:
        kl_per_sample = kl_floor(kl_per_sample, kl_tolerance, mu.shape[1])
    kl = kl_per_sample.mean()
    # beta = 0 (a plain autoencoder) must not turn an infinite KL into NaN (0 * inf).
    loss = recon if beta == 0 else recon + beta * kl
    return {"loss": loss, "recon": recon, "kl": kl, "kl_raw": kl_raw}


def autoencoder_loss(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss of a plain autoencoder: the reconstruction term alone (``loss == recon``, ``kl == 0``)."""
    recon = reconstruction_loss(x, x_hat)
    return {"loss": recon, "recon": recon, "kl": torch.zeros((), device=recon.device)}


def cyclical_beta(step: int, total_steps: int, n_cycles: int = 4, ratio: float = 0.5, beta_max: float = 1.0) -> float:
    """Cyclical annealing of the KL weight (Fu et al. 2019).

    Training is split into ``n_cycles`` equal cycles; in each, ``beta`` rises linearly from 0
    to ``beta_max`` over the first ``ratio`` of the cycle, then stays at ``beta_max``.

    Args:
        step: current step, ``0 <= step < total_steps``.
        total_steps: length of training in steps.
        n_cycles: number of cycles.
        ratio: fraction of each cycle spent increasing beta, in (0, 1].
        beta_max: the value reached at the end of each ramp.

    Returns:
        ``beta`` for this step.

    Raises:
        ValueError: on a non-positive ``total_steps`` or ``n_cycles`` or a ``ratio`` outside (0, 1].
    """
    if total_steps <= 0 or n_cycles <= 0 or not 0 < ratio <= 1:
        raise ValueError(
            f"need total_steps > 0, n_cycles > 0 and 0 < ratio <= 1, got {total_steps}, {n_cycles}, {ratio}"
        )
    period = total_steps / n_cycles
    tau = (step % period) / period  # position in the cycle, [0, 1)
    return beta_max * min(1.0, tau / ratio)
