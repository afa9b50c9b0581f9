"""The provided half of homework 1's ``MyVAE``: decoder, autoencoder forward pass, sampling.

Students write ``__init__`` (activity 1: the encoder, ``z_simple``, ``z_mu``, ``z_var`` and the
output layer ``final_layer``) and then ``reparameterize``, ``encode`` and ``forward`` (activity 2).
This base class supplies everything else. It follows the template of the CMPE 260 homework
(Spring 2023), itself based on AntixK/PyTorch-VAE's ``VanillaVAE``, with two of its bugs fixed: the
decoder's reshape uses ``hidden_dims[-1]`` instead of a hard-coded 512, and the output layer that
students write must end in a sigmoid, because frames are in [0, 1] (the template used Tanh).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn


def add_to_class(cls: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator that attaches a function to ``cls`` as a method (as in d2l's ``add_to_class``).

    Lets a notebook define one method per cell::

        @add_to_class(MyVAE)
        def encode(self, x): ...
    """

    def wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(cls, fn.__name__, fn)
        return fn

    return wrapper


class MyVAETemplate(nn.Module):
    """Base class of homework 1's ``MyVAE`` for ``(B, C, 64, 64)`` inputs in [0, 1].

    A subclass's ``__init__`` must set ``self.latent_dim``, ``self.hidden_dims``,
    ``self.encoder`` (five stride-2 blocks take 64x64 to 2x2), ``self.z_simple``, ``self.z_mu``,
    ``self.z_var`` and ``self.final_layer``, and call :meth:`build_decoder`.
    """

    latent_dim: int
    hidden_dims: list[int]

    def build_decoder(self) -> None:
        """Build ``decoder_input`` and ``decoder``, the mirror image of the encoder.

        ``decoder_input``: ``Linear(latent_dim, hidden_dims[-1] * 4)``; ``decoder``: one
        ``ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`` + BatchNorm2d + LeakyReLU block per
        pair of consecutive hidden dims, in reverse (2x2 -> 32x32 for five hidden dims).
        ``final_layer`` (written by the student) takes ``(B, hidden_dims[0], 32, 32)`` to
        ``(B, C, 64, 64)``.
        """
        dims = list(reversed(self.hidden_dims))
        self.decoder_input = nn.Linear(self.latent_dim, dims[0] * 4)
        blocks = [
            nn.Sequential(
                nn.ConvTranspose2d(d_in, d_out, kernel_size=3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(d_out),
                nn.LeakyReLU(),
            )
            for d_in, d_out in itertools.pairwise(dims)
        ]
        self.decoder = nn.Sequential(*blocks)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` -> ``(B, C, 64, 64)``."""
        h = self.decoder_input(z).view(-1, self.hidden_dims[-1], 2, 2)  # (B, h[-1], 2, 2)
        h = self.decoder(h)  # (B, h[0], 32, 32)
        return self.final_layer(h)  # (B, C, 64, 64)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activity 2 replaces this with the VAE encoder returning ``[mu, logvar]``."""
        raise NotImplementedError("encode() is written in activity 2")

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Activity 2 replaces this with the reparameterization trick."""
        raise NotImplementedError("reparameterize() is written in activity 2")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Autoencoder mode (activity 1): ``[x_hat, x, mu, logvar]`` with ``mu = logvar = 0``.

        ``z = z_simple(flatten(encoder(x)))``; the zeros make the KL term vanish, so the VAE
        loss reduces to the reconstruction error. Activity 2 replaces this method.
        """
        h = torch.flatten(self.encoder(x), start_dim=1)  # (B, h[-1] * 4)
        z = self.z_simple(h)  # (B, latent_dim)
        zeros = torch.zeros_like(z)
        return [self.decode(z), x, zeros, zeros]

    @torch.no_grad()
    def init_output_bias(self, frames: np.ndarray, eps: float = 0.01) -> MyVAETemplate:
        """Start the output at the mean colour of ``frames`` (``uint8 (N, 64, 64, 3)``).

        Sets the bias of the last convolution in ``final_layer`` to ``logit(mean colour)`` per
        channel, so that before any training the sigmoid outputs the average colour (nearly white
        for classic-control renders) instead of grey. Returns ``self``.

        Raises:
            ValueError: if ``final_layer`` has no convolution with a bias and one output per channel.
        """
        convs = [
            m
            for m in self.final_layer.modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None
        ]
        mean = np.asarray(frames[: min(len(frames), 4096)], dtype=np.float64).reshape(-1, 3).mean(axis=0) / 255.0
        if not convs or convs[-1].bias.shape != (len(mean),):
            raise ValueError("final_layer should end with a convolution (with a bias) to the image channels")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).clamp(eps, 1 - eps)
        convs[-1].bias.copy_(torch.log(mean_t) - torch.log1p(-mean_t))
        return self

    @torch.no_grad()
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``num_samples`` draws of ``z ~ N(0, I)``: ``(num_samples, C, 64, 64)``.

        Call ``model.eval()`` first: in training mode BatchNorm normalises with the statistics of
        this batch of samples instead of the running statistics learned from data.
        """
        device = next(self.parameters()).device
        z = torch.randn(num_samples, self.latent_dim, generator=generator).to(device)
        return self.decode(z)
