"""Reference answers of homework 2 (``hw2_world_models``): the World Models loss and the RNN dataset.

- w1, the ``ConvVAE``: :class:`course_lib.solutions.conv_vae.ConvVAE`.
- w2, :func:`vae_loss`: squared error summed over pixels and averaged over the batch; KL summed
  over ``z``, floored *per sample* at ``kl_tolerance * z_size``, averaged over the batch (World Models'
  TensorFlow ``ConvVAE``, hardmaru/WorldModelsExperiments: ``tf.maximum(kl_loss, kl_tolerance * z_size)`` before
  ``tf.reduce_mean``).
- w3, :func:`encode_rollouts` and :func:`save_rnn_dataset`: the input of the MDN-RNN. A CNN-VAE lesson's
  ``generate_rnn_data`` encoded frames with the *sampling* encoder and stacked rollouts of
  different lengths into one ``np.array`` (a ragged object array); here each rollout keeps its own
  ``mu`` and ``logvar`` ``(T, z_size)`` and actions ``(T, 3)``, saved as one ``.npz`` per rollout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from course_lib.frames import to_tensor


def vae_loss(
    x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl_tolerance: float = 0.5
) -> dict[str, torch.Tensor]:
    """World Models' VAE loss.

    Args:
        x: ``(B, 3, 64, 64)`` targets in [0, 1].
        x_hat: ``(B, 3, 64, 64)`` reconstructions.
        mu: ``(B, Z)`` posterior means.
        logvar: ``(B, Z)`` posterior log-variances.
        kl_tolerance: free nats per latent dimension; the KL of each sample is floored at
            ``kl_tolerance * Z``.

    Returns:
        ``loss = recon + kl``, ``recon`` (sum over pixels, mean over the batch) and ``kl``
        (sum over ``Z``, floored per sample, mean over the batch), scalar tensors.
    """
    recon = (x - x_hat).pow(2).sum(dim=(1, 2, 3)).mean()  # (B,) -> ()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)  # (B,)
    kl = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()
    return {"loss": recon + kl, "recon": recon, "kl": kl}


@torch.no_grad()
def encode_rollouts(
    model: nn.Module, frames: Sequence[np.ndarray], actions: Sequence[np.ndarray], batch_size: int = 256
) -> list[dict[str, np.ndarray]]:
    """Encode each rollout's frames to the posterior mean and log-variance.

    Args:
        model: a VAE with ``encode(x) -> (mu, logvar)``.
        frames: one ``uint8 (T_i, 64, 64, 3)`` array per rollout (lengths may differ).
        actions: one ``float (T_i, A)`` array per rollout; ``actions[i][t]`` was taken in the state
            shown by ``frames[i][t]``.
        batch_size: frames per forward pass.

    Returns:
        One dict per rollout with ``float32`` arrays ``mu`` and ``logvar`` ``(T_i, Z)`` and
        ``actions`` ``(T_i, A)``.
    """
    if len(frames) != len(actions):
        raise ValueError(f"{len(frames)} rollouts of frames but {len(actions)} of actions")
    model.eval()
    device = next(model.parameters()).device
    sequences = []
    for rollout_frames, rollout_actions in zip(frames, actions, strict=True):
        if len(rollout_frames) != len(rollout_actions):
            raise ValueError(f"a rollout has {len(rollout_frames)} frames and {len(rollout_actions)} actions")
        mus, logvars = [], []
        for start in range(0, len(rollout_frames), batch_size):
            x = to_tensor(np.array(rollout_frames[start : start + batch_size])).to(device)  # (b, 3, 64, 64)
            mu, logvar = model.encode(x)  # (b, Z) each
            mus.append(mu.cpu().numpy())
            logvars.append(logvar.cpu().numpy())
        sequences.append(
            {
                "mu": np.concatenate(mus).astype(np.float32),
                "logvar": np.concatenate(logvars).astype(np.float32),
                "actions": np.asarray(rollout_actions, dtype=np.float32),
            }
        )
    return sequences


def save_rnn_dataset(sequences: Sequence[dict[str, np.ndarray]], directory: str | os.PathLike) -> list[Path]:
    """Save each rollout's sequence as ``<directory>/rollout_<i:04d>.npz`` with ``mu``, ``logvar``, ``actions``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, seq in enumerate(sequences):
        path = directory / f"rollout_{i:04d}.npz"
        np.savez(path, mu=seq["mu"], logvar=seq["logvar"], actions=seq["actions"])
        paths.append(path)
    return paths
