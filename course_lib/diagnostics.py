"""Posterior-collapse diagnostics: the KL of each latent dimension and the active units.

A VAE whose KL term wins switches latent dimensions off: their posterior equals the prior for every
input (``mu = 0``, ``logvar = 0``), they cost no KL and carry no information. Two views of it:

- the **KL per dimension**, averaged over frames: a dimension at ~0 nats is unused;
- the **active units** of Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders",
  https://arxiv.org/abs/1509.00519 (section 5.2): dimension ``j`` is active when
  ``Cov_x(E_q[z_j | x]) > 0.01``, i.e. its mean moves with the input.

Used by homework 2 (the World Models VAE) and the beta-VAE / cyclical-annealing lab.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from course_lib.frames import to_tensor

#: Burda et al.'s threshold on the variance of a dimension's posterior mean across inputs.
ACTIVE_THRESHOLD = 0.01


@dataclass
class LatentUsage:
    """How a VAE uses its latent dimensions on a set of frames.

    Attributes:
        kl: ``(Z,)`` mean KL of each dimension from the prior, in nats.
        mean_variance: ``(Z,)`` variance over frames of each dimension's posterior mean.
        active: ``(Z,)`` booleans, ``mean_variance > threshold``.
    """

    kl: np.ndarray
    mean_variance: np.ndarray
    active: np.ndarray

    @property
    def n_active(self) -> int:
        """Number of active dimensions."""
        return int(self.active.sum())

    @property
    def total_kl(self) -> float:
        """KL summed over the dimensions (mean over frames), in nats."""
        return float(self.kl.sum())


def usage_of_codes(mu: torch.Tensor, logvar: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> LatentUsage:
    """KL per dimension and active units from the posterior parameters of ``N`` frames.

    The course's one definition of an active unit (Burda et al. 2016): dimension ``j`` is active when
    the variance over frames of its posterior mean ``mu[:, j]`` exceeds ``threshold``.

    Args:
        mu: ``(N, Z)`` posterior means, ``N >= 2``.
        logvar: ``(N, Z)`` posterior log-variances.
        threshold: variance of the posterior mean above which a dimension counts as active.

    Raises:
        ValueError: if the shapes differ or are not ``(N, Z)`` with ``N >= 2`` (a variance needs two).
    """
    if mu.ndim != 2 or mu.shape != logvar.shape or mu.shape[0] < 2:
        raise ValueError(
            f"expected mu and logvar of one shape (N, Z) with N >= 2, got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    mu, logvar = mu.detach().double().cpu(), logvar.detach().double().cpu()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (N, Z) nats
    mean_variance = mu.var(dim=0).numpy()  # (Z,)
    return LatentUsage(kl=kl.mean(0).numpy(), mean_variance=mean_variance, active=mean_variance > threshold)


@torch.no_grad()
def latent_usage(
    model: nn.Module, frames: Any, batch_size: int = 256, threshold: float = ACTIVE_THRESHOLD
) -> LatentUsage:
    """KL per dimension and active units of ``model`` on ``frames``, in eval mode (:func:`usage_of_codes`).

    Args:
        model: a VAE with ``encode(x) -> (mu, logvar)`` (``logvar`` is the log-variance).
        frames: ``uint8 (N, 64, 64, 3)``, or anything sliceable into such arrays
            (:class:`course_lib.data.ShardDataset`); ``N >= 2``.
        batch_size: frames per forward pass.
        threshold: variance of the posterior mean above which a dimension counts as active.

    Returns:
        A :class:`LatentUsage`.

    Raises:
        ValueError: with fewer than two frames (a variance needs two).
    """
    n = len(frames)
    if n < 2:
        raise ValueError(f"need at least two frames to measure active units, got {n}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    mus, logvars = [], []
    try:
        for start in range(0, n, batch_size):
            x = to_tensor(np.array(frames[start : start + batch_size])).to(device)  # (b, 3, 64, 64)
            mu, logvar = model.encode(x)  # (b, Z) each
            mus.append(mu.double().cpu())
            logvars.append(logvar.double().cpu())
    finally:
        model.train(was_training)
    return usage_of_codes(torch.cat(mus), torch.cat(logvars), threshold)  # (N, Z) each


def plot_latent_usage(
    usages: dict[str, LatentUsage], path: str | os.PathLike | None = None, sort: bool = True, sharey: bool = True
) -> Figure:
    """Bar charts of the KL per dimension, one panel per model, active dimensions in colour.

    Args:
        usages: ``{label: LatentUsage}``.
        path: also save the figure as a PNG there.
        sort: order each panel's dimensions by decreasing KL.
        sharey: one KL scale for all panels (``False`` when their totals differ by orders of magnitude).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(usages), figsize=(4.2 * len(usages), 3), squeeze=False, sharey=sharey)
    for ax, (label, usage) in zip(axes[0], usages.items(), strict=True):
        order = np.argsort(-usage.kl) if sort else np.arange(len(usage.kl))
        colours = np.where(usage.active[order], "tab:blue", "lightgray")
        ax.bar(np.arange(len(order)), usage.kl[order], color=colours)
        ax.set(
            title=f"{label}\n{usage.n_active}/{len(usage.kl)} active, KL {usage.total_kl:.1f} nats",
            xlabel="latent dimension" + (" (sorted)" if sort else ""),
        )
    axes[0][0].set_ylabel("mean KL (nats)")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig
