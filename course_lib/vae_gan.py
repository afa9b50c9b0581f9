"""VAE-GAN: a VAE whose reconstruction error is measured in a discriminator's feature space.

Larsen, Sønderby, Larochelle & Winther 2016, "Autoencoding beyond pixels using a learned similarity
metric", https://arxiv.org/abs/1512.09300; the encoder, generator and discriminator follow a World Models
class project (pantelis-classes/world-models-latest: the VAE-GAN experiment on World Models' car
racing, after leoHeidel/vae-gan-tf2), with its bugs
fixed: the discriminator's second convolution read the *input image* instead of the first layer's
output, so its first layer was dead; the encoder squashed ``mean`` and ``logsigma`` with ``tanh`` and
then used ``logsigma`` as a log-variance in the KL; and the KL was averaged over ``z`` instead of summed.

Three losses, one per network (Larsen et al., Algorithm 1):

- encoder: ``beta * KL + L_llike``, where ``L_llike = sum_features (Dis_l(x) - Dis_l(x_tilde))^2``
  (mean over the batch) compares the ``l``-th discriminator layer on ``x`` and its reconstruction;
- generator (decoder): ``gamma * L_llike + L_GAN,g``, the non-saturating GAN loss on reconstructions
  ``x_tilde = Dec(Enc(x))`` and prior samples ``x_p = Dec(z_p)``, ``z_p ~ N(0, I)``;
- discriminator: ``L_GAN,d``, binary cross-entropy of real ``x`` against ``x_tilde`` and ``x_p``.

``VAEGAN.forward`` returns ``(x_hat, mu, logvar)`` like every VAE of the course, so
:func:`course_lib.train.evaluate` and the plots of :mod:`course_lib.viz` work on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_lib.frames import to_tensor
from course_lib.losses import gaussian_kl, reconstruction_loss

KERNEL = 5


def _down(c_in: int, c_out: int, batch_norm: bool = True) -> list[nn.Module]:
    """``Conv2d(k5, s2, p2)`` (+ BatchNorm) + LeakyReLU(0.2): halves the side."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, KERNEL, stride=2, padding=2)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    return [*layers, nn.LeakyReLU(0.2)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    """``ConvTranspose2d(k5, s2, p2, output_padding=1)`` + BatchNorm + LeakyReLU(0.2): doubles the side."""
    return [
        nn.ConvTranspose2d(c_in, c_out, KERNEL, stride=2, padding=2, output_padding=1),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2),
    ]


class Encoder(nn.Module):
    """``(B, 3, 64, 64)`` -> ``mu, logvar`` ``(B, z_size)``: three stride-2 convolutions and a dense layer.

    Channels ``width, 2 width, 4 width`` at 32, 16, 8 pixels; dense ``4 width * 64 -> hidden`` with
    BatchNorm and LeakyReLU; then linear ``mu`` and ``logvar`` (no ``tanh``).
    """

    def __init__(self, z_size: int = 32, width: int = 16, hidden: int = 256):
        super().__init__()
        self.features = nn.Sequential(
            *_down(3, width),  # (B, w, 32, 32)
            *_down(width, 2 * width),  # (B, 2w, 16, 16)
            *_down(2 * width, 4 * width),  # (B, 4w, 8, 8)
            nn.Flatten(),  # (B, 4w * 64)
            nn.Linear(4 * width * 64, hidden),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.2),  # (B, hidden)
        )
        self.fc_mu = nn.Linear(hidden, z_size)
        self.fc_logvar = nn.Linear(hidden, z_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.fc_mu(h), self.fc_logvar(h)


class Generator(nn.Module):
    """``(B, z_size)`` -> ``(B, 3, 64, 64)`` in [0, 1]: dense to ``8x8``, three stride-2 transposed
    convolutions (8 -> 16 -> 32 -> 64 pixels), a last ``Conv2d(k5)`` to RGB and a sigmoid."""

    def __init__(self, z_size: int = 32, width: int = 16):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(z_size, 4 * width * 64), nn.BatchNorm1d(4 * width * 64), nn.LeakyReLU(0.2))
        self.net = nn.Sequential(
            *_up(4 * width, 4 * width),  # (B, 4w, 16, 16)
            *_up(4 * width, 2 * width),  # (B, 2w, 32, 32)
            *_up(2 * width, width),  # (B, w, 64, 64)
            nn.Conv2d(width, 3, KERNEL, padding=2),  # (B, 3, 64, 64)
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, 4 * self.width, 8, 8)  # (B, 4w, 8, 8)
        return self.net(h)


class Discriminator(nn.Module):
    """``(B, 3, 64, 64)`` -> ``(logit (B,), features (B, F))``.

    ``Conv(w) -> Conv(4w) + BN -> Conv(4w) + BN`` (stride 2: 32, 16, 8 pixels, LeakyReLU), then
    ``Conv2d(4w, 4w, k5)`` whose output, flattened, is the feature layer ``Dis_l`` (``F = 4w * 64``)
    used for the reconstruction loss; then BatchNorm, LeakyReLU, a dense layer and the logit.
    """

    def __init__(self, width: int = 16, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            *_down(3, width, batch_norm=False),  # (B, w, 32, 32)
            *_down(width, 4 * width),  # (B, 4w, 16, 16): reads the first layer (the original read the image)
            *_down(4 * width, 4 * width),  # (B, 4w, 8, 8)
            nn.Conv2d(4 * width, 4 * width, KERNEL, padding=2),  # (B, 4w, 8, 8): Dis_l
        )
        self.head = nn.Sequential(
            nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),  # (B, 4w * 64)
            nn.Linear(4 * width * 64, hidden),
            nn.BatchNorm1d(hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),  # (B, 1)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)  # (B, 4w, 8, 8)
        return self.head(features).squeeze(1), features.flatten(1)


class VAEGAN(nn.Module):
    """Encoder, generator (the VAE's decoder) and discriminator.

    Args:
        z_size: latent dimensions.
        width: channels of the first convolution of each network.
        hidden: units of the dense layers.
    """

    def __init__(self, z_size: int = 32, width: int = 16, hidden: int = 256):
        super().__init__()
        self.z_size = z_size
        self.encoder = Encoder(z_size, width, hidden)
        self.generator = Generator(z_size, width)
        self.discriminator = Discriminator(width, hidden)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, 64, 64)`` -> ``mu, logvar`` ``(B, z_size)``."""
        return self.encoder(x)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``mu + exp(logvar / 2) * eps`` while training, ``mu`` in eval mode."""
        if not self.training:
            return mu
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, z_size)`` -> ``(B, 3, 64, 64)`` in [0, 1]."""
        return self.generator(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` -> ``(x_hat, mu, logvar)``."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def vae_gan_losses(
    model: VAEGAN, x: torch.Tensor, gamma: float = 0.1, beta: float = 1.0, pixel_weight: float = 0.0
) -> dict[str, torch.Tensor]:
    """The three losses of one VAE-GAN step on a batch ``x`` ``(B, 3, 64, 64)``.

    The discriminator sees ``[x, x_tilde, x_p]`` in one pass, so its BatchNorm layers normalise
    real and generated images with the same statistics.

    Args:
        model: the VAE-GAN.
        x: the batch, in [0, 1].
        gamma: weight of the feature reconstruction in the generator's loss, against the GAN term.
        beta: weight of the KL in the encoder's loss.
        pixel_weight: weight of the pixel error added to the encoder's and generator's losses;
            0 is the paper (reconstruction in feature space only), 1 a common hybrid that keeps
            the colours and layout while the GAN term adds detail.

    Returns:
        Scalar tensors: ``encoder`` (``beta * kl + feature_recon + pixel_weight * recon``),
        ``generator`` (``gamma * feature_recon + gan_generator + pixel_weight * recon``),
        ``discriminator`` (``gan_discriminator``), and
        for monitoring ``kl`` (sum over ``z``, mean over the batch), ``feature_recon`` (sum over
        features, mean over the batch), ``gan_generator``, ``gan_discriminator`` and ``recon``
        (the pixel error, sum over pixels, mean over the batch).
    """
    b = x.shape[0]
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # (B, Z)
    z_p = torch.randn_like(mu)  # (B, Z) prior samples
    x_tilde = model.decode(z)  # (B, 3, 64, 64)
    x_p = model.decode(z_p)
    logits, features = model.discriminator(torch.cat([x, x_tilde, x_p]))  # (3B,), (3B, F)
    real, tilde, prior = logits.split(b)
    kl = gaussian_kl(mu, logvar).sum(dim=1).mean()
    feature_recon = (features[:b] - features[b : 2 * b]).pow(2).sum(dim=1).mean()
    ones, zeros = torch.ones_like(real), torch.zeros_like(real)
    bce = F.binary_cross_entropy_with_logits
    gan_discriminator = bce(real, ones) + 0.5 * (bce(tilde, zeros) + bce(prior, zeros))
    gan_generator = 0.5 * (bce(tilde, ones) + bce(prior, ones))  # non-saturating: fool the discriminator
    recon = reconstruction_loss(x, x_tilde)
    pixel = pixel_weight * recon if pixel_weight else torch.zeros((), device=x.device)
    return {
        "encoder": beta * kl + feature_recon + pixel,
        "generator": gamma * feature_recon + gan_generator + pixel,
        "discriminator": gan_discriminator,
        "kl": kl,
        "feature_recon": feature_recon,
        "gan_generator": gan_generator,
        "gan_discriminator": gan_discriminator,
        "recon": recon,
    }


@dataclass
class TrainLog:
    """What a training run did: the loss terms of every step, the steps taken and the wall time."""

    steps: list[dict[str, float]]
    seconds: float

    def mean(self, key: str, last: int = 20) -> float:
        """Mean of ``key`` over the last ``last`` steps."""
        values = [s[key] for s in self.steps[-last:]]
        return float(np.mean(values)) if values else float("nan")


def _batch(frames: Any, batch_size: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    index = np.sort(rng.choice(len(frames), size=min(batch_size, len(frames)), replace=False))
    return to_tensor(np.asarray(frames[index])).to(device)  # (B, 3, 64, 64)


def train_vae_gan(
    model: VAEGAN,
    frames: Any,
    *,
    max_steps: int = 1000,
    seconds: float | None = None,
    batch_size: int = 32,
    lr: float = 3e-4,
    lr_discriminator: float | None = None,
    gamma: float = 0.1,
    beta: float = 1.0,
    pixel_weight: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> TrainLog:
    """Train the three networks, each on its own loss (Larsen et al., Algorithm 1), with Adam.

    Each step computes all losses in one forward pass and takes the gradient of each loss with
    respect to its own network's parameters only (``torch.autograd.grad``).

    Args:
        model: the VAE-GAN.
        frames: ``uint8 (N, 64, 64, 3)`` or a :class:`course_lib.data.ShardDataset`.
        max_steps: most steps.
        seconds: stop after this much wall time (for equal-time comparisons).
        batch_size: frames per step.
        lr: Adam's learning rate (``betas=(0.5, 0.999)``, as for DCGANs).
        lr_discriminator: the discriminator's learning rate (default ``lr``); a lower one keeps it
            from winning the game before the generator has learned anything.
        gamma: weight of the feature reconstruction in the generator's loss, against the GAN term.
        beta: weight of the KL in the encoder's loss.
        pixel_weight: weight of the pixel error (see :func:`vae_gan_losses`; 0 is the paper).
        seed: seeds the batches and PyTorch.
        progress: show a tqdm bar.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    groups = {
        "encoder": list(model.encoder.parameters()),
        "generator": list(model.generator.parameters()),
        "discriminator": list(model.discriminator.parameters()),
    }
    rates = {"encoder": lr, "generator": lr, "discriminator": lr if lr_discriminator is None else lr_discriminator}
    optimizers = {name: torch.optim.Adam(params, lr=rates[name], betas=(0.5, 0.999)) for name, params in groups.items()}
    model.train()
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    for _ in tqdm(range(max_steps), desc="VAE-GAN", disable=not progress):
        x = _batch(frames, batch_size, rng, device)
        losses = vae_gan_losses(model, x, gamma=gamma, beta=beta, pixel_weight=pixel_weight)
        for name, params in groups.items():
            grads = torch.autograd.grad(losses[name], params, retain_graph=name != "discriminator", allow_unused=True)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
        for optimizer in optimizers.values():
            optimizer.step()
        log.append({key: float(value.detach()) for key, value in losses.items()})
        if seconds is not None and time.perf_counter() - start > seconds:
            break
    model.eval()
    return TrainLog(log, time.perf_counter() - start)


def train_plain_vae(
    model: VAEGAN,
    frames: Any,
    *,
    max_steps: int = 1000,
    seconds: float | None = None,
    batch_size: int = 32,
    lr: float = 3e-4,
    beta: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> TrainLog:
    """The baseline: the same encoder and generator trained as a plain VAE (pixel error + KL).

    The discriminator is left untouched. Arguments as in :func:`train_vae_gan`.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    params = [*model.encoder.parameters(), *model.generator.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    model.train()
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    for _ in tqdm(range(max_steps), desc="VAE", disable=not progress):
        x = _batch(frames, batch_size, rng, device)
        mu, logvar = model.encode(x)
        x_hat = model.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
        recon = reconstruction_loss(x, x_hat)
        kl = gaussian_kl(mu, logvar).sum(dim=1).mean()
        loss = recon + beta * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.append({"loss": float(loss.detach()), "recon": float(recon.detach()), "kl": float(kl.detach())})
        if seconds is not None and time.perf_counter() - start > seconds:
            break
    model.eval()
    return TrainLog(log, time.perf_counter() - start)
