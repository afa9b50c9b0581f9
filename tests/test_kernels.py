"""The matrix-product and phase paths of transposed convolutions equal ``nn.ConvTranspose2d`` (course_lib.kernels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.kernels import (
    dense_forward,
    fast_transposed_convolutions,
    is_eligible,
    is_phase_eligible,
    phase_forward,
)
from course_lib.solutions.conv_vae import ConvVAE
from course_lib.train import fit


def assert_same_as_layer(forward, layer: nn.Module, x: torch.Tensor, tol: float) -> torch.Tensor:
    """``forward(layer, x)`` gives the layer's own output and the same gradients of input, weight, bias."""
    expected = layer(x)
    grad = torch.randn_like(expected)
    params = [x, *(t for t in (layer.weight, layer.bias) if t is not None)]
    want = torch.autograd.grad(expected, params, grad)
    got = forward(layer, x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    for a, b in zip(torch.autograd.grad(got, params, grad), want, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    return got


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "bias"), [(5, 2, True), (3, 1, False), (6, 3, True)])
def test_dense_forward_equals_conv_transpose(kernel, stride, bias, channels_last):
    """Same output and same gradients of input, weight and bias as the layer's own forward."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(16, 8, kernel, stride=stride, bias=bias)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
    x = torch.randn(4, 16, 1, 1, requires_grad=True)
    got = assert_same_as_layer(dense_forward, layer, x, 1e-5)
    assert got.shape == (4, 8, kernel, kernel)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_swap_only_for_1x1_input_and_undone():
    """Larger inputs take the layer's own forward; on leaving, the layers are as before."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(8, 4, 3, stride=2), nn.ConvTranspose2d(4, 2, 3, padding=1))
    assert [is_eligible(m) for m in model] == [True, False]
    x = torch.randn(2, 8, 3, 3)
    expected = model(x)
    with fast_transposed_convolutions(model) as swapped:
        assert swapped == [model[0]]
        torch.testing.assert_close(model(x), expected)  # 3x3 input: the convolution itself
    assert all("forward" not in vars(m) for m in model)
    with pytest.raises(ValueError, match=r"\(B, 8, 1, 1\)"):
        dense_forward(model[0], x)


def test_autocast_dtype_kept():
    """Under bfloat16 autocast the product runs in bfloat16, as the convolution does."""
    layer = nn.ConvTranspose2d(8, 4, 5, stride=2)
    x = torch.randn(2, 8, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dense_forward(layer, x).dtype == layer(x).dtype == torch.bfloat16


def test_fit_trains_with_it_and_leaves_the_model_alone(monkeypatch):
    """fit's steps take the product (first decoder layer) and the phase path (last); the model keeps its own forward."""
    calls = []
    import course_lib.kernels as kernels

    for name in ("dense_forward", "phase_forward"):
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda m, x, f=original, n=name: calls.append((n, x.shape)) or f(m, x))
    torch.manual_seed(0)
    model = ConvVAE()
    frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    fit(model, frames, batch_size=4, max_steps=2, device="cpu", progress=False)
    assert calls == [("dense_forward", (4, 1024, 1, 1)), ("phase_forward", (4, 32, 30, 30))] * 2
    assert not any("forward" in vars(m) for m in model.modules())


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(
    ("c_out", "kernel", "stride", "bias", "size"),
    [(3, 6, 2, True, 7), (8, 4, 2, False, 5), (2, 6, 3, True, 4), (3, (6, 4), 2, True, (5, 3))],
)
def test_phase_forward_equals_conv_transpose(c_out, kernel, stride, bias, size, channels_last):
    """Same output and same gradients of input, weight and bias as the layer's own forward."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(6, c_out, kernel, stride=stride, bias=bias).double()
    size = (size, size) if isinstance(size, int) else size
    x = torch.randn(3, 6, *size, dtype=torch.float64)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    assert is_phase_eligible(layer)
    got = assert_same_as_layer(phase_forward, layer, x, 1e-10)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_phase_gradcheck():
    """The phase path's backward is the gradient of its forward (finite differences, float64)."""
    from course_lib.kernels import _PhaseConvTranspose2d

    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 3, 4, 4, dtype=torch.float64, requires_grad=True)  # (C_in, C_out, kH, kW)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: _PhaseConvTranspose2d.apply(*a, 2), (x, weight, bias))


@pytest.mark.parametrize(
    "layer",
    [
        nn.ConvTranspose2d(8, 16, 6, stride=2),  # too many output channels: oneDNN is faster
        nn.ConvTranspose2d(8, 3, 5, stride=2),  # kernel not a multiple of the stride
        nn.ConvTranspose2d(8, 3, 6, stride=1),  # stride 1: nothing to gain
        nn.ConvTranspose2d(8, 3, 6, stride=(2, 3)),  # strides differ
        nn.ConvTranspose2d(8, 3, 6, stride=2, padding=1),
    ],
)
def test_phase_not_eligible(layer):
    """Layers the phase path does not take keep their own forward, and phase_forward refuses them."""
    assert not is_phase_eligible(layer)
    x = torch.randn(2, 8, 4, 4)
    with fast_transposed_convolutions(nn.Sequential(layer)) as swapped:
        expected = nn.ConvTranspose2d.forward(layer, x)
        torch.testing.assert_close(layer(x), expected)
    assert swapped == ([layer] if is_eligible(layer) else [])
    with pytest.raises(ValueError, match="is_phase_eligible"):
        phase_forward(layer, x)


def test_phase_under_autocast():
    """Under bfloat16 autocast the phase path runs in bfloat16, as the layer does, and agrees with it."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(8, 3, 6, stride=2)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = layer(x), phase_forward(layer, x)
    assert got.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=2e-2, atol=2e-2)
    got.float().sum().backward()
    assert layer.weight.grad.dtype == x.grad.dtype == torch.float32


def test_phase_swapped_in_only_when_asked(monkeypatch):
    """fast_transposed_convolutions(phase=False) leaves a phase-eligible layer its own forward."""
    import course_lib.kernels as kernels

    calls = []
    original = kernels.phase_forward
    monkeypatch.setattr(kernels, "phase_forward", lambda m, x: calls.append(x.shape) or original(m, x))
    layer = nn.ConvTranspose2d(8, 3, 6, stride=2)
    x = torch.randn(2, 8, 4, 4)
    with fast_transposed_convolutions(nn.Sequential(layer), phase=False):
        layer(x)
    assert calls == []
    with fast_transposed_convolutions(nn.Sequential(layer)):
        layer(x)
    assert calls == [(2, 8, 4, 4)]


def test_a_subclass_with_its_own_forward_is_left_alone():
    """A ConvTranspose2d subclass that defines forward keeps it: the swap would hide what it adds."""

    class Doubled(nn.ConvTranspose2d):
        def forward(self, x, output_size=None):
            return 2 * super().forward(x, output_size)

    model = nn.Sequential(Doubled(8, 3, 6, stride=2), Doubled(8, 4, 5, stride=2))
    assert not any(is_eligible(m) for m in model)
    x = torch.randn(2, 8, 4, 4)
    with fast_transposed_convolutions(model) as swapped:
        assert swapped == []
        torch.testing.assert_close(model[0](x), 2 * nn.ConvTranspose2d.forward(model[0], x))
