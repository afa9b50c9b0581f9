"""The World Models ConvVAE, homework 1's MyVAE (reference answer) and SmallVAE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.models import SmallVAE
from course_lib.solutions.conv_vae import ConvVAE
from course_lib.solutions.hw1 import MyVAE
from course_lib.train import fit

SMALL_HIDDEN = [8, 16, 32, 64, 128]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def batch(b: int = 2, seed: int = 0, side: int = 64) -> torch.Tensor:
    return torch.rand(b, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def conv_vae() -> ConvVAE:
    torch.manual_seed(0)
    return ConvVAE()


def test_conv_vae_parameter_count(conv_vae):
    """Has the World Models VAE exactly 4,348,547 parameters (z_size 32)?"""
    assert n_params(conv_vae) == 4_348_547


def test_conv_vae_intermediate_shapes(conv_vae):
    """Are the encoder and decoder feature maps 31/14/6/2 and 5/13/30/64 pixels, as in the paper?"""
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def record(name: str):
        return lambda module, inputs, output: shapes.append((name, tuple(output.shape)))

    hooks = [
        m.register_forward_hook(record(name))
        for name, m in conv_vae.named_modules()
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    try:
        x_hat, mu, logvar = conv_vae(batch(3))
    finally:
        for h in hooks:
            h.remove()
    assert [s for _, s in shapes] == [
        (3, 32, 31, 31),
        (3, 64, 14, 14),
        (3, 128, 6, 6),
        (3, 256, 2, 2),
        (3, 128, 5, 5),
        (3, 64, 13, 13),
        (3, 32, 30, 30),
        (3, 3, 64, 64),
    ]
    assert [n for n, _ in shapes][:4] == [f"encoder.{i}" for i in (0, 2, 4, 6)]
    assert x_hat.shape == (3, 3, 64, 64)
    assert mu.shape == logvar.shape == (3, 32)


def test_conv_vae_output_range(conv_vae):
    """Are reconstructions and decodings of extreme codes in [0, 1] (sigmoid output)?"""
    with torch.no_grad():
        x_hat, _, _ = conv_vae(batch(2, seed=1))
        far = conv_vae.decode(100 * torch.randn(4, 32, generator=torch.Generator().manual_seed(0)))
    for out in (x_hat, far):
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert isinstance(conv_vae.decoder[-1], nn.Sigmoid)


def reparameterizers() -> list:
    torch.manual_seed(0)
    return [
        pytest.param(ConvVAE(z_size=4), id="ConvVAE"),
        pytest.param(MyVAE(3, 4, SMALL_HIDDEN), id="MyVAE"),
        pytest.param(SmallVAE(z_size=4, width=8).train(), id="SmallVAE"),
    ]


@pytest.mark.parametrize("model", reparameterizers())
def test_reparameterize_statistics(model):
    """Do samples of mu = 2, logvar = log(0.25) have mean 2 and std 0.5 (within 1%)?"""
    model.train()
    torch.manual_seed(0)
    mu = torch.full((1000, 200), 2.0)
    logvar = torch.full((1000, 200), math.log(0.25))
    with torch.no_grad():
        z = model.reparameterize(mu, logvar)
    assert z.shape == mu.shape
    assert float(z.mean()) == pytest.approx(2.0, rel=0.01)
    assert float(z.std()) == pytest.approx(0.5, rel=0.01)  # std, not variance 0.25 or logvar


@pytest.mark.parametrize("model", reparameterizers())
def test_reparameterize_is_random(model):
    """Do two calls with the same mu and logvar draw different z?"""
    model.train()
    mu, logvar = torch.zeros(4, 8), torch.zeros(4, 8)
    assert not torch.equal(model.reparameterize(mu, logvar), model.reparameterize(mu, logvar))


@pytest.mark.parametrize("model", reparameterizers())
def test_reparameterize_gradients(model):
    """Do gradients flow back to both mu and logvar through the sample?"""
    model.train()
    torch.manual_seed(1)
    mu = torch.randn(4, 8, requires_grad=True)
    logvar = torch.randn(4, 8, requires_grad=True)
    model.reparameterize(mu, logvar).pow(2).sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    assert (mu.grad != 0).any() and (logvar.grad != 0).any()


def test_myvae_encoder_blocks():
    """Has MyVAE(3, 10) five Conv2d(k3, s2, p1) + BatchNorm2d + LeakyReLU blocks, 3 -> 512?"""
    model = MyVAE(3, 10)
    assert len(model.encoder) == 5
    channels = [3, 32, 64, 128, 256, 512]
    for i, block in enumerate(model.encoder):
        conv, norm, act = list(block)
        assert isinstance(conv, nn.Conv2d)
        assert conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
        assert (conv.in_channels, conv.out_channels) == (channels[i], channels[i + 1])
        assert isinstance(norm, nn.BatchNorm2d) and norm.num_features == channels[i + 1]
        assert isinstance(act, nn.LeakyReLU)


@pytest.mark.parametrize(("hidden_dims", "flat"), [(None, 2048), (SMALL_HIDDEN, 512)])
def test_myvae_latent_layers(hidden_dims, flat):
    """Do z_simple, z_mu and z_var map hidden_dims[-1] * 4 features to latent_dim?"""
    model = MyVAE(3, 10, hidden_dims)
    for layer in (model.z_simple, model.z_mu, model.z_var):
        assert isinstance(layer, nn.Linear)
        assert (layer.in_features, layer.out_features) == (flat, 10)


@pytest.mark.parametrize("hidden_dims", [None, SMALL_HIDDEN])
def test_myvae_forward(hidden_dims):
    """Does forward return [x_hat, x, mu, logvar] with x_hat (B, 3, 64, 64) in [0, 1]?"""
    torch.manual_seed(0)
    model = MyVAE(3, 10, hidden_dims)
    x = batch(2)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, list) and len(out) == 4
    x_hat, x_out, mu, logvar = out
    assert x_out is x
    assert x_hat.shape == (2, 3, 64, 64)
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0
    assert mu.shape == logvar.shape == (2, 10)
    assert not torch.equal(mu, logvar)  # separate z_mu and z_var heads
    with torch.no_grad():
        mu_e, logvar_e = model.encode(x)
    torch.testing.assert_close(mu_e, mu)
    torch.testing.assert_close(logvar_e, logvar)


def test_myvae_sample_shape():
    """Does ``sample`` decode prior draws to (n, 3, 64, 64) in [0, 1]?"""
    torch.manual_seed(0)
    model = MyVAE(3, 6, SMALL_HIDDEN).eval()
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 3, 64, 64)
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_small_vae_shapes():
    """Does SmallVAE encode to (B, z_size) and decode to (B, 3, 64, 64) in [0, 1]?"""
    torch.manual_seed(0)
    model = SmallVAE(z_size=4, width=8)
    with torch.no_grad():
        x_hat, mu, logvar = model(batch(3))
    assert x_hat.shape == (3, 3, 64, 64)
    assert mu.shape == logvar.shape == (3, 4)
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0
    assert model.decode(torch.zeros(2, 4)).shape == (2, 3, 64, 64)


def test_small_vae_eval_uses_mean():
    """Does reparameterize return mu itself in eval mode, and a sample in training mode?"""
    model = SmallVAE(z_size=4, width=8)
    mu, logvar = torch.randn(2, 4), torch.zeros(2, 4)
    assert model.eval().reparameterize(mu, logvar) is mu
    assert not torch.equal(model.train().reparameterize(mu, logvar), mu)


def test_small_vae_eval_is_deterministic():
    """Are two eval-mode forward passes identical?"""
    torch.manual_seed(0)
    model = SmallVAE(z_size=4, width=8).eval()
    x = batch(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)


def test_small_vae_rejects_wrong_size():
    """Is a ValueError raised for a 32x32 input?"""
    with pytest.raises(ValueError, match="64, 64"):
        SmallVAE(z_size=4, width=8).encode(batch(2, side=32))


@pytest.mark.parametrize("kwargs", [{"z_size": 0}, {"width": 0}])
def test_small_vae_rejects_bad_size(kwargs):
    """Is a ValueError raised for a non-positive z_size or width?"""
    with pytest.raises(ValueError):
        SmallVAE(**kwargs)


@pytest.mark.parametrize(
    "make_model",
    [lambda: SmallVAE(z_size=4, width=8), lambda: MyVAE(3, 8, SMALL_HIDDEN)],
    ids=["SmallVAE", "MyVAE"],
)
def test_training_lowers_loss(make_model, cartpole_frames):
    """Do 30 Adam steps on real CartPole frames lower the loss (last 5 vs first 5 steps)?"""
    torch.manual_seed(0)
    model = make_model()
    history = fit(
        model, cartpole_frames, num_epochs=10, batch_size=32, lr=2e-3, max_steps=30, seed=0,
        device="cpu", progress=False,
    )
    losses = np.array([h["loss"] for h in history.train])
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.8 * losses[:5].mean()
