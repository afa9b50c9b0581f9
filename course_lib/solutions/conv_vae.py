"""World Models' convolutional VAE, the "V" of the agent.

Ha & Schmidhuber 2018, "World Models", https://worldmodels.github.io (appendix: the VAE), as in
its TensorFlow ``ConvVAE`` (hardmaru/WorldModelsExperiments). 64x64x3 input in [0, 1], z of size 32,
4,348,547 parameters.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvVAE(nn.Module):
    """The World Models VAE.

    Encoder: ``Conv2d`` 32/64/128/256 channels, kernel 4, stride 2, no padding, ReLU:
    64 -> 31 -> 14 -> 6 -> 2 pixels, flattened to 1024; dense ``mu`` and ``logvar`` of ``z_size``.
    Decoder: dense ``z_size -> 1024``, reshaped to ``(1024, 1, 1)``; ``ConvTranspose2d``
    128/64/32/3 channels, kernels 5/5/6/6, stride 2, ReLU and a final sigmoid:
    1 -> 5 -> 13 -> 30 -> 64 pixels.

    Args:
        z_size: latent dimensions (World Models: 32).
    """

    def __init__(self, z_size: int = 32):
        super().__init__()
        self.z_size = z_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=4, stride=2),
            nn.ReLU(),  # (B, 32, 31, 31)
            nn.Conv2d(32, 64, kernel_size=4, stride=2),
            nn.ReLU(),  # (B, 64, 14, 14)
            nn.Conv2d(64, 128, kernel_size=4, stride=2),
            nn.ReLU(),  # (B, 128, 6, 6)
            nn.Conv2d(128, 256, kernel_size=4, stride=2),
            nn.ReLU(),  # (B, 256, 2, 2)
            nn.Flatten(),  # (B, 1024)
        )
        self.fc_mu = nn.Linear(1024, z_size)
        self.fc_logvar = nn.Linear(1024, z_size)
        self.fc_decode = nn.Linear(z_size, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, kernel_size=5, stride=2),
            nn.ReLU(),  # (B, 128, 5, 5)
            nn.ConvTranspose2d(128, 64, kernel_size=5, stride=2),
            nn.ReLU(),  # (B, 64, 13, 13)
            nn.ConvTranspose2d(64, 32, kernel_size=6, stride=2),
            nn.ReLU(),  # (B, 32, 30, 30)
            nn.ConvTranspose2d(32, 3, kernel_size=6, stride=2),
            nn.Sigmoid(),  # (B, 3, 64, 64)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, 64, 64)`` in [0, 1] -> ``mu, logvar``, each ``(B, z_size)``."""
        h = self.encoder(x)  # (B, 1024)
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``: ``(B, z_size)``."""
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, z_size)`` -> ``(B, 3, 64, 64)`` in [0, 1]."""
        h = self.fc_decode(z).view(-1, 1024, 1, 1)  # (B, 1024, 1, 1)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` -> ``(x_hat, mu, logvar)``."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar
