"""Faster kernels for layers that oneDNN runs far below the CPU's matmul rate, swapped in by ``fit``.

A transposed convolution of a 1x1 map (World Models' first decoder layer: ``(B, 1024, 1, 1)`` to
``(B, 128, 5, 5)``, Ha & Schmidhuber 2018) is a matrix product: with no padding, dilation or
groups, every output pixel ``(i, j)`` of channel ``c`` is ``sum_k x[b, k] * W[k, c, i, j] + bias[c]``,
whatever the stride. oneDNN runs it as a general transposed convolution: on a 2-core Xeon with AMX,
forward and backward of that layer at batch 100 took 102 ms in float32 and 210 ms under bfloat16
autocast, against 17 and 14 ms as one ``F.linear`` (``benchmarks/bench_training.py``, lever
``dense_first_transposed_convolution``); it was a quarter of the whole training step.

:func:`dense_transposed_convolutions` makes the model's eligible ``nn.ConvTranspose2d`` layers take
that product when their input is 1x1, and their own ``forward`` otherwise. The weights, their
gradients' shapes, the state dict and the optimiser's parameters stay as they are; results agree
with ``ConvTranspose2d`` to float rounding (tests/test_kernels.py), and under ``torch.autocast``
``F.linear`` runs in the autocast dtype as the convolution does.
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


def is_eligible(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.ConvTranspose2d`` whose 1x1-input case is a plain matrix product.

    That is: no padding, no output padding, dilation 1, one group, zero padding mode, and no
    ``forward`` of its own set on the instance (which the swap would hide).
    """
    return (
        isinstance(module, nn.ConvTranspose2d)
        and tuple(module.padding) == (0, 0)
        and tuple(module.output_padding) == (0, 0)
        and tuple(module.dilation) == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and "forward" not in vars(module)
    )


def dense_forward(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for an eligible layer (:func:`is_eligible`) and ``x`` of shape ``(B, C_in, 1, 1)``.

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
    bias = None if module.bias is None else module.bias.repeat_interleave(kh * kw)  # (C_out * kH * kW,)
    with record_function(DENSE_LABEL):
        # (B, C_in) @ (C_in, C_out * kH * kW) -> (B, C_out, kH, kW)
        y = F.linear(x.flatten(1), module.weight.flatten(1).t(), bias).view(-1, c_out, kh, kw)
    if module.weight.is_contiguous(memory_format=torch.channels_last):
        return y.contiguous(memory_format=torch.channels_last)
    return y


def _forward(module: nn.ConvTranspose2d, original: Any) -> Any:
    """A ``forward`` for ``module``: :func:`dense_forward` on 1x1 input, ``original`` otherwise."""

    def forward(x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is None and x.dim() == 4 and x.shape[2:] == (1, 1):
            return dense_forward(module, x)
        return original(x, output_size)

    return forward


@contextlib.contextmanager
def dense_transposed_convolutions(model: nn.Module) -> Iterator[list[nn.ConvTranspose2d]]:
    """Within the block, ``model``'s eligible ``ConvTranspose2d`` layers run 1x1 input as a matrix product.

    Yields the layers swapped; on leaving, each gets its own ``forward`` back (also on an error).
    Only the layers' ``forward`` attribute changes: hooks, parameters and the state dict do not.
    """
    layers = [module for module in model.modules() if is_eligible(module)]
    for layer in layers:
        layer.forward = _forward(layer, layer.forward)
    try:
        yield layers
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)
