"""The interactive latent explorer: sliders by KL, live decoding, frame picking, prior and interpolation.

Widget interaction is simulated in Python: setting a slider's ``.value`` and calling a button's
``click()``, which is what the frontend's messages do in a kernel. Outside a kernel the explorer
decodes synchronously, so every assertion sees the new image at once.

The models are untrained but rigged so that the KL ranking is known: every mean is a multiple
``s_j`` of one standardized feature of the frame, and every log-variance is 0, so dimension ``j``
has a KL of ``s_j^2 / 2`` nats and a posterior-mean variance of ``s_j^2``; ``s_j = 0`` is a
collapsed dimension (``mu = 0``, ``logvar = 0`` for every frame).
"""

from __future__ import annotations

import base64
import io
import threading

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from course_lib.explorer import CSS_CLASSES, LatentExplorer, LatestOnly, explore, png_bytes
from course_lib.frames import to_tensor
from course_lib.models import SmallVAE
from course_lib.solutions.conv_vae import ConvVAE
from course_lib.solutions.hw1 import MyVAE

#: s_j per dimension: KL order 1, 3, 0, 2, then the collapsed 4 and 5
SCALES = [1.0, 2.0, 0.5, 1.5, 0.0, 0.0]
KL_ORDER = [1, 3, 0, 2, 4, 5]
COLLAPSED = {4, 5}


@torch.no_grad()
def rig(model: nn.Module, mu_layer: nn.Linear, logvar_layer: nn.Linear, frames: np.ndarray) -> nn.Module:
    """Make ``mu_j = SCALES[j] * standardized feature`` and ``logvar = 0`` on ``frames``."""
    model.eval()
    inputs = []
    handle = mu_layer.register_forward_hook(lambda _m, args, _out: inputs.append(args[0]))
    model.encode(to_tensor(frames))
    handle.remove()
    h = inputs[0]  # (N, F), the input of the mu layer
    w0 = mu_layer.weight[0].clone()  # (F,)
    u = h @ w0  # (N,)
    scales = torch.tensor(SCALES)[:, None]  # (Z, 1)
    mu_layer.weight.copy_(scales * w0 / u.std())
    mu_layer.bias.copy_(-scales[:, 0] * u.mean() / u.std())
    logvar_layer.weight.zero_()
    logvar_layer.bias.zero_()
    return model


def small_vae(frames: np.ndarray) -> nn.Module:
    torch.manual_seed(0)
    model = SmallVAE(z_size=6, width=8)
    return rig(model, model.fc_mu, model.fc_logvar, frames)


def my_vae(frames: np.ndarray) -> nn.Module:
    torch.manual_seed(0)
    model = MyVAE(3, 6, [8, 16, 32, 64, 128])
    return rig(model, model.z_mu, model.z_var, frames)


def conv_vae(frames: np.ndarray) -> nn.Module:
    torch.manual_seed(0)
    model = ConvVAE(z_size=6)
    return rig(model, model.fc_mu, model.fc_logvar, frames)


MODELS = {"SmallVAE": small_vae, "MyVAE": my_vae}


@pytest.fixture(scope="module")
def frames(cartpole_frames: np.ndarray) -> np.ndarray:
    """64 real CartPole frames (a copy)."""
    return cartpole_frames[:64].copy()


@pytest.fixture(scope="module", params=list(MODELS))
def explorer(request: pytest.FixtureRequest, frames: np.ndarray) -> LatentExplorer:
    """A fresh-enough explorer per model kind; tests reset it before use."""
    return LatentExplorer(MODELS[request.param](frames), frames)


@pytest.fixture
def ex(explorer: LatentExplorer) -> LatentExplorer:
    """The module's explorer, back at frame A = 0, frame B = 63, t = 0.5 and frame A's code."""
    explorer.frame.value = 0
    explorer.frame_b.value = 63
    explorer.t.value = 0.5
    explorer.reset()
    return explorer


def pixels(png: bytes, scale: int = 4) -> np.ndarray:
    """The ``uint8 (64, 64, 3)`` frame behind an upscaled PNG."""
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))[::scale, ::scale]


def test_one_slider_per_dimension_ordered_by_kl(ex: LatentExplorer):
    """Is there one slider per latent dimension, the highest KL first, labelled with its KL in nats?"""
    assert len(ex.sliders) == ex.z_size == 6
    assert ex.order.tolist() == KL_ORDER
    assert [s.description for s in ex.sliders] == [f"z[{d}]" for d in KL_ORDER]
    kls = ex.usage.kl[ex.order]
    assert np.all(np.diff(kls) <= 0)
    np.testing.assert_allclose(ex.usage.kl, 0.5 * np.square(SCALES), rtol=0.05, atol=1e-6)
    for label, kl in zip(ex.kl_labels, kls, strict=True):
        assert f"KL {kl:.2f} nats" in label.value


def test_collapsed_dimensions_are_greyed_out(ex: LatentExplorer):
    """Are exactly the inactive dimensions' sliders marked collapsed, greyed and labelled so?"""
    for slider, label, d in zip(ex.sliders, ex.kl_labels, ex.order, strict=True):
        collapsed = int(d) in COLLAPSED
        assert (CSS_CLASSES["collapsed"] in slider._dom_classes) == collapsed
        assert (CSS_CLASSES["active"] in slider._dom_classes) == (not collapsed)
        assert ("collapsed" in label.value) == collapsed
        assert (slider.style.handle_color == "lightgray") == collapsed
    assert ex.usage.n_active == 4
    rows = ex.widget.children[-1].children  # one HBox per slider, in slider order
    assert [CSS_CLASSES["row_collapsed"] in row._dom_classes for row in rows] == [False] * 4 + [True] * 2


def test_widgets_carry_css_classes(ex: LatentExplorer):
    """Do the root, the images and every latent slider carry the stable CSS classes?"""
    assert CSS_CLASSES["root"] in ex.widget._dom_classes
    assert CSS_CLASSES["image"] in ex.image._dom_classes
    assert CSS_CLASSES["input"] in ex.input_image._dom_classes
    assert all(CSS_CLASSES["slider"] in s._dom_classes for s in ex.sliders)
    assert CSS_CLASSES["prior"] in ex.prior_button._dom_classes
    assert CSS_CLASSES["interpolate"] in ex.interpolate_button._dom_classes


def test_moving_a_slider_changes_the_image(ex: LatentExplorer):
    """Does moving a slider change the image bytes to the PNG of the new code's decoding?"""
    before = ex.image.value
    renders = ex.renders
    ex.sliders[0].value = 2.5
    assert ex.image.value != before
    assert ex.renders == renders + 1
    assert ex.z[ex.order[0]] == pytest.approx(2.5)
    np.testing.assert_array_equal(pixels(ex.image.value), ex.decode(ex.z)[0])
    assert ex.status_text == "edited by hand"
    ex.reset()
    assert ex.image.value == before  # deterministic: the same code gives the same bytes


def test_picking_a_frame_sets_the_sliders_to_its_mu(ex: LatentExplorer, frames: np.ndarray):
    """Does picking frame 7 set the sliders to its posterior mean and show it as the input?"""
    with torch.no_grad():
        mu = ex.model.encode(to_tensor(frames[7]))[0][0].numpy()  # (Z,)
    assert not np.allclose(ex.z, mu)
    before = ex.image.value
    ex.frame.value = 7
    np.testing.assert_allclose(ex.z, mu, rtol=1e-3, atol=1e-5)  # batched vs single-frame convolutions
    np.testing.assert_array_equal(pixels(ex.input_image.value), frames[7])
    assert ex.image.value != before
    assert "frame 7" in ex.status_text


def test_slider_ranges_hold_every_real_code(ex: LatentExplorer):
    """Does every slider reach at least +-span and every frame's mu, so picking a frame is not clipped?"""
    for slider, d in zip(ex.sliders, ex.order, strict=True):
        assert slider.min <= min(-3.0, ex.mu[:, d].min())
        assert slider.max >= max(3.0, ex.mu[:, d].max())


def test_prior_button_draws_seeded_samples(ex: LatentExplorer):
    """Does each click decode the next seeded draw of N(0, I), a different image each time?"""
    draws = ex.prior_draws
    before = ex.image.value
    ex.prior_button.click()
    first = ex.image.value
    expected = torch.randn(6, generator=torch.Generator().manual_seed(ex.seed + draws)).numpy()
    np.testing.assert_allclose(ex.z, expected, atol=1e-6)
    ex.prior_button.click()
    assert len({before, first, ex.image.value}) == 3
    assert ex.prior_draws == draws + 2


def test_interpolation_between_two_frames(ex: LatentExplorer):
    """Do the button and the t slider decode (1 - t) mu_A + t mu_B, with t = 0 giving frame A's code?"""
    at_a = ex.image.value
    ex.frame_b.value = 40
    ex.t.value = 0.25
    np.testing.assert_allclose(ex.z, 0.75 * ex.mu[0] + 0.25 * ex.mu[40], atol=1e-5)
    quarter = ex.image.value
    assert quarter != at_a
    ex.reset()
    ex.interpolate_button.click()  # at t = 0.25 again
    assert ex.image.value == quarter
    ex.t.value = 1.0
    np.testing.assert_allclose(ex.z, ex.mu[40], atol=1e-5)
    ex.t.value = 0.0
    assert ex.image.value == at_a


def test_static_fallback_is_a_png(ex: LatentExplorer):
    """Does the display bundle hold the widget view and a PNG picture of the explorer next to it?"""
    bundle = ex._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    assert bundle["text/plain"].startswith("LatentExplorer(")
    with Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))) as image:
        assert image.format == "PNG"
        assert image.width > 300 and image.height > 300  # 3 frames, then 4 traversal rows of 7


def test_html_export_without_widget_state_shows_the_png(ex: LatentExplorer):
    """Does nbconvert's HTML of a notebook that lost its widget state show the static picture?"""
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explore(model, frames)")
    cell.outputs = [nbformat.v4.new_output("execute_result", data=ex._repr_mimebundle_(), execution_count=1)]
    nb.cells.append(cell)
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "data:image/png;base64," + ex._repr_mimebundle_()["image/png"][:64] in html


@pytest.mark.parametrize("make", [small_vae, my_vae, conv_vae], ids=["SmallVAE", "MyVAE", "ConvVAE"])
def test_any_vae_in_eval_mode(make, frames: np.ndarray):
    """Does the explorer work for each model kind, in eval mode, even if the model is set to train again?"""
    model = make(frames).train()
    ex = explore(model, frames[:16], decode_threads=None)
    assert not model.training
    eval_image = ex.image.value
    model.train()
    ex.sliders[0].value = 1.0
    ex.reset()
    assert not model.training
    assert ex.image.value == eval_image


def test_threaded_updates_end_on_the_latest_code(frames: np.ndarray):
    """With a worker thread, does a burst of slider moves end with the last code's image?"""
    ex = LatentExplorer(small_vae(frames), frames[:16], threaded=True)
    for value in np.linspace(-2.0, 2.0, 25):
        ex.sliders[0].value = float(value)
    assert ex.flush(timeout=30)
    assert ex.z[ex.order[0]] == pytest.approx(2.0)
    np.testing.assert_array_equal(pixels(ex.image.value), ex.decode(ex.z)[0])
    assert 2 <= ex.renders <= 1 + 25  # the initial image, then at most one per move


def test_latest_only_drops_overtaken_values():
    """While the worker is busy, are the values submitted meanwhile dropped except the last?"""
    started, release, seen = threading.Event(), threading.Event(), []

    def work(value: int) -> None:
        seen.append(value)
        started.set()
        release.wait(10)

    runner = LatestOnly(work, threaded=True)
    runner.submit(1)
    assert started.wait(10)  # the worker is busy with 1
    for value in range(2, 11):
        runner.submit(value)
    release.set()
    assert runner.flush(10)
    assert seen == [1, 10]
    assert (runner.submitted, runner.processed) == (10, 2)


def test_latest_only_reports_worker_errors():
    """Does an exception in the worker reach on_error, and does the next value still run?"""
    errors, seen = [], []

    def work(value: int) -> None:
        if value < 0:
            raise ValueError("negative")
        seen.append(value)

    runner = LatestOnly(work, threaded=True, on_error=errors.append)
    runner.submit(-1)
    assert runner.flush(10)
    runner.submit(3)
    assert runner.flush(10)
    assert [str(e) for e in errors] == ["negative"] and seen == [3]


def test_clear_errors(frames: np.ndarray):
    """Are bad frames, a model without a latent size and a code of the wrong shape rejected clearly?"""
    model = small_vae(frames)
    with pytest.raises(ValueError, match=r"uint8 frames of shape \(N, 64, 64, 3\)"):
        LatentExplorer(model, frames.astype(np.float32))
    with pytest.raises(ValueError, match="at least two frames"):
        LatentExplorer(model, frames[:1])
    nameless = small_vae(frames)
    del nameless.z_size
    with pytest.raises(AttributeError, match="neither z_size nor latent_dim"):
        LatentExplorer(nameless, frames)
    ex = LatentExplorer(model, frames[:8])
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        ex.set_z(np.zeros(5))
    with pytest.raises(ValueError, match="usage has 6 dimensions, the model 8"):
        LatentExplorer(SmallVAE(z_size=8, width=8), frames[:8], usage=ex.usage)


def test_png_bytes_upscales_with_nearest_neighbour(frames: np.ndarray):
    """Is a frame encoded as a PNG 4x larger whose every 4x4 block is one pixel of the frame?"""
    with Image.open(io.BytesIO(png_bytes(frames[3], scale=4))) as image:
        assert image.size == (256, 256)
        big = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(big[::4, ::4], frames[3])
    np.testing.assert_array_equal(big[3::4, 3::4], frames[3])
    with pytest.raises(ValueError, match="uint8 frame"):
        png_bytes(frames[:2])
