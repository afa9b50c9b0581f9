"""The VAE-GAN: shapes, the seed's discriminator bug fixed, the three losses, and training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from course_lib.vae_gan import VAEGAN, Discriminator, train_plain_vae, train_vae_gan, vae_gan_losses


def _model(z_size: int = 8, width: int = 4, hidden: int = 32, seed: int = 0) -> VAEGAN:
    torch.manual_seed(seed)
    return VAEGAN(z_size=z_size, width=width, hidden=hidden)


@pytest.mark.parametrize(("z_size", "width", "batch"), [(32, 16, 2), (8, 4, 3), (1, 2, 5)])
def test_shapes(z_size, width, batch):
    """Do encoder, generator and discriminator give (B, Z), (B, 3, 64, 64) in [0, 1], (B,) and (B, F)?"""
    model = _model(z_size, width)
    x = torch.rand(batch, 3, 64, 64)
    with torch.no_grad():
        x_hat, mu, logvar = model(x)
        logit, features = model.discriminator(x)
    assert x_hat.shape == x.shape and mu.shape == logvar.shape == (batch, z_size)
    assert float(x_hat.min()) >= 0 and float(x_hat.max()) <= 1
    assert logit.shape == (batch,) and features.shape == (batch, 4 * width * 8 * 8)


def test_discriminator_uses_its_first_layer():
    """Does the discriminator's second convolution read the first layer's output (the seed read the image)?"""
    torch.manual_seed(0)
    disc = Discriminator(width=4, hidden=16)
    logit, features = disc(torch.rand(4, 3, 64, 64))
    (logit.sum() + features.sum()).backward()
    first = disc.body[0]
    assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0


def test_eval_mode_decodes_the_mean():
    """In eval mode, is the reconstruction deterministic (decode mu), and in train mode sampled?"""
    model = _model()
    x = torch.rand(4, 3, 64, 64)
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


def test_losses_follow_their_definitions():
    """Are the feature reconstruction, KL and the per-network losses what Larsen et al. define?"""
    model = _model()
    x = torch.rand(6, 3, 64, 64)
    torch.manual_seed(1)
    losses = vae_gan_losses(model, x, gamma=0.3, beta=2.0)
    assert {"encoder", "generator", "discriminator", "kl", "feature_recon", "recon"} <= set(losses)
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert torch.isclose(losses["encoder"], 2.0 * losses["kl"] + losses["feature_recon"])
    assert torch.isclose(losses["generator"], 0.3 * losses["feature_recon"] + losses["gan_generator"])
    assert losses["kl"] >= 0 and losses["feature_recon"] >= 0
    with_pixels = vae_gan_losses(model, x, pixel_weight=1.0)
    assert torch.isclose(
        with_pixels["encoder"], with_pixels["kl"] + with_pixels["feature_recon"] + with_pixels["recon"]
    )


def test_feature_recon_is_zero_for_a_perfect_reconstruction():
    """With a generator that returns the input, is the feature-space error zero?"""
    model = _model()
    x = torch.rand(4, 3, 64, 64)
    model.decode = lambda z: x  # a perfect reconstruction (x_p = x too)
    assert float(vae_gan_losses(model, x)["feature_recon"].detach()) == pytest.approx(0.0, abs=1e-6)


def test_each_network_is_trained_on_its_own_loss():
    """After VAE-GAN steps do all three networks move, and does the plain VAE leave the discriminator alone?"""
    frames = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_vae_gan(model, frames, max_steps=2, batch_size=8, lr=1e-3, progress=False)
    for part in ("encoder", "generator", "discriminator"):
        moved = [k for k, v in model.state_dict().items() if k.startswith(part) and not torch.equal(v, before[k])]
        assert moved, part
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_plain_vae(model, frames, max_steps=2, batch_size=8, progress=False)
    disc = [k for k in before if k.startswith("discriminator")]
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in disc)
    assert any(not torch.equal(model.state_dict()[k], before[k]) for k in before if k.startswith("generator"))


def _blobs(n: int = 32) -> np.ndarray:
    """Frames of one coloured square on a background, at random places: a learnable, fixed data set."""
    rng = np.random.default_rng(0)
    frames = np.full((n, 64, 64, 3), (40, 140, 40), dtype=np.uint8)
    for f in frames:
        r, c = rng.integers(0, 48, 2)
        f[r : r + 16, c : c + 16] = (200, 200, 200)
    return frames


@pytest.mark.parametrize("trainer", ["vae", "vae_gan_pixels"])
def test_training_lowers_the_pixel_error(trainer):
    """Does training (plain VAE, or VAE-GAN with the pixel term) lower the pixel error on fixed frames?"""
    frames = _blobs()
    model = _model(width=4)
    if trainer == "vae":
        log = train_plain_vae(model, frames, max_steps=40, batch_size=16, lr=3e-3, progress=False)
    else:
        log = train_vae_gan(
            model, frames, max_steps=40, batch_size=16, lr=3e-3, lr_discriminator=1e-4, pixel_weight=1.0,
            progress=False,
        )
    first = np.mean([s["recon"] for s in log.steps[:3]])
    assert log.mean("recon", last=3) < 0.7 * first


def test_time_budget_stops_training():
    """Does the seconds budget stop a long run early?"""
    frames = _blobs(8)
    log = train_vae_gan(_model(), frames, max_steps=10_000, seconds=0.5, batch_size=4, progress=False)
    assert len(log.steps) < 10_000 and log.seconds < 5
