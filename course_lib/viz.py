"""Plots people look at: reconstructions, prior samples, loss curves, traversals, interpolations.

Each function returns a matplotlib ``Figure`` and, given ``path``, also saves it as a PNG.
Models are put in eval mode before they generate anything (BatchNorm must use its running
statistics, not those of the batch being generated).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

if not os.environ.get("MPLBACKEND") and not os.environ.get("JPY_PARENT_PID"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from course_lib.frames import to_frames, to_tensor
from course_lib.train import History, unpack


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


def image_grid(
    rows: Sequence[np.ndarray],
    row_titles: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
    scale: float = 1.2,
) -> Figure:
    """Show rows of ``uint8 (N, H, W, 3)`` frames, one row per array, without axes."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols, scale * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row):
                ax.imshow(row[j])
        if row_titles is not None:
            axes[i][0].set_title(row_titles[i], fontsize=8, loc="left")
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def reconstruct(model: nn.Module, frames: np.ndarray) -> np.ndarray:
    """Reconstructions of ``uint8 (N, 64, 64, 3)`` frames by ``model`` in eval mode, as ``uint8``."""
    model.eval()
    device = next(model.parameters()).device
    x_hat = unpack(model(to_tensor(frames).to(device)))[0]
    return to_frames(x_hat)


def reconstruction_grid(
    model: nn.Module, frames: np.ndarray, n: int = 8, path: str | os.PathLike | None = None
) -> Figure:
    """Inputs (top row) above their reconstructions (bottom row) for the first ``n`` frames."""
    frames = np.asarray(frames[:n])
    return image_grid([frames, reconstruct(model, frames)], ["input", "reconstruction"], path)


@torch.no_grad()
def sample_prior(model: nn.Module, n: int = 8, z_size: int | None = None, seed: int = 0) -> np.ndarray:
    """Decode ``n`` draws of ``z ~ N(0, I)`` by ``model`` in eval mode: ``uint8 (n, 64, 64, 3)``.

    Eval mode makes BatchNorm use its running statistics, so a sample does not depend on the others
    generated with it. ``z_size`` defaults to the model's ``z_size`` or ``latent_dim``.
    """
    model.eval()
    z_size = z_size or getattr(model, "z_size", None) or model.latent_dim
    device = next(model.parameters()).device
    z = torch.randn(n, z_size, generator=torch.Generator().manual_seed(seed)).to(device)  # (n, z_size)
    return to_frames(model.decode(z))


def prior_samples(
    model: nn.Module, n: int = 8, z_size: int | None = None, seed: int = 0, path: str | os.PathLike | None = None
) -> Figure:
    """A row of :func:`sample_prior` images (a VAE's generations; an AE's are usually garbage)."""
    return image_grid([sample_prior(model, n, z_size, seed)], ["samples from the prior"], path)


def loss_curves(history: History, path: str | os.PathLike | None = None, baseline: float | None = None) -> Figure:
    """Training loss terms per step (left) and validation per-pixel MSE per epoch (right)."""
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(10, 3.5))
    steps = np.arange(len(history.train))
    for key in ("loss", "recon", "kl"):
        if history.train and key in history.train[0]:
            ax_train.plot(steps, [h[key] for h in history.train], label=key)
    ax_train.set(xlabel="step", ylabel="per batch (sum over pixels)", yscale="log", title="training")
    ax_train.legend()
    if history.val:
        ax_val.plot([v["step"] for v in history.val], [v["mse"] for v in history.val], "o-", label="model")
    if baseline is not None:
        ax_val.axhline(baseline, color="gray", ls="--", label="mean-image baseline")
    ax_val.set(xlabel="step", ylabel="MSE per pixel value", title="validation")
    ax_val.legend()
    fig.tight_layout()
    return _save(fig, path)


@torch.no_grad()
def latent_traversal(
    model: nn.Module,
    frame: np.ndarray,
    dims: Sequence[int] | None = None,
    span: float = 3.0,
    steps: int = 7,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Move one latent dimension at a time from ``-span`` to ``span`` around the code of ``frame``.

    One row per dimension in ``dims`` (default: the first 6).
    """
    model.eval()
    device = next(model.parameters()).device
    mu = model.encode(to_tensor(frame).to(device))[0]  # (1, Z)
    dims = list(dims) if dims is not None else list(range(min(6, mu.shape[1])))
    values = torch.linspace(-span, span, steps)
    rows = []
    for d in dims:
        z = mu.repeat(steps, 1)  # (steps, Z)
        z[:, d] = values.to(device)
        rows.append(to_frames(model.decode(z)))
    return image_grid(rows, [f"z[{d}]" for d in dims], path)


@torch.no_grad()
def interpolation(
    model: nn.Module, frame_a: np.ndarray, frame_b: np.ndarray, steps: int = 8, path: str | os.PathLike | None = None
) -> Figure:
    """Decode the straight line between the codes (``mu``) of two frames."""
    model.eval()
    device = next(model.parameters()).device
    mu_a = model.encode(to_tensor(frame_a).to(device))[0]
    mu_b = model.encode(to_tensor(frame_b).to(device))[0]
    t = torch.linspace(0, 1, steps, device=device).unsqueeze(1)  # (steps, 1)
    z = (1 - t) * mu_a + t * mu_b  # (steps, Z)
    return image_grid([to_frames(model.decode(z))], ["interpolation"], path)
