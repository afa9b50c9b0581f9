"""KL per latent dimension and active units (course_lib.diagnostics)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.diagnostics import LatentUsage, latent_usage, plot_latent_usage, usage_of_codes


class FixedEncoder(nn.Module):
    """A 'VAE' whose posterior is set by hand: dimension 0 follows the mean brightness of the frame,
    dimension 1 is a constant offset with a narrow posterior, dimension 2 is the prior (collapsed)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))
        self.calls = 0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        b = x.shape[0]
        brightness = x.mean(dim=(1, 2, 3))  # (B,)
        mu = torch.stack([self.scale * (brightness - 0.5), torch.full((b,), 1.0), torch.zeros(b)], dim=1)
        logvar = torch.stack([torch.zeros(b), torch.full((b,), -2.0), torch.zeros(b)], dim=1)
        return mu, logvar


def _frames(n: int = 40) -> np.ndarray:
    levels = np.linspace(0, 255, n).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, 64, 64, 3)).copy()


def test_kl_per_dimension_matches_the_closed_form():
    """Is each dimension's KL the mean over frames of -0.5 (1 + logvar - mu^2 - exp(logvar)), in batches?"""
    frames = _frames()
    model = FixedEncoder()
    usage = latent_usage(model, frames, batch_size=7)
    assert model.calls == 6  # ceil(40 / 7) batches
    brightness = frames.reshape(len(frames), -1).mean(1) / 255.0
    mu0 = 4.0 * (brightness - 0.5)
    expected = [np.mean(0.5 * mu0**2), -0.5 * (1 - 2.0 - 1.0 - np.exp(-2.0)), 0.0]
    np.testing.assert_allclose(usage.kl, expected, rtol=1e-5, atol=1e-7)
    assert usage.total_kl == pytest.approx(sum(expected), rel=1e-5)


def test_active_units_follow_the_variance_of_the_mean():
    """Is only the dimension whose mean moves with the input active (a constant offset costs KL but is inactive)?"""
    usage = latent_usage(FixedEncoder(), _frames())
    assert usage.active.tolist() == [True, False, False]
    assert usage.n_active == 1
    assert usage.kl[1] > 0.5  # not free, yet carries nothing about the frame


def test_model_mode_is_restored_and_input_checked():
    """Is the model's training mode restored, and are fewer than two frames refused?"""
    model = FixedEncoder().train()
    latent_usage(model, _frames(4))
    assert model.training
    with pytest.raises(ValueError, match="at least two"):
        latent_usage(model, _frames(1))


def test_plot_has_one_panel_per_model(tmp_path):
    """Does the plot show one panel per model, titled with its active count, and save a PNG?"""
    usage = LatentUsage(
        kl=np.array([2.0, 0.1, 0.0]), mean_variance=np.array([1.0, 0.02, 0.0]), active=np.array([1, 1, 0], bool)
    )
    fig = plot_latent_usage({"a": usage, "b": usage}, path=tmp_path / "kl.png", sharey=False)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 2 and all("2/3 active" in t for t in titles)
    assert (tmp_path / "kl.png").stat().st_size > 0


def test_usage_of_codes_is_the_one_definition():
    """Does a model's usage equal the usage of its (mu, logvar) on the same frames, with a dimension
    active exactly when Var(mu_j) > 0.01, and are malformed codes refused?"""
    frames = _frames()
    model = FixedEncoder()
    with torch.no_grad():
        mu, logvar = model.encode(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)  # (N, 3) each
    from_codes, from_model = usage_of_codes(mu, logvar), latent_usage(model, frames)
    np.testing.assert_allclose(from_codes.kl, from_model.kl, rtol=1e-6)
    np.testing.assert_array_equal(from_codes.active, from_model.active)
    spread = torch.linspace(-1, 1, len(mu))  # (N,)
    for variance in (0.005, 0.02):  # on either side of Burda et al.'s 0.01
        codes = mu.clone()
        codes[:, 1] = spread * (variance / spread.double().var()).sqrt().float()
        assert usage_of_codes(codes, logvar).active[1] == (variance > 0.01)
    with pytest.raises(ValueError, match="N >= 2"):
        usage_of_codes(mu[:1], logvar[:1])
    with pytest.raises(ValueError, match="one shape"):
        usage_of_codes(mu, logvar[:, :2])
