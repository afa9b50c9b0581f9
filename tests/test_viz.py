"""Figures: reconstruction grids, prior samples, loss curves, traversals, interpolations."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from course_lib.models import SmallVAE
from course_lib.solutions.hw1 import MyVAE
from course_lib.train import fit
from course_lib.viz import (
    interpolation,
    latent_traversal,
    loss_curves,
    prior_samples,
    reconstruct,
    reconstruction_grid,
    sample_prior,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def trained(cartpole_frames):
    """A SmallVAE after a few steps on real frames, with its history (validation included)."""
    torch.manual_seed(0)
    model = SmallVAE(z_size=4, width=8)
    history = fit(model, cartpole_frames[:48], cartpole_frames[48:64], num_epochs=1, batch_size=16,
                  device="cpu", progress=False)
    return model, history


def figure_makers(frames: np.ndarray, model, history) -> dict:
    return {
        "reconstruction_grid": lambda path: reconstruction_grid(model, frames, n=4, path=path),
        "prior_samples": lambda path: prior_samples(model, n=4, path=path),
        "loss_curves": lambda path: loss_curves(history, path=path, baseline=0.01),
        "latent_traversal": lambda path: latent_traversal(model, frames[0], steps=5, path=path),
        "interpolation": lambda path: interpolation(model, frames[0], frames[5], 4, path=path),
    }


FIGURES = [
    "reconstruction_grid", "prior_samples", "loss_curves", "latent_traversal", "interpolation"
]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_and_png(name, trained, cartpole_frames, tmp_path):
    """Does each plot return a Figure and write a non-empty PNG when given a path?"""
    model, history = trained
    make = figure_makers(cartpole_frames, model, history)[name]
    assert isinstance(make(None), Figure)
    assert not list(tmp_path.iterdir())  # no path, no file
    path = tmp_path / "plots" / f"{name}.png"
    fig = make(path)
    assert isinstance(fig, Figure)
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 50 and image.height > 50


def test_reconstruction_grid_rows(trained, cartpole_frames):
    """Does the first row show the inputs and the second their reconstructions?"""
    model, _ = trained
    frames = cartpole_frames[10:16]
    fig = reconstruction_grid(model, frames, n=6)
    assert len(fig.axes) == 12
    recon = reconstruct(model, frames)
    for j in range(6):
        np.testing.assert_array_equal(fig.axes[j].images[0].get_array(), frames[j])
        np.testing.assert_array_equal(fig.axes[6 + j].images[0].get_array(), recon[j])
    assert fig.axes[0].get_title(loc="left") == "input"


def test_latent_traversal_layout(trained, cartpole_frames):
    """Is there one row per traversed dimension and one column per step?"""
    model, _ = trained
    fig = latent_traversal(model, cartpole_frames[0], dims=[0, 2], steps=5)
    assert len(fig.axes) == 10
    assert [fig.axes[i].get_title(loc="left") for i in (0, 5)] == ["z[0]", "z[2]"]


def test_interpolation_endpoints(trained, cartpole_frames):
    """Do the interpolation's ends decode the codes of the two frames?"""
    model, _ = trained
    a, b = cartpole_frames[0], cartpole_frames[5]
    fig = interpolation(model, a, b, steps=4)
    assert len(fig.axes) == 4
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), reconstruct(model, a[None])[0])
    np.testing.assert_array_equal(fig.axes[3].images[0].get_array(), reconstruct(model, b[None])[0])


def test_loss_curves_plots_history(trained):
    """Does the loss plot draw one point per step and the validation MSE with the baseline?"""
    _, history = trained
    fig = loss_curves(history, baseline=0.02)
    ax_train, ax_val = fig.axes
    lines = {line.get_label(): line for line in ax_train.get_lines()}
    assert {"loss", "recon", "kl"} <= set(lines)
    np.testing.assert_allclose(lines["loss"].get_ydata(), [h["loss"] for h in history.train])
    val_ys = [line.get_ydata() for line in ax_val.get_lines()]
    assert any(np.allclose(y, [v["mse"] for v in history.val]) for y in val_ys)
    assert any(np.allclose(y, 0.02) for y in val_ys)


def test_prior_samples_seeded(trained):
    """Does the same seed show the same samples, and another seed others?"""
    model, _ = trained

    def pixels(seed: int) -> np.ndarray:
        fig = prior_samples(model, n=3, seed=seed)
        return np.stack([ax.images[0].get_array() for ax in fig.axes])

    np.testing.assert_array_equal(pixels(0), pixels(0))
    assert not np.array_equal(pixels(0), pixels(1))


@pytest.mark.parametrize(
    "make_model",
    [lambda: SmallVAE(z_size=4, width=8), lambda: MyVAE(3, 4, [8, 16, 32, 64, 128])],
    ids=["SmallVAE", "MyVAE"],
)
def test_sample_prior(make_model):
    """Are n uint8 frames decoded, the model left in eval mode, and the samples deterministic and distinct?"""
    torch.manual_seed(0)
    model = make_model().train()
    images = sample_prior(model, n=3)
    assert not model.training
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    assert not np.array_equal(images[0], images[1])
    np.testing.assert_array_equal(sample_prior(model, n=3), images)


def test_generation_uses_running_statistics():
    """For a BatchNorm model, does the first sample not depend on how many are generated?"""
    torch.manual_seed(0)
    model = MyVAE(3, 4, [8, 16, 32, 64, 128])
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        model.train()(torch.rand(8, 3, 64, 64))
    one = sample_prior(model.train(), n=1)
    four = sample_prior(model.train(), n=4)
    diff = np.abs(one[0].astype(np.int16) - four[0].astype(np.int16))
    assert diff.max() <= 1  # float rounding of batched convolutions only
