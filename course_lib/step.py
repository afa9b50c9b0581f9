"""The parts of one training step that ``fit`` and the precision trial share.

The model's input from ``uint8`` frames, the loss (under autocast when a precision path asks for it),
Adam, and the faster kernels swapped in on the CPU. Which device gets which speed-up is declared
here once; ``benchmarks/bench_training.py`` measures each as a lever of a plain loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import torch
from torch import nn

from course_lib import kernels
from course_lib.frames import to_tensor
from course_lib.losses import vae_loss

LossFn = Callable[[nn.Module, torch.Tensor], dict[str, torch.Tensor]]

#: Where ``fit`` also makes the model's weights channels-last on a channels-last path, so that
#: oneDNN's (or cuDNN's) NHWC kernels run without reordering (lever ``channels_last_model_and_input``).
CHANNELS_LAST_DEVICES = frozenset({"cpu", "cuda"})
#: Where Adam runs PyTorch's fused kernel: one pass over each parameter instead of a dozen
#: elementwise operations (lever ``fused_adam``).
FUSED_ADAM_DEVICES = frozenset({"cpu", "cuda"})
#: Where transposed convolutions of 1x1 maps run as matrix products and those with few output
#: channels as phase convolutions (:func:`course_lib.kernels.fast_transposed_convolutions`; levers
#: ``dense_first_transposed_convolution`` and ``phase_last_transposed_convolution``). GPUs are
#: left to cuDNN: not measured.
FAST_TRANSPOSED_DEVICES = frozenset({"cpu"})


class StepStage(StrEnum):
    """The stages of one ``fit`` step, as ``torch.profiler.record_function`` labels.

    ``benchmarks/bench_training.py --profile`` splits a profiled epoch by them.
    """

    BATCH = "fit.batch"  # reading the uint8 frames and converting them to float
    FORWARD = "fit.forward"  # forward pass and loss, the terms read back as floats
    BACKWARD = "fit.backward"  # zeroing the gradients and the backward pass
    OPTIMIZER = "fit.optimizer"  # Adam's step
    PROGRESS = "fit.progress"  # the history, the progress bar


def check_frames(frames: Any, name: str) -> None:
    """Raise ValueError unless ``frames`` are non-empty ``uint8 (N, 64, 64, 3)`` frames (``name`` in the message)."""
    shape = getattr(frames, "shape", None)
    dtype = getattr(frames, "dtype", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 frames of shape (N, 64, 64, 3), got {type(frames).__name__} "
            f"with shape {shape} and dtype {dtype}"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty")


def unpack(output: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_hat, mu, logvar)`` from a model output ``(x_hat, mu, logvar)`` or ``[x_hat, x, mu, logvar]``.

    Raises:
        TypeError: for any other output.
    """
    if isinstance(output, (tuple, list)):
        if len(output) == 3:
            return output[0], output[1], output[2]
        if len(output) == 4:
            return output[0], output[2], output[3]
    raise TypeError(
        "expected the model to return (x_hat, mu, logvar) or [x_hat, x, mu, logvar], got "
        f"{type(output).__name__} of length {len(output) if hasattr(output, '__len__') else '?'}"
    )


def make_vae_loss(beta: float = 1.0, kl_tolerance: float = 0.0) -> LossFn:
    """A ``loss_fn(model, x) -> dict`` computing :func:`course_lib.losses.vae_loss`."""

    def loss_fn(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x_hat, mu, logvar = unpack(model(x))
        return vae_loss(x, x_hat, mu, logvar, beta=beta, kl_tolerance=kl_tolerance)

    return loss_fn


def _autocast_vae_loss(beta: float, kl_tolerance: float, device_type: str, dtype: torch.dtype) -> LossFn:
    """:func:`make_vae_loss` with the model's forward pass under autocast and the loss in float32."""

    def loss_fn(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type, dtype=dtype):
            x_hat, mu, logvar = unpack(model(x))
        return vae_loss(x, x_hat.float(), mu.float(), logvar.float(), beta=beta, kl_tolerance=kl_tolerance)

    return loss_fn


def _autocast_loss(loss_fn: LossFn, device_type: str, dtype: torch.dtype) -> LossFn:
    """A user's ``loss_fn`` run entirely under autocast, its terms returned as float32."""

    def wrapped(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type, dtype=dtype):
            terms = loss_fn(model, x)
        return {key: value.float() for key, value in terms.items()}

    return wrapped


def step_loss(
    autocast: torch.dtype | None, loss_fn: LossFn | None, beta: float, kl_tolerance: float, device_type: str
) -> LossFn:
    """The training loss of one step: ``loss_fn`` (default: the VAE loss), under ``autocast`` unless it is None."""
    if autocast is None:
        return loss_fn or make_vae_loss(beta, kl_tolerance)
    if loss_fn is None:
        return _autocast_vae_loss(beta, kl_tolerance, device_type, autocast)
    return _autocast_loss(loss_fn, device_type, autocast)


def model_input(frames: np.ndarray, channels_last: bool, device: torch.device) -> torch.Tensor:
    """``uint8 (B, 64, 64, 3)`` frames as the model's ``float32 (B, 3, 64, 64)`` input in [0, 1] on ``device``.

    :func:`course_lib.frames.to_tensor` returns a permuted view converted once, so the input is
    channels-last already; ``channels_last=False`` copies it to contiguous NCHW.
    """
    x = to_tensor(frames).to(device)  # (B, 3, 64, 64) with (B, 64, 64, 3) strides
    if channels_last:
        return x.contiguous(memory_format=torch.channels_last)  # no copy: it already is
    return x.contiguous()


def channels_last_weights(model: nn.Module, device: torch.device) -> None:
    """Make ``model``'s 4-d weights channels-last in place where :data:`CHANNELS_LAST_DEVICES` says it pays.

    In place, so an optimiser made before keeps the same parameters.
    """
    if device.type in CHANNELS_LAST_DEVICES:
        model.to(memory_format=torch.channels_last)


def fast_kernels(model: nn.Module, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The kernels swapped into ``model`` on ``device`` while it trains (see :data:`FAST_TRANSPOSED_DEVICES`)."""
    if device.type in FAST_TRANSPOSED_DEVICES:
        return kernels.fast_transposed_convolutions(model)
    return contextlib.nullcontext()


def adam(params: Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """``torch.optim.Adam(params, lr=lr)``, fused where the device has the kernel (:data:`FUSED_ADAM_DEVICES`).

    The fused kernel computes Adam's update (Kingma & Ba 2015) in one pass per parameter; its
    results equal the default implementation's to float32 rounding (tests/test_speed_equivalence.py).
    """
    return torch.optim.Adam(params, lr=lr, fused=True if device.type in FUSED_ADAM_DEVICES else None)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work (timings of asynchronous CUDA kernels would be too short)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
