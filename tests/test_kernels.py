"""The matrix-product path of 1x1 transposed convolutions equals ``nn.ConvTranspose2d`` (course_lib.kernels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.kernels import dense_forward, dense_transposed_convolutions, is_eligible
from course_lib.solutions.conv_vae import ConvVAE
from course_lib.train import fit


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "bias"), [(5, 2, True), (3, 1, False), (6, 3, True)])
def test_dense_forward_equals_conv_transpose(kernel, stride, bias, channels_last):
    """Same output and same gradients of input, weight and bias as the layer's own forward."""
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(16, 8, kernel, stride=stride, bias=bias)
    if channels_last:
        layer = layer.to(memory_format=torch.channels_last)
    x = torch.randn(4, 16, 1, 1, requires_grad=True)
    grad = torch.randn(4, 8, kernel, kernel)
    expected = layer(x)
    expected.backward(grad)
    want = [x.grad.clone(), layer.weight.grad.clone(), *([layer.bias.grad.clone()] if bias else [])]
    x.grad, layer.weight.grad = None, None
    if bias:
        layer.bias.grad = None
    got = dense_forward(layer, x)
    assert got.shape == expected.shape == (4, 8, kernel, kernel)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    got.backward(grad)
    have = [x.grad, layer.weight.grad, *([layer.bias.grad] if bias else [])]
    for a, b in zip(have, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_swap_only_for_1x1_input_and_undone():
    """Larger inputs take the layer's own forward; on leaving, the layers are as before."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.ConvTranspose2d(8, 4, 3, stride=2), nn.ConvTranspose2d(4, 2, 3, padding=1))
    assert [is_eligible(m) for m in model] == [True, False]
    x = torch.randn(2, 8, 3, 3)
    expected = model(x)
    with dense_transposed_convolutions(model) as swapped:
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
    """fit's steps take the product (the ConvVAE's first decoder layer) and the model keeps its own forward."""
    calls = []
    import course_lib.kernels as kernels

    original = kernels.dense_forward
    monkeypatch.setattr(kernels, "dense_forward", lambda m, x: calls.append(x.shape) or original(m, x))
    torch.manual_seed(0)
    model = ConvVAE()
    frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    fit(model, frames, batch_size=4, max_steps=2, device="cpu", progress=False)
    assert calls == [(4, 1024, 1, 1)] * 2
    assert not any("forward" in vars(m) for m in model.modules())
