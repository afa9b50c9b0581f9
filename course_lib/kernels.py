"""Faster kernels for layers that oneDNN runs far below the CPU's matmul rate, swapped in by ``fit``.

Two ``nn.ConvTranspose2d`` cases of the World Models decoder: a 1x1 input is a matrix product
(:func:`dense_forward`), and a stride that divides the kernel is one convolution and a pixel shuffle
(:func:`phase_forward`). :func:`fast_transposed_convolutions` swaps them in; the weights, the state dict and
the results (to float rounding, ``tests/test_kernels.py``) stay the layer's. Timings: ``benchmarks/bench_training.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

#: The ``torch.profiler`` label of the matrix-product path's forward pass (its backward runs as
#: autograd's ``AddmmBackward0``, like any linear layer's).
DENSE_LABEL = "course.dense_conv_transpose2d"
#: The ``torch.profiler`` label of the phase convolution's forward pass (its backward runs as
#: ``_PhaseConvTranspose2dBackward``, calling ``aten::convolution_backward``).
PHASE_LABEL = "course.phase_conv_transpose2d"
#: The most output channels for which the phase convolution beat oneDNN's transposed convolution
#: (forward and backward at batch 100 on a 2-core AMD EPYC, 8: 37 against 46 ms; 16: 96 against 74 ms;
#: bench_training.py, lever ``phase_last_transposed_convolution``).
PHASE_MAX_OUT_CHANNELS = 8


def is_eligible(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.ConvTranspose2d`` whose 1x1-input case is a plain matrix product.

    That is: no padding, no output padding, dilation 1, one group, zero padding mode, and no
    ``forward`` of its own, neither set on the instance nor defined by a subclass (which the swap
    would hide).
    """
    return _unpadded(module) and "forward" not in vars(module) and type(module).forward is nn.ConvTranspose2d.forward


def _unpadded(module: nn.Module) -> bool:
    """An ``nn.ConvTranspose2d`` without padding, output padding, dilation or groups."""
    return (
        isinstance(module, nn.ConvTranspose2d)
        and tuple(module.padding) == (0, 0)
        and tuple(module.output_padding) == (0, 0)
        and tuple(module.dilation) == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
    )


def dense_forward(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for an eligible layer (:func:`is_eligible`) and ``x`` of shape ``(B, C_in, 1, 1)``.

    A transposed convolution of a 1x1 map is a matrix product, whatever the stride: output pixel ``(i, j)``
    of channel ``c`` is ``sum_k x[b, k] * W[k, c, i, j] + bias[c]``. For World Models' first decoder layer
    (``(B, 1024, 1, 1)`` to ``(B, 128, 5, 5)``; Ha & Schmidhuber 2018, "World Models") oneDNN's general
    transposed convolution took 102 ms forward and backward at batch 100 on a 2-core Xeon with AMX in
    float32 (210 ms under bfloat16 autocast), against 17 and 14 ms as one ``F.linear``
    (``benchmarks/bench_training.py``, lever ``dense_first_transposed_convolution``). With channels-last
    weights the product reads them in their memory order, ``(C_in, kH, kW, C_out)``, so neither pass copies
    the weight or its gradient.

    Args:
        module: the transposed convolution, weight ``(C_in, C_out, kH, kW)``, bias ``(C_out,)`` or None.
        x: ``(B, C_in, 1, 1)`` input, any float dtype.

    Returns:
        ``(B, C_out, kH, kW)``: channels-last when the weight is, else contiguous NCHW.

    Raises:
        ValueError: when ``x`` is not ``(B, C_in, 1, 1)``.
    """
    c_in, c_out, kh, kw = module.weight.shape
    if x.dim() != 4 or x.shape[1] != c_in or x.shape[2:] != (1, 1):
        raise ValueError(f"dense_forward needs input of shape (B, {c_in}, 1, 1), got {tuple(x.shape)}")
    weight, bias = module.weight, module.bias
    if weight.is_contiguous(memory_format=torch.channels_last):
        # memory order (C_in, kH, kW, C_out): a view as (C_in, kH * kW * C_out), no copy either way
        with record_function(DENSE_LABEL):
            flat = weight.permute(0, 2, 3, 1).reshape(c_in, kh * kw * c_out)
            bias = None if bias is None else bias.repeat(kh * kw)  # (kH * kW * C_out,)
            # (B, C_in) @ (C_in, kH * kW * C_out) -> (B, kH, kW, C_out) -> channels-last (B, C_out, kH, kW)
            return F.linear(x.flatten(1), flat.t(), bias).view(-1, kh, kw, c_out).permute(0, 3, 1, 2)
    with record_function(DENSE_LABEL):
        bias = None if bias is None else bias.repeat_interleave(kh * kw)  # (C_out * kH * kW,)
        # (B, C_in) @ (C_in, C_out * kH * kW) -> (B, C_out, kH, kW)
        return F.linear(x.flatten(1), weight.flatten(1).t(), bias).view(-1, c_out, kh, kw)


def is_phase_eligible(module: nn.Module) -> bool:
    """Whether ``module`` runs faster as a phase convolution (:func:`phase_forward`).

    That is: an ``nn.ConvTranspose2d`` without padding, output padding, dilation or groups, the
    same stride ``s > 1`` along both axes, a kernel that is a multiple of ``s`` along both, and at
    most :data:`PHASE_MAX_OUT_CHANNELS` output channels.
    """
    if not _unpadded(module):
        return False
    (sh, sw), (kh, kw) = module.stride, module.kernel_size
    return sh == sw > 1 and kh % sh == 0 and kw % sw == 0 and module.out_channels <= PHASE_MAX_OUT_CHANNELS


class _PhaseConvTranspose2d(torch.autograd.Function):
    """Forward as one convolution and a pixel shuffle; backward as the transposed convolution's own."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, s: int) -> torch.Tensor:
        c_in, c_out, kh, kw = weight.shape
        th, tw = kh // s, kw // s
        # weight (C_in, C_out, kH, kW), kernel index a * s + p: view (C_in, C_out, tH, s, tW, s); phase (p, q)
        # takes taps p, p + s, ... flipped (a correlation), as the output channel c * s * s + p * s + q
        phases = weight.view(c_in, c_out, th, s, tw, s).flip(2, 4).permute(1, 3, 5, 0, 2, 4)
        phases = phases.reshape(c_out * s * s, c_in, th, tw)
        if x.is_contiguous(memory_format=torch.channels_last):
            phases = phases.contiguous(memory_format=torch.channels_last)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = s, bias is not None
        bias = None if bias is None else bias.repeat_interleave(s * s)  # (C_out * s * s,)
        # (B, C_in, H, W) -> (B, C_out * s * s, H + tH - 1, W + tW - 1)
        #   -> pixel shuffle (B, C_out, (H - 1) * s + kH, (W - 1) * s + kW)
        return F.pixel_shuffle(F.conv2d(x, phases, bias, padding=(th - 1, tw - 1)), s)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        s = ctx.stride
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grad_x, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[1]] if ctx.has_bias else None,
            [s, s], [0, 0], [1, 1], True, [0, 0], 1, mask,
        )  # fmt: skip
        return grad_x, grad_weight, grad_bias, None


def phase_forward(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a layer :func:`is_phase_eligible` accepts, as a phase convolution.

    A transposed convolution of stride ``s`` whose kernel ``k`` is a multiple of ``s`` is ``s * s`` ordinary
    convolutions of kernel ``k / s``, one per phase ``(i mod s, j mod s)`` of the output, run as one
    ``F.conv2d`` with ``s * s`` times the output channels and interleaved by ``F.pixel_shuffle``: the
    sub-pixel convolution of Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an
    Efficient Sub-Pixel Convolutional Neural Network". The same FLOPs, but for World Models' last decoder
    layer (32 to 3 channels, kernel 6, stride 2) 12 output channels where oneDNN vectorises 3 poorly: on a
    2-core AMD EPYC at batch 100 in float32 its forward took 10 ms instead of 23 ms. The backward stays
    oneDNN's own (``aten::convolution_backward``, the layer's kernel and gradients), so forward and backward
    went from 34 to 20 ms (under bfloat16 autocast from 27 to 20 ms).

    Args:
        module: the transposed convolution, weight ``(C_in, C_out, kH, kW)``, bias ``(C_out,)`` or None.
        x: ``(B, C_in, H, W)`` float input.

    Returns:
        ``(B, C_out, (H - 1) * s + kH, (W - 1) * s + kW)``, channels-last when ``x`` is; under
        ``torch.autocast`` in its dtype, as ``aten::conv_transpose2d`` would be.

    Raises:
        ValueError: when the layer is not eligible or ``x`` is not ``(B, C_in, H, W)``.
    """
    if not is_phase_eligible(module):
        raise ValueError(f"phase_forward needs a layer is_phase_eligible accepts, got {module}")
    if x.dim() != 4 or x.shape[1] != module.in_channels:
        raise ValueError(f"phase_forward needs input of shape (B, {module.in_channels}, H, W), got {tuple(x.shape)}")
    weight, bias = module.weight, module.bias
    with record_function(PHASE_LABEL):
        if torch.is_autocast_enabled(x.device.type):  # autocast casts a transposed convolution's operands
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        return _PhaseConvTranspose2d.apply(x, weight, bias, module.stride[0])


def _forward(module: nn.ConvTranspose2d, original: Any, dense: bool, phase: bool) -> Any:
    """A ``forward`` for ``module``: with ``dense`` :func:`dense_forward` on 1x1 input, with ``phase``
    :func:`phase_forward` where the layer is phase-eligible, else ``original``."""
    phase = phase and is_phase_eligible(module)

    def forward(x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if dense and output_size is None and x.dim() == 4 and x.shape[2:] == (1, 1):
            return dense_forward(module, x)
        if phase and output_size is None and x.dim() == 4:
            return phase_forward(module, x)
        return original(x, output_size)

    return forward


@contextlib.contextmanager
def fast_transposed_convolutions(
    model: nn.Module, dense: bool = True, phase: bool = True
) -> Iterator[list[nn.ConvTranspose2d]]:
    """Within the block, ``model``'s eligible ``ConvTranspose2d`` layers run the kernels of this module.

    With ``dense``, 1x1 input runs as a matrix product (:func:`dense_forward`); with ``phase``, a
    phase-eligible layer as a phase convolution (:func:`phase_forward`); anything
    else as the layer itself (``dense`` and ``phase`` apart: the benchmark's levers).

    Yields the layers swapped; on leaving, each gets its own ``forward`` back (also on an error).
    Only the layers' ``forward`` attribute changes: hooks, parameters, their gradients' shapes, the state
    dict and the optimiser's parameters do not. Results agree with ``ConvTranspose2d`` to float rounding
    (``tests/test_kernels.py``), and under ``torch.autocast`` both kernels run in the autocast dtype, as the
    convolution does.
    """
    layers = [module for module in model.modules() if is_eligible(module)]
    for layer in layers:
        layer.forward = _forward(layer, layer.forward, dense, phase)
    try:
        yield layers
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)
