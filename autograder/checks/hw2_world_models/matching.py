"""The ConvVAE's layers matched by type and parameter shapes, and the weights both sides load.

A student's ``ConvVAE`` and the reference get the same weights, drawn from the grading run's seed,
so any naming and nesting of the layers passes; the judge then compares every layer's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from autograder.checks import (
    expect,
    student_code,
)

N_PARAMS = 4_348_547
#: Parameters per latent dimension: fc_mu and fc_logvar (1024 weights + 1 bias each), fc_decode (1024 + 0).
PARAMS_PER_LATENT = 2 * 1025 + 1024
#: (in_channels, out_channels, kernel, stride, output side) of the encoder's convolutions.
ENCODER_CONVS = [(3, 32, 4, 2, 31), (32, 64, 4, 2, 14), (64, 128, 4, 2, 6), (128, 256, 4, 2, 2)]
#: ... and of the decoder's transposed convolutions.
DECODER_DECONVS = [(1024, 128, 5, 2, 5), (128, 64, 5, 2, 13), (64, 32, 6, 2, 30), (32, 3, 6, 2, 64)]
LOGVAR_SHIFT = -1.5  # added to the log-variance layer's bias, so that sigma is far from 1
#: Images of forward's x_hat that w1_sampling records (the judge decodes the same z).
SAMPLING_RECORDED = 4


def rng_of(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def sub_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def build_model(model_cls: type, **kwargs: Any) -> nn.Module:
    call = f"ConvVAE({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    with student_code(call):
        model = model_cls(**kwargs)
    expect(isinstance(model, nn.Module), f"{call} should be an nn.Module")
    return model


def tensor_out(value: Any, what: str) -> torch.Tensor:
    expect(torch.is_tensor(value), f"{what} should be a tensor, got {type(value).__name__}")
    return value.detach().float()


def as_pair(out: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    expect(
        isinstance(out, (tuple, list)) and len(out) == 2 and all(torch.is_tensor(t) for t in out),
        f"{what} should return two tensors (mu, logvar), got {type(out).__name__}",
    )
    return out[0], out[1]


def as_triple(out: Any, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    expect(
        isinstance(out, (tuple, list)) and len(out) == 3 and all(torch.is_tensor(t) for t in out),
        f"{what} should return three tensors (x_hat, mu, logvar), got {type(out).__name__}",
    )
    return out[0], out[1], out[2]


# ---------------------------------------------------------------- layers and the weights both sides load
def parameterised_layers(model: nn.Module) -> list[nn.Module]:
    """Modules that hold parameters themselves, in registration order."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def signature(module: nn.Module) -> tuple:
    """``(type name, ((parameter name, shape), ...))`` of a layer: what layers are matched by."""
    shapes = tuple((name, tuple(p.shape)) for name, p in module.named_parameters(recurse=False))
    return (type(module).__name__, shapes)


def describe(sig: tuple) -> str:
    """``Conv2d(weight[32, 3, 4, 4], bias[32])``: a readable signature."""
    kind, shapes = sig
    return f"{kind}({', '.join(f'{n}{list(s)}' for n, s in shapes)})"


def linear_signature(in_features: int, out_features: int) -> tuple:
    """The signature (see :func:`signature`) of ``nn.Linear(in_features, out_features)``."""
    return ("Linear", (("weight", (out_features, in_features)), ("bias", (out_features,))))


def expected_signatures(z_size: int) -> list[tuple]:
    """The layer signatures (see :func:`signature`) of the World Models VAE with ``z_size``."""
    sigs = [("Conv2d", (("weight", (o, i, k, k)), ("bias", (o,)))) for i, o, k, _, _ in ENCODER_CONVS]
    sigs += [linear_signature(1024, z_size)] * 2  # mu and logvar
    sigs += [linear_signature(z_size, 1024)]  # the decoder's dense layer
    sigs += [("ConvTranspose2d", (("weight", (i, o, k, k)), ("bias", (o,)))) for i, o, k, _, _ in DECODER_DECONVS]
    return sigs


def layer_weights(z_size: int, seed: int) -> dict[tuple, list[list[torch.Tensor]]]:
    """Weights for the World Models VAE drawn from ``seed``: {signature: one parameter list per layer}.

    Drawn like PyTorch's default initialisation, uniform in +-1/sqrt(fan_in), signature by
    signature in a fixed order, so that the kernel (student's model) and the judge (reference)
    get the same tensors without either one seeing the other's model.
    """
    sigs = expected_signatures(z_size)
    generator = torch.Generator().manual_seed(int(seed))
    out: dict[tuple, list[list[torch.Tensor]]] = {}
    for sig in sorted(set(sigs), key=describe):
        (_, weight_shape), *_ = sig[1]
        bound = 1.0 / float(np.prod(weight_shape[1:])) ** 0.5  # 1 / sqrt(fan_in)
        out[sig] = [
            [(torch.rand(shape, generator=generator) * 2 - 1) * bound for _, shape in sig[1]]
            for _ in range(sigs.count(sig))
        ]
    return out


def layers_differ(model: nn.Module, z_size: int) -> str | None:
    """Which layers of the World Models VAE the model lacks (by type and parameter shapes), or ``None``.

    Extra layers are not this check's business: one that is used changes the outputs the judges
    compare; one that is not only changes the parameter count.
    """
    ours = [describe(signature(m)) for m in parameterised_layers(model)]
    want = [describe(s) for s in expected_signatures(z_size)]
    missing = sorted({s for s in want if want.count(s) > ours.count(s)})
    return f"the layers do not match the World Models VAE: missing {missing}" if missing else None


@torch.no_grad()
def load_weights(model: nn.Module, z_size: int, seed: int) -> None:
    """Give the model's layers the weights of :func:`layer_weights`, in registration order.

    Layers are matched by type and parameter shapes, not by attribute names, so any naming and
    nesting passes. Of the two ``Linear(1024, z_size)`` layers the first registered gets the first
    weights; the judge tries both ways round on the reference. Layers of other shapes keep theirs.

    Raises:
        CheckFailed: if the model lacks a layer of the World Models VAE.
    """
    differ = layers_differ(model, z_size)
    expect(differ is None, differ or "")
    weights = {sig: list(group) for sig, group in layer_weights(z_size, seed).items()}
    for layer in parameterised_layers(model):
        if weights.get(signature(layer)):
            for param, value in zip(layer.parameters(recurse=False), weights[signature(layer)].pop(0), strict=True):
                param.copy_(value)


@torch.no_grad()
def shift_latent_biases(model: nn.Module, z_size: int) -> None:
    """Add LOGVAR_SHIFT to the bias of both ``Linear(1024, z_size)`` layers (mu and logvar).

    Applied alike to the student's model and to the reference, it makes sigma far from 1
    whichever of the two layers computes the log-variance.
    """
    for layer in parameterised_layers(model):
        if signature(layer) == linear_signature(1024, z_size):
            layer.bias += LOGVAR_SHIFT


@contextmanager
def traced(model: nn.Module) -> Iterator[list[tuple[nn.Module, Any, Any]]]:
    """Record ``(module, input, output)`` of every parameterised layer called inside the block."""
    calls: list[tuple[nn.Module, Any, Any]] = []

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        first = inputs[0] if inputs else None
        calls.append((module, first.detach() if torch.is_tensor(first) else first, output))

    handles = [m.register_forward_hook(hook) for m in parameterised_layers(model)]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def layer_spec(module: nn.Module) -> list:
    """``[kind, in, out, kernel, stride, padding]`` of a (transposed) convolution, ``[kind, in, out]`` of a
    dense layer."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        return [
            type(module).__name__,
            module.in_channels,
            module.out_channels,
            list(module.kernel_size),
            list(module.stride),
            list(module.padding),
        ]
    if isinstance(module, nn.Linear):
        return ["Linear", module.in_features, module.out_features]
    return [type(module).__name__]


def shape_of(value: Any) -> list[int] | None:
    return list(value.shape) if torch.is_tensor(value) else None
