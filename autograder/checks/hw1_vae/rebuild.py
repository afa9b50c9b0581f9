"""What every homework 1 judge shares: the weights it draws and the student's layers, rebuilt.

The judge never runs the student's ``MyVAE``: it rebuilds the layers from the record's description
and weights (:mod:`autograder.checks.layers`) and runs the template's own ``decode`` on them.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from autograder.checks import (
    Record,
    expect,
    layers,
    student_code,
)
from course_lib import rules
from course_lib.template import MyVAETemplate

#: ``hidden_dims`` of ``MyVAE`` when none are given (the CMPE 260 template).
DEFAULT_HIDDEN_DIMS = [32, 64, 128, 256, 512]
SMALL_DIMS = [8, 16, 32, 64, 128]
TINY_DIMS = [4, 8, 16, 32, 64]
OTHER_ENVS = ("Pendulum-v1", "Acrobot-v1", "MountainCar-v0")
#: Added to the bias of ``z_var`` where ``forward``'s sampling is checked, so that sigma is far from 1.
LOGVAR_SHIFT = -1.5
#: Agreement asked of an output the kernel recorded and the judge recomputes from the same layers.
SAME = {"rtol": 1e-4, "atol": 1e-5}
#: The parts of ``MyVAE`` (attributes) that hold its layers.
PARTS = rules.MYVAE_PARTS


def rng_of(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def torch_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def sub_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def build_model(model_cls: type, args: tuple) -> nn.Module:
    with student_code(f"MyVAE{args}"):
        model = model_cls(*args)
    expect(isinstance(model, nn.Module), f"MyVAE{args} should be an nn.Module")
    return model


def tensor_out(value: Any, what: str) -> torch.Tensor:
    expect(torch.is_tensor(value), f"{what} should be a tensor, got {type(value).__name__}")
    return value.detach().float()


def hidden_dims_of(args: tuple) -> list[int]:
    return list(args[2]) if len(args) > 2 and args[2] is not None else list(DEFAULT_HIDDEN_DIMS)


def encoder_parameter_count(in_channels: int, latent_dim: int, hidden_dims: list[int]) -> int:
    """Parameters of the encoder blocks and the three z layers of the CMPE 260 ``MyVAE``.

    Each block is ``Conv2d(c_in, h, 3)`` (``9 c_in h + h``) and ``BatchNorm2d(h)`` (``2 h``); the
    encoder ends at 2x2, so each z layer is ``Linear(4 h_last, latent_dim)``.
    """
    count, c_in = 0, in_channels
    for h in hidden_dims:
        count += 9 * c_in * h + h + 2 * h
        c_in = h
    return count + 3 * (4 * hidden_dims[-1] * latent_dim + latent_dim)


# ---------------------------------------------------------------- weights the judge draws
def encoder_weights(in_channels: int, dims: list[int], seed: int) -> list[dict[str, torch.Tensor]]:
    """Per encoder block, weights for its ``Conv2d`` and ``BatchNorm2d`` (running statistics too).

    Drawn like PyTorch's default initialisation (uniform in +-1/sqrt(fan_in)) for the convolution,
    and around the identity for the batch norm, so that activations keep their scale.
    """
    g = torch_generator(seed)
    blocks, c_in = [], in_channels
    for h in dims:
        bound = 1.0 / math.sqrt(9 * c_in)
        blocks.append(
            {
                "conv.weight": (torch.rand(h, c_in, 3, 3, generator=g) * 2 - 1) * bound,
                "conv.bias": (torch.rand(h, generator=g) * 2 - 1) * bound,
                "bn.weight": 0.5 + torch.rand(h, generator=g),
                "bn.bias": 0.2 * torch.randn(h, generator=g),
                "bn.running_mean": 0.1 * torch.randn(h, generator=g),
                "bn.running_var": 0.5 + torch.rand(h, generator=g),
            }
        )
        c_in = h
    return blocks


def latent_weights(features: int, latent_dim: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``(weight, bias)`` for ``z_simple``, ``z_mu`` and ``z_var`` (``Linear(features, latent_dim)``)."""
    g, bound = torch_generator(seed), 1.0 / math.sqrt(features)
    return {
        name: (
            (torch.rand(latent_dim, features, generator=g) * 2 - 1) * bound,
            (torch.rand(latent_dim, generator=g) * 2 - 1) * bound,
        )
        for name in ("z_simple", "z_mu", "z_var")
    }


def _first(module: nn.Module, kind: type) -> nn.Module | None:
    return next((m for m in module.modules() if isinstance(m, kind)), None)


@torch.no_grad()
def load_encoder(model: nn.Module, weights: list[dict[str, torch.Tensor]]) -> bool:
    """Copy ``weights`` into the first ``Conv2d`` and ``BatchNorm2d`` of each block of ``model.encoder``.

    Returns:
        False, and changes nothing, if the encoder's blocks do not have those layers with those shapes.
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module) or len(list(encoder.children())) != len(weights):
        return False
    pairs = []
    for block, w in zip(encoder.children(), weights, strict=True):
        conv, bn = _first(block, nn.Conv2d), _first(block, nn.BatchNorm2d)
        if conv is None or bn is None or conv.bias is None or conv.weight.shape != w["conv.weight"].shape:
            return False
        if bn.running_mean is None or bn.weight is None or bn.weight.shape != w["bn.weight"].shape:
            return False
        pairs.append((conv, bn, w))
    for conv, bn, w in pairs:
        conv.weight.copy_(w["conv.weight"])
        conv.bias.copy_(w["conv.bias"])
        bn.weight.copy_(w["bn.weight"])
        bn.bias.copy_(w["bn.bias"])
        bn.running_mean.copy_(w["bn.running_mean"])
        bn.running_var.copy_(w["bn.running_var"])
    return True


@torch.no_grad()
def load_latent(model: nn.Module, weights: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy ``weights`` into ``model.z_simple``, ``z_mu`` and ``z_var``.

    Raises:
        CheckFailed: if a layer is missing or is not a ``Linear`` of the weights' shape.
    """
    for name, (weight, bias) in weights.items():
        layer = getattr(model, name, None)
        expect(
            isinstance(layer, nn.Linear) and layer.weight.shape == weight.shape and layer.bias is not None,
            f"MyVAE.{name} should be an nn.Linear({weight.shape[1]}, {weight.shape[0]}) (activity 1)",
        )
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)


# ---------------------------------------------------------------- the student's layers, rebuilt by the judge
def model_values(prefix: str, model: nn.Module, state: bool = True) -> dict[str, Any]:
    """What a probe records of a ``MyVAE``: the description of its layers and, with ``state``, all
    their weights and buffers (kernel side; see :mod:`autograder.checks.layers`)."""
    values: dict[str, Any] = {prefix: json.dumps(layers.describe(model))}
    if state:
        values |= layers.state_values(model, prefix)
    return values


def rebuilt_model(record: Record, prefix: str, state: bool = True) -> nn.Module:
    """The student's ``MyVAE`` as :func:`model_values` recorded it, rebuilt (judge side), in eval mode.

    Raises:
        RecordError: if the description or the weights are malformed or do not fit each other.
    """
    weights = None
    if state:
        start = f"{prefix}."
        weights = {name[len(start) :]: record.tensor(name) for name in record.values if name.startswith(start)}
    return layers.rebuild(record.json(prefix), weights, where="MyVAE")


def as_template(model: nn.Module) -> MyVAETemplate:
    """A ``MyVAETemplate`` holding the layers of a rebuilt ``MyVAE``: the template's own ``decode``
    and autoencoder ``forward`` (the code students are given, not write) then run on them."""
    template = MyVAETemplate()
    for name, child in model.named_children():
        template.add_module(name, child)
    decoder_input = getattr(template, "decoder_input", None)
    if isinstance(decoder_input, nn.Linear):
        template.latent_dim = decoder_input.in_features
        template.hidden_dims = [decoder_input.out_features // 4]  # decode reshapes to (B, h[-1], 2, 2)
    return template.train(model.training)


def expect_rebuildable(model: nn.Module, parts: tuple[str, ...], call: str) -> None:
    """Every one of ``parts`` of a rebuilt ``MyVAE`` can be run by the judge (made of the
    ``torch.nn`` layers of :data:`~autograder.checks.layers.ALLOWED`, in ``nn.Sequential`` containers).

    Raises:
        CheckFailed: naming the part the grader cannot rebuild.
    """
    for name in parts:
        part = getattr(model, name, None)
        expect(part is not None, f"{call} has no {name}")
        expect(layers.runnable(part), rules.message("torch_nn", what=call, part=name, kinds=_kinds(part)))


def expect_template_decoder(model: nn.Module, args: tuple) -> None:
    """``decoder_input`` and ``decoder`` of a rebuilt ``MyVAE(*args)`` are what the template's
    ``build_decoder()`` builds (provided code: every honest answer has them).

    Raises:
        CheckFailed: saying to call ``self.build_decoder()``.
    """
    expected = MyVAETemplate()
    expected.latent_dim, expected.hidden_dims = args[1], hidden_dims_of(args)
    expected.build_decoder()
    for name in ("decoder_input", "decoder"):
        part = getattr(model, name, None)
        expect(
            part is not None and layers.describe(part) == layers.describe(getattr(expected, name)),
            f"MyVAE{args}.{name} is not the one build_decoder() builds: call self.build_decoder() at the end of "
            "__init__, after setting latent_dim and hidden_dims",
        )


def _kinds(module: nn.Module) -> str:
    return ", ".join(sorted({m.kind for m in module.modules() if isinstance(m, layers.Opaque)} or {"ModuleList"}))


def kind_of(module: nn.Module) -> str:
    return module.kind if isinstance(module, layers.Opaque) else type(module).__name__
