"""The memory model of World Models: an LSTM with a mixture density head (MDN-RNN).

Ha & Schmidhuber 2018, "World Models", https://worldmodels.github.io (the "M" model), after
Graves 2013, "Generating Sequences With Recurrent Neural Networks", https://arxiv.org/abs/1308.0850,
and Bishop 1994, "Mixture Density Networks".

M reads the code ``z_t`` of a frame and the action ``a_t`` taken in it, and predicts the next code
as a mixture of ``K`` Gaussians *per latent dimension*:

``p(z_{t+1, j} | a_t, z_t, h_t) = sum_k pi_{jk} N(z_{t+1, j}; mu_{jk}, sigma_{jk}^2)``.

Its training data is the RNN data set of homework 2: one ``.npz`` per rollout with the VAE's
``mu`` and ``logvar`` ``(T, Z)`` and the ``actions`` ``(T, A)``. As in World Models, a fresh ``z`` is
drawn from ``N(mu, exp(logvar))`` every time a sequence is used. Sampling from M with a
*temperature* ``tau`` (logits divided by ``tau``, variances multiplied by it) and decoding the
samples with the VAE gives a "dream".
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


@dataclass
class Mixture:
    """Parameters of a mixture of ``K`` Gaussians per latent dimension.

    Attributes:
        logpi: ``(..., Z, K)`` log mixture weights (``logsumexp`` over ``K`` is 0).
        mu: ``(..., Z, K)`` component means.
        logsigma: ``(..., Z, K)`` log standard deviations of the components.
    """

    logpi: torch.Tensor
    mu: torch.Tensor
    logsigma: torch.Tensor


class MDNRNN(nn.Module):
    """LSTM over ``[z_t, a_t]`` with a mixture density head predicting ``z_{t+1}``.

    Args:
        z_size: latent dimensions ``Z`` (World Models: 32).
        action_size: action dimensions ``A`` (CarRacing: 3).
        hidden_size: LSTM units (World Models: 256).
        n_gaussians: mixture components ``K`` per latent dimension (World Models: 5).
    """

    def __init__(self, z_size: int = 32, action_size: int = 3, hidden_size: int = 256, n_gaussians: int = 5):
        super().__init__()
        if min(z_size, action_size, hidden_size, n_gaussians) < 1:
            raise ValueError("z_size, action_size, hidden_size and n_gaussians must be positive")
        self.z_size, self.action_size = z_size, action_size
        self.hidden_size, self.n_gaussians = hidden_size, n_gaussians
        self.lstm = nn.LSTM(z_size + action_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, 3 * z_size * n_gaussians)

    def forward(
        self,
        z: torch.Tensor,
        actions: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[Mixture, tuple[torch.Tensor, torch.Tensor]]:
        """Predict the mixture over ``z_{t+1}`` for every step.

        Args:
            z: ``(B, T, Z)`` codes.
            actions: ``(B, T, A)`` actions taken in those frames.
            state: the LSTM's ``(h, c)``, each ``(1, B, hidden_size)``; zeros if ``None``.

        Returns:
            The :class:`Mixture` with tensors ``(B, T, Z, K)``, and the new LSTM state.

        Raises:
            ValueError: if the shapes do not match the model.
        """
        if z.ndim != 3 or z.shape[-1] != self.z_size or actions.shape != (*z.shape[:2], self.action_size):
            raise ValueError(
                f"expected z (B, T, {self.z_size}) and actions (B, T, {self.action_size}), "
                f"got {tuple(z.shape)} and {tuple(actions.shape)}"
            )
        h, state = self.lstm(torch.cat([z, actions], dim=-1), state)  # (B, T, H)
        out = self.head(h).view(*z.shape[:2], self.z_size, 3, self.n_gaussians)  # (B, T, Z, 3, K)
        logits, mu, logsigma = out.unbind(dim=3)  # each (B, T, Z, K)
        return Mixture(torch.log_softmax(logits, dim=-1), mu, logsigma), state


def mixture_log_prob(mixture: Mixture, target: torch.Tensor) -> torch.Tensor:
    """``log p(target)`` under the mixture, per element.

    ``log sum_k exp(logpi_k + log N(target; mu_k, sigma_k^2))``, computed with ``logsumexp``.

    Args:
        mixture: tensors ``(..., Z, K)``.
        target: ``(..., Z)``.

    Returns:
        ``(..., Z)`` log densities (nats).
    """
    x = target.unsqueeze(-1)  # (..., Z, 1)
    log_normal = (
        -0.5 * ((x - mixture.mu) / mixture.logsigma.exp()).pow(2) - mixture.logsigma - 0.5 * math.log(2 * math.pi)
    )
    return torch.logsumexp(mixture.logpi + log_normal, dim=-1)


def mdn_loss(mixture: Mixture, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of ``target`` per latent dimension and step (World Models' ``z`` loss).

    Args:
        mixture: tensors ``(B, T, Z, K)``.
        target: ``(B, T, Z)`` the next codes.
        mask: optional ``(B, T)`` with 1 where a step is real (sequences padded to one length).

    Returns:
        Scalar: the mean of ``-log p`` over batch, steps (where ``mask`` is 1) and dimensions, in nats.
    """
    nll = -mixture_log_prob(mixture, target)  # (B, T, Z)
    if mask is None:
        return nll.mean()
    mask = mask.to(nll.dtype).unsqueeze(-1)  # (B, T, 1)
    return (nll * mask).sum() / (mask.sum() * nll.shape[-1]).clamp(min=1)


def sample_mixture(
    mixture: Mixture, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw one value per latent dimension from the mixture.

    As in World Models, the temperature ``tau`` divides the logits of the weights and multiplies the
    variances: ``tau < 1`` makes dreams more predictable, ``tau > 1`` wilder.

    Args:
        mixture: tensors ``(..., Z, K)``.
        temperature: ``tau > 0``.
        generator: for reproducible draws (CPU).

    Returns:
        ``(..., Z)`` samples.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    weights = torch.softmax(mixture.logpi / temperature, dim=-1)  # (..., Z, K)
    flat = weights.reshape(-1, weights.shape[-1])  # (N, K)
    k = torch.multinomial(flat.cpu(), 1, generator=generator).to(weights.device).view(*weights.shape[:-1], 1)
    mu = mixture.mu.gather(-1, k).squeeze(-1)  # (..., Z)
    sigma = mixture.logsigma.gather(-1, k).squeeze(-1).exp() * math.sqrt(temperature)
    noise = torch.randn(mu.shape, generator=generator).to(mu.device)
    return mu + sigma * noise


# ---------------------------------------------------------------- the data set of M
def load_sequences(directory: str | os.PathLike) -> list[dict[str, np.ndarray]]:
    """Read ``rollout_*.npz`` (``mu``, ``logvar``, ``actions``) from ``directory``, in name order.

    Raises:
        FileNotFoundError: if there is no such file.
        KeyError: if a file lacks one of the three arrays.
    """
    paths = sorted(Path(directory).glob("rollout_*.npz"))
    if not paths:
        raise FileNotFoundError(f"no rollout_*.npz in {directory}")
    sequences = []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            missing = {"mu", "logvar", "actions"} - set(data.files)
            if missing:
                raise KeyError(f"{path} lacks {sorted(missing)}")
            sequences.append({key: data[key].astype(np.float32) for key in ("mu", "logvar", "actions")})
    return sequences


def sample_batch(
    sequences: Sequence[dict[str, np.ndarray]], batch_size: int, seq_len: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random windows of ``seq_len + 1`` steps, with ``z`` drawn from each step's posterior.

    Args:
        sequences: dicts with ``mu``, ``logvar`` ``(T, Z)`` and ``actions`` ``(T, A)``; rollouts
            shorter than ``seq_len + 1`` steps are skipped.
        batch_size: windows per batch.
        seq_len: steps per window.
        rng: NumPy generator (windows and the posterior noise).

    Returns:
        ``z_in`` ``(B, seq_len, Z)``, ``actions`` ``(B, seq_len, A)``, ``z_next`` ``(B, seq_len, Z)``
        where ``z_next[:, t]`` is the code of the step after ``z_in[:, t]``.

    Raises:
        ValueError: if no rollout is long enough.
    """
    long_enough = [s for s in sequences if len(s["mu"]) > seq_len]
    if not long_enough:
        raise ValueError(f"no rollout has more than seq_len={seq_len} steps")
    z_in, acts, z_next = [], [], []
    for i in rng.integers(0, len(long_enough), size=batch_size):
        seq = long_enough[i]
        start = rng.integers(0, len(seq["mu"]) - seq_len)
        window = slice(start, start + seq_len + 1)
        mu, logvar = seq["mu"][window], seq["logvar"][window]  # (seq_len + 1, Z)
        z = mu + np.exp(0.5 * logvar) * rng.standard_normal(mu.shape)
        z_in.append(z[:-1])
        z_next.append(z[1:])
        acts.append(seq["actions"][start : start + seq_len])
    as_tensor = lambda arrays: torch.as_tensor(np.stack(arrays), dtype=torch.float32)
    return as_tensor(z_in), as_tensor(acts), as_tensor(z_next)


def train_mdn_rnn(
    model: MDNRNN,
    sequences: Sequence[dict[str, np.ndarray]],
    *,
    num_steps: int = 1000,
    batch_size: int = 32,
    seq_len: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    max_seconds: float | None = None,
    progress: bool = True,
) -> list[float]:
    """Train ``model`` with Adam on random windows of ``sequences``; return the loss of every step.

    Gradients are clipped to norm 1 (as in World Models' ``grad_clip``).

    Args:
        model: the MDN-RNN.
        sequences: the RNN data set (:func:`load_sequences`).
        num_steps: optimiser steps.
        batch_size: windows per step.
        seq_len: steps per window.
        lr: Adam's learning rate.
        seed: seeds the windows, the posterior noise and PyTorch.
        max_seconds: stop early after this much wall time.
        progress: show a tqdm bar.

    Returns:
        The training loss (nats per dimension and step) of every step taken.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    for _ in tqdm(range(num_steps), desc="MDN-RNN", disable=not progress):
        z_in, actions, z_next = (t.to(device) for t in sample_batch(sequences, batch_size, seq_len, rng))
        mixture, _ = model(z_in, actions)
        loss = mdn_loss(mixture, z_next)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            break
    model.eval()
    return losses


def sample_codes(sequences: Sequence[dict[str, np.ndarray]], seed: int = 0) -> list[np.ndarray]:
    """One draw ``z = mu + exp(logvar / 2) * eps`` per step of every rollout, reproducibly.

    The same ``seed`` gives the same codes, so models and baselines are scored on the same targets.

    Returns:
        One ``float32 (T, Z)`` array per rollout.
    """
    rng = np.random.default_rng(seed)
    return [
        (s["mu"] + np.exp(0.5 * s["logvar"]) * rng.standard_normal(s["mu"].shape)).astype(np.float32) for s in sequences
    ]


@torch.no_grad()
def sequence_nll(model: MDNRNN, sequences: Sequence[dict[str, np.ndarray]], seed: int = 0) -> float:
    """Mean ``-log p(z_{t+1})`` per dimension and step over whole rollouts, in nats.

    The codes are drawn from each step's posterior with :func:`sample_codes` (``seed``), as in
    training, so the number is comparable with the training loss and with
    :func:`gaussian_baseline_nll` at the same seed.
    """
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for seq, codes in zip(sequences, sample_codes(sequences, seed), strict=True):
        if len(codes) < 2:
            continue
        z = torch.as_tensor(codes, device=device).unsqueeze(0)  # (1, T, Z)
        actions = torch.as_tensor(seq["actions"], device=device).unsqueeze(0)  # (1, T, A)
        mixture, _ = model(z[:, :-1], actions[:, :-1])
        nll = -mixture_log_prob(mixture, z[:, 1:])  # (1, T - 1, Z)
        total += float(nll.sum())
        count += nll.numel()
    return total / max(count, 1)


def gaussian_baseline_nll(
    train: Sequence[dict[str, np.ndarray]], test: Sequence[dict[str, np.ndarray]], seed: int = 0
) -> float:
    """``-log p(z_{t+1})`` per dimension and step under one Gaussian per dimension fitted on ``train``.

    The baseline an MDN-RNN must beat: it ignores time, actions and memory. Codes are drawn as in
    :func:`sequence_nll` (the test codes with the same ``seed``, so both score the same targets).
    """
    train_z = np.concatenate([z[1:] for z in sample_codes(train, seed + 1)]).astype(np.float64)  # (N, Z)
    test_z = np.concatenate([z[1:] for z in sample_codes(test, seed)]).astype(np.float64)
    mean, std = train_z.mean(0), train_z.std(0) + 1e-6
    nll = 0.5 * ((test_z - mean) / std) ** 2 + np.log(std) + 0.5 * math.log(2 * math.pi)
    return float(nll.mean())


@torch.no_grad()
def dream(
    model: MDNRNN,
    z0: torch.Tensor,
    actions: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Roll M forward from ``z0`` on its own samples: a dream of ``len(actions)`` steps.

    Args:
        model: a trained MDN-RNN.
        z0: ``(Z,)`` the code of the first frame.
        actions: ``(T, A)`` the actions to take.
        temperature: sampling temperature (see :func:`sample_mixture`).
        generator: for reproducible dreams.

    Returns:
        ``(T + 1, Z)``: ``z0`` then the ``T`` dreamed codes (decode them with the VAE).
    """
    model.eval()
    device = next(model.parameters()).device
    z = z0.reshape(1, 1, -1).to(device)  # (1, 1, Z)
    state = None
    codes = [z[0, 0]]
    for a in actions.to(device):
        mixture, state = model(z, a.reshape(1, 1, -1), state)
        z = sample_mixture(mixture, temperature, generator)  # (1, 1, Z)
        codes.append(z[0, 0])
    return torch.stack(codes)
