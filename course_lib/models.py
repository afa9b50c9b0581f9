"""A small convolutional VAE for the companion notebooks, labs and activities 3-5 of homework 1.

It is deliberately not the graded answer of either homework (homework 1 grades ``MyVAE``,
homework 2 the World Models ``ConvVAE``): it is narrower, uses 4x4 kernels with padding and a
mirrored transposed-convolution decoder, and is fast enough to train in a minute on a laptop CPU.

Source: Kingma & Welling 2014, "Auto-Encoding Variational Bayes", https://arxiv.org/abs/1312.6114.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SmallVAE(nn.Module):
    """A convolutional VAE for ``(B, 3, 64, 64)`` inputs in [0, 1].

    Encoder: four ``Conv2d(k=4, s=2, p=1)`` + ELU layers, ``width * (1, 2, 4, 8)`` channels,
    64 -> 32 -> 16 -> 8 -> 4 pixels, then dense layers to ``mu`` and ``logvar`` of size ``z_size``.
    Decoder: the mirror image with ``ConvTranspose2d(k=4, s=2, p=1)``, plus a learned per-pixel
    background logit, ending in a sigmoid (see :meth:`init_background`).

    Args:
        z_size: latent dimensions.
        width: channels of the first convolution (the others are 2x, 4x, 8x).
        in_channels: image channels.
    """

    def __init__(self, z_size: int = 16, width: int = 32, in_channels: int = 3):
        super().__init__()
        if z_size < 1 or width < 1:
            raise ValueError(f"z_size and width must be positive, got {z_size} and {width}")
        self.z_size = z_size
        self.width = width
        c = [width, 2 * width, 4 * width, 8 * width]
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 4, 2, 1),
            nn.ELU(),  # (B, c0, 32, 32)
            nn.Conv2d(c[0], c[1], 4, 2, 1),
            nn.ELU(),  # (B, c1, 16, 16)
            nn.Conv2d(c[1], c[2], 4, 2, 1),
            nn.ELU(),  # (B, c2, 8, 8)
            nn.Conv2d(c[2], c[3], 4, 2, 1),
            nn.ELU(),  # (B, c3, 4, 4)
            nn.Flatten(),  # (B, c3 * 16)
        )
        self.fc_mu = nn.Linear(c[3] * 16, z_size)
        self.fc_logvar = nn.Linear(c[3] * 16, z_size)
        self.fc_decode = nn.Linear(z_size, c[3] * 16)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(c[3], c[2], 4, 2, 1),
            nn.ELU(),  # (B, c2, 8, 8)
            nn.ConvTranspose2d(c[2], c[1], 4, 2, 1),
            nn.ELU(),  # (B, c1, 16, 16)
            nn.ConvTranspose2d(c[1], c[0], 4, 2, 1),
            nn.ELU(),  # (B, c0, 32, 32)
            nn.ConvTranspose2d(c[0], in_channels, 4, 2, 1),  # (B, 3, 64, 64) logits
        )
        # A per-pixel logit added before the sigmoid. ``init_background`` sets it to the logit of
        # the mean training image, so training starts from the mean-image baseline and spends
        # its steps on what moves (classic-control frames are mostly a static white background).
        self.background = nn.Parameter(torch.zeros(in_channels, 64, 64))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, 64, 64)`` -> ``mu, logvar``, each ``(B, z_size)``."""
        if x.ndim != 4 or x.shape[-2:] != (64, 64):
            raise ValueError(f"expected input of shape (B, C, 64, 64), got {tuple(x.shape)}")
        h = self.encoder(x)  # (B, 8w * 16)
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps`` while training; ``mu`` in eval mode."""
        if not self.training:
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, z_size)`` -> ``(B, 3, 64, 64)`` in [0, 1]."""
        h = self.fc_decode(z).view(-1, 8 * self.width, 4, 4)  # (B, 8w, 4, 4)
        return torch.sigmoid(self.decoder(h) + self.background)  # (B, 3, 64, 64)

    @torch.no_grad()
    def init_background(self, frames: np.ndarray, eps: float = 0.01) -> SmallVAE:
        """Set the background logits to ``logit(mean frame)`` of ``uint8 (N, 64, 64, 3)`` frames.

        Returns ``self``, so ``SmallVAE(...).init_background(train_frames)`` chains.
        """
        mean = np.asarray(frames[: min(len(frames), 4096)], dtype=np.float64).mean(axis=0) / 255.0  # (64, 64, 3)
        mean = torch.as_tensor(mean, dtype=torch.float32).permute(2, 0, 1).clamp(eps, 1 - eps)  # (3, 64, 64)
        self.background.copy_(torch.log(mean) - torch.log1p(-mean))
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` -> ``(x_hat, mu, logvar)``."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar
