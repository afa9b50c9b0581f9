"""Hidden checks of homework 2 (``hw2_world_models``), one per graded test cell, named by its ``grade_id``.

Activities: w1 the World Models ``ConvVAE`` (Ha & Schmidhuber 2018, appendix), w2 its loss
``vae_loss`` with the KL floor, w3 the RNN data set (``encode_rollouts``, ``save_rnn_dataset``).

Each check's probe runs the student's code in the kernel and returns raw outputs; its judge decides
in the grader's process (see :mod:`autograder.checks`) against the reference answers
(``course_lib.solutions``), which never enter the kernel. To compare a ``ConvVAE`` with the
reference, both get the same weights (:func:`layer_weights`, drawn from the grading run's seed),
matched to layers by type and parameter shapes rather than by attribute names or registration
order, so any naming and nesting of the layers passes; the judge then compares every layer's output.
"""

from __future__ import annotations

import io
import itertools
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autograder.checks import (
    Inconsistent,
    Inputs,
    Record,
    check,
    expect,
    expect_consistent,
    layer_inputs,
    layers,
    require_student_code,
    sampling,
    seeded,
    student_code,
)
from course_lib import losses as library_losses
from course_lib.frames import to_tensor
from course_lib.models import SmallVAE

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


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _sub(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _build(model_cls: type, **kwargs: Any) -> nn.Module:
    call = f"ConvVAE({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    with student_code(call):
        model = model_cls(**kwargs)
    expect(isinstance(model, nn.Module), f"{call} should be an nn.Module")
    return model


def _tensor_out(value: Any, what: str) -> torch.Tensor:
    expect(torch.is_tensor(value), f"{what} should be a tensor, got {type(value).__name__}")
    return value.detach().float()


def _pair(out: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    expect(
        isinstance(out, (tuple, list)) and len(out) == 2 and all(torch.is_tensor(t) for t in out),
        f"{what} should return two tensors (mu, logvar), got {type(out).__name__}",
    )
    return out[0], out[1]


def _triple(out: Any, what: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
def _trace(model: nn.Module) -> Iterator[list[tuple[nn.Module, Any, Any]]]:
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


def _layer_spec(module: nn.Module) -> list:
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


def _shape(value: Any) -> list[int] | None:
    return list(value.shape) if torch.is_tensor(value) else None


# ---------------------------------------------------------------- w1: the ConvVAE
def _z_sizes(seed: int) -> tuple[int, int]:
    """The default latent size 32 and one drawn from 8 to 23: never 32, so that a latent size
    hard-coded to the default shows."""
    return 32, int(_rng(seed + 1).integers(8, 24))


def conv_vae_cases(seed: int) -> Inputs:
    """The inputs of ``w1_architecture`` and ``w1_encode_decode``: ``cases``, the z sizes
    (:func:`_z_sizes`) each with a seed of its weights and inputs."""
    rng = _rng(seed)
    return {"cases": [(z, _sub(rng)) for z in _z_sizes(seed)]}


def _architecture_xz(z_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.rand(2, 3, 64, 64, generator=g), torch.randn(2, z_size, generator=g)  # (2, 3, 64, 64), (2, z)


@check("w1_architecture", inputs=conv_vae_cases)
def w1_architecture(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """Encoder: four Conv2d(k4, s2) + ReLU, 64 -> 31 -> 14 -> 6 -> 2, dense mu and logvar from 1024
    features; decoder: dense z -> 1024, reshaped to 1x1, four ConvTranspose2d(k5, 5, 6, 6; s2),
    1 -> 5 -> 13 -> 30 -> 64 pixels; with the grader's weights, every layer computes what the
    paper's does."""
    require_student_code(model_cls, "ConvVAE")
    values: dict[str, Any] = {}
    for z_size, seed in inputs["cases"]:
        model = _build(model_cls, z_size=z_size)
        model.eval()
        differ = layers_differ(model, z_size)
        if differ is None:
            load_weights(model, z_size, seed)
        x, z = _architecture_xz(z_size, seed)
        trace: dict[str, Any] = {"layers": differ}
        for part in ("encode", "decode"):
            with torch.no_grad(), _trace(model) as calls, student_code(f"ConvVAE(z_size={z_size}).{part}"):
                result = model.encode(x) if part == "encode" else model.decode(z)
            trace[part] = [{"spec": _layer_spec(m), "in": _shape(i), "out": _shape(o)} for m, i, o in calls]
            for k, (_, _, output) in enumerate(calls):
                values[f"{part}_{z_size}_{k}"] = _tensor_out(output, f"a layer of {part}")
            if part == "encode":
                mu, logvar = _pair(result, "encode(x)")
                values[f"mu_{z_size}"], values[f"logvar_{z_size}"] = mu.float(), logvar.float()
        values[f"trace_{z_size}"] = json.dumps(trace)
    return values


def _expect_layers(trace: dict, z_size: int) -> None:
    """The layers applied by encode and decode, their settings and their output shapes."""
    encode, decode = trace["encode"], trace["decode"]
    convs = [c for c in encode if c["spec"][0] == "Conv2d"]
    expect(
        len(convs) == 4,
        f"encode should apply four Conv2d layers, it applied {len(convs)} ({[c['spec'][0] for c in encode]})",
    )
    for k, (conv, (c_in, c_out, kernel, stride, side)) in enumerate(zip(convs, ENCODER_CONVS, strict=True)):
        want = ["Conv2d", c_in, c_out, [kernel, kernel], [stride, stride], [0, 0]]
        expect(
            conv["spec"] == want,
            f"encoder convolution {k + 1}: (in, out, kernel, stride, padding) = {tuple(conv['spec'][1:])}, "
            f"expected {tuple(want[1:])}",
        )
        expect(
            conv["out"] == [2, c_out, side, side],
            f"encoder convolution {k + 1} outputs {conv['out']}, expected [2, {c_out}, {side}, {side}]",
        )
    linears = [c for c in encode if c["spec"][0] == "Linear"]
    expect(
        len(linears) == 2 and all(c["spec"] == ["Linear", 1024, z_size] and c["in"] == [2, 1024] for c in linears),
        f"encode should end with two Linear(1024, {z_size}) layers (mu and logvar) applied to the flattened "
        f"(B, 1024) features, got {[c['spec'][1:] for c in linears]}",
    )
    linears = [c for c in decode if c["spec"][0] == "Linear"]
    expect(
        len(linears) == 1 and linears[0]["spec"] == ["Linear", z_size, 1024],
        f"decode should start with one Linear({z_size}, 1024) layer",
    )
    deconvs = [c for c in decode if c["spec"][0] == "ConvTranspose2d"]
    expect(len(deconvs) == 4, f"decode should apply four ConvTranspose2d layers, it applied {len(deconvs)}")
    expect(
        deconvs[0]["in"] == [2, 1024, 1, 1],
        f"the first transposed convolution gets {deconvs[0]['in']}, expected the dense output reshaped to "
        "(B, 1024, 1, 1)",
    )
    for k, (deconv, (c_in, c_out, kernel, stride, side)) in enumerate(zip(deconvs, DECODER_DECONVS, strict=True)):
        want = ["ConvTranspose2d", c_in, c_out, [kernel, kernel], [stride, stride], [0, 0]]
        expect(
            deconv["spec"] == want,
            f"decoder transposed convolution {k + 1}: (in, out, kernel, stride, padding) = "
            f"{tuple(deconv['spec'][1:])}, expected {tuple(want[1:])}",
        )
        expect(
            deconv["out"] == [2, c_out, side, side],
            f"decoder transposed convolution {k + 1} outputs {deconv['out']}, expected [2, {c_out}, {side}, {side}]",
        )
    applied = {layer["spec"][0] for layer in [*encode, *decode]}
    extra = sorted(applied - {"Conv2d", "ConvTranspose2d", "Linear"})
    expect(not extra, f"the World Models VAE has no {extra} layers")
    expect(trace["layers"] is None, trace["layers"] or "")


def _given(part: str, kind: str, n: int) -> str:
    """What the ``n``-th layer of ``kind`` in ``part`` should be given: the hint of a mismatch there."""
    if part == "encode":
        if kind == "Linear":
            return "the dense layers should get the flattened ReLU of the last convolution's output, (B, 1024)"
        if n == 1:
            return "the first convolution should get x itself"
        return f"encoder convolution {n} should get the ReLU of convolution {n - 1}'s output"
    if kind == "Linear":
        return "decode's dense layer should get z itself"
    if n == 1:
        return (
            "the first transposed convolution should get the dense layer's output reshaped to (B, 1024, 1, 1), "
            "with no activation"
        )
    return f"transposed convolution {n} should get the ReLU of transposed convolution {n - 1}'s output"


@w1_architecture.judge
def _w1_architecture(inputs: Inputs, record: Record) -> None:
    for z_size, seed in inputs["cases"]:
        trace = record.json(f"trace_{z_size}")
        _expect_layers(trace, z_size)
        x, z = _architecture_xz(z_size, seed)
        mu, logvar = record.tensor(f"mu_{z_size}"), record.tensor(f"logvar_{z_size}")
        expect(
            tuple(mu.shape) == tuple(logvar.shape) == (2, z_size),
            f"encode returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)}, expected (B, {z_size}) each",
        )
        ref, _, _ = _with_matching_weights(z_size, seed, x, mu, logvar)
        for part in ("encode", "decode"):
            with torch.no_grad(), _trace(ref) as calls:
                ref.encode(x) if part == "encode" else ref.decode(z)
            theirs: dict[str, list[torch.Tensor]] = {}
            for module, _, output in calls:
                theirs.setdefault(type(module).__name__, []).append(output)
            seen: dict[str, int] = {}
            for k, layer in enumerate(trace[part]):
                kind = layer["spec"][0]
                n = seen[kind] = seen.get(kind, 0) + 1
                ours = record.tensor(f"{part}_{z_size}_{k}")
                # mu's and logvar's layers may be applied in either order
                candidates = theirs[kind] if (part, kind) == ("encode", "Linear") else [theirs[kind][n - 1]]
                expect(
                    any(c.shape == ours.shape and torch.allclose(ours, c, rtol=1e-4, atol=1e-5) for c in candidates),
                    f"with the grader's weights, {part} computes something else than the paper's VAE: "
                    + _given(part, kind, n),
                )


def parameter_inputs(seed: int) -> Inputs:
    """The z sizes whose parameters are counted (:func:`_z_sizes`), each with a seed of the weights
    and inputs of the layer-by-layer trace that ties the counted layers to the model."""
    rng = _rng(seed)
    return {"z_sizes": list(_z_sizes(seed)), "seeds": [_sub(rng) for _ in range(2)]}


def _count_xz(z_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 4)
    return torch.rand(1, 3, 64, 64, generator=g), torch.randn(1, z_size, generator=g)  # (1, 3, 64, 64), (1, z)


@check("w1_parameter_count", inputs=parameter_inputs)
def w1_parameter_count(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """4,348,547 parameters with z_size=32, and 3,074 more or fewer per latent dimension."""
    require_student_code(model_cls, "ConvVAE")
    values: dict[str, Any] = {}
    for k, (z_size, seed) in enumerate(zip(inputs["z_sizes"], inputs["seeds"], strict=True)):
        model = _build(model_cls, z_size=z_size).eval()
        values[f"model_{k}"] = json.dumps(layers.describe(model))
        if layers_differ(model, z_size) is not None:
            continue  # the judge names the missing layers from the description
        load_weights(model, z_size, seed)
        names = {id(m): name for name, m in model.named_modules()}
        x, z = _count_xz(z_size, seed)
        for part in ("encode", "decode"):
            with torch.no_grad(), _trace(model) as calls, student_code(f"ConvVAE(z_size={z_size}).{part}"):
                model.encode(x) if part == "encode" else model.decode(z)
            values[f"{part}_{k}"] = json.dumps([names[id(m)] for m, _, _ in calls])
            for j, (_, given, output) in enumerate(calls):
                values[f"{part}_{k}_{j}_in"] = _tensor_out(given, f"the input of a layer of {part}")
                values[f"{part}_{k}_{j}_out"] = _tensor_out(output, f"a layer of {part}")
    return values


@w1_parameter_count.judge
def _w1_parameter_count(inputs: Inputs, record: Record) -> None:
    """Rebuilds the model's layers from their description and counts their parameters itself; loads
    its own weights into them and recomputes every layer call the record traced during ``encode(x)``
    and ``decode(z)`` (each recorded output must be the rebuilt layer applied to the recorded input,
    the first layers must get ``x`` and ``z``), so the counted layers are the ones the model runs.
    A layer the model never calls shows in the count but not in the trace; one left out of the
    description cannot be seen from data (docs/grading.md)."""
    counts = {}
    for k, (z_size, seed) in enumerate(zip(inputs["z_sizes"], inputs["seeds"], strict=True)):
        model = layers.rebuild(record.json(f"model_{k}"), where=f"ConvVAE(z_size={z_size})")
        counts[z_size] = layers.parameter_count(model)
        differ = layers_differ(model, z_size)
        expect(differ is None, f"ConvVAE(z_size={z_size}): {differ}")
        load_weights(model, z_size, seed)
        modules = dict(model.named_modules())
        x, z = _count_xz(z_size, seed)
        called: list[nn.Module] = []
        for part, first_input in (("encode", x), ("decode", z)):
            for j, name in enumerate(record.json(f"{part}_{k}")):
                layer = modules.get(name) if isinstance(name, str) else None
                expect_consistent(layer is not None and not list(layer.children()), f"{part} traced no layer {name!r}")
                given, output = record.tensor(f"{part}_{k}_{j}_in"), record.tensor(f"{part}_{k}_{j}_out")
                with torch.no_grad():
                    try:
                        want = layer(given)
                    except RuntimeError as err:
                        raise Inconsistent(f"the traced input of {name} does not fit it ({err})") from None
                expect_consistent(
                    want.shape == output.shape and torch.allclose(want, output, rtol=1e-4, atol=1e-5),
                    f"the traced output of {name} is not what that layer computes",
                )
                if j == 0:
                    expect(
                        torch.equal(given, first_input), f"the first layer of {part} should be given its input itself"
                    )
                called.append(layer)
        unused = [describe(signature(m)) for m in parameterised_layers(model) if all(m is not c for c in called)]
        ours = counts[z_size]
        theirs = N_PARAMS + (z_size - 32) * PARAMS_PER_LATENT
        hard_coded = z_size != 32 and ours == counts.get(32) == N_PARAMS
        expect(
            ours == theirs,
            f"ConvVAE(z_size={z_size}) has {ours:,} parameters, expected {theirs:,}"
            + (" (use z_size for the latent layers, not a hard-coded 32)" if hard_coded else "")
            + (f" (never used by encode or decode: {unused})" if unused and ours > theirs else ""),
        )


def _with_matching_weights(
    z_size: int, seed: int, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, shift: bool = False
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The reference with :func:`layer_weights`, and its ``encode(x)`` (grader side).

    Layers of the same signature (``fc_mu`` and ``fc_logvar``) may have got the weights in either
    order in the student's model: the order whose ``encode(x)`` agrees with the student's ``mu``
    and ``logvar`` is kept (the first one if none does, and the comparison then fails).
    ``shift`` applies :func:`shift_latent_biases`, as the probe did.

    Returns:
        ``(reference, mu, logvar)``, ``mu`` and ``logvar`` of shape ``(B, z_size)``.
    """
    from course_lib.solutions.conv_vae import ConvVAE

    ref = ConvVAE(z_size=z_size).eval()
    layers = parameterised_layers(ref)
    expect(layers_differ(ref, z_size) is None, "the reference does not have the expected layers (a grader bug)")
    groups: dict[tuple, list[nn.Module]] = {}
    for layer in layers:
        groups.setdefault(signature(layer), []).append(layer)
    weights = layer_weights(z_size, seed)

    @torch.no_grad()
    def assign(combo: tuple) -> None:
        for (sig, group), order in zip(groups.items(), combo, strict=True):
            for layer, k in zip(group, order, strict=True):
                for param, value in zip(layer.parameters(recurse=False), weights[sig][k], strict=True):
                    param.copy_(value)
        if shift:
            shift_latent_biases(ref, z_size)

    first = None
    for combo in itertools.product(*(itertools.permutations(range(len(g))) for g in groups.values())):
        assign(combo)
        with torch.no_grad():
            ref_mu, ref_logvar = ref.encode(x)  # (B, z_size) each
        same_shape = mu.shape == ref_mu.shape and logvar.shape == ref_logvar.shape
        if same_shape and torch.allclose(mu, ref_mu, atol=1e-5) and torch.allclose(logvar, ref_logvar, atol=1e-5):
            return ref, ref_mu, ref_logvar
        first = first or (combo, ref_mu, ref_logvar)
    combo, ref_mu, ref_logvar = first
    assign(combo)
    return ref, ref_mu, ref_logvar


def _encode_decode_xz(z_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(5, 3, 64, 64)`` in [0, 1] and ``z`` ``(5, z_size)``."""
    g = torch.Generator().manual_seed(seed + 2)
    return torch.rand(5, 3, 64, 64, generator=g), 1.5 * torch.randn(5, z_size, generator=g)


@check("w1_encode_decode", inputs=conv_vae_cases)
def w1_encode_decode(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """``encode`` is deterministic and, with the grader's weights, gives the paper's ``mu`` and
    ``logvar``; ``decode`` gives the paper's images, in [0, 1] (a sigmoid)."""
    require_student_code(model_cls, "ConvVAE")
    values: dict[str, Any] = {}
    for z_size, seed in inputs["cases"]:
        model = _build(model_cls, z_size=z_size)
        model.eval()
        load_weights(model, z_size, seed)
        x, z = _encode_decode_xz(z_size, seed)
        with torch.no_grad(), student_code("ConvVAE.encode"):
            mu, logvar = _pair(model.encode(x), "encode(x)")
            again = _pair(model.encode(x), "encode(x)")
        with torch.no_grad(), student_code("ConvVAE.decode"):
            x_hat = _tensor_out(model.decode(z), "decode(z)")
        values |= {
            f"mu_{z_size}": mu.float(),
            f"logvar_{z_size}": logvar.float(),
            f"x_hat_{z_size}": x_hat,
            f"deterministic_{z_size}": torch.equal(mu, again[0]) and torch.equal(logvar, again[1]),
        }
    return values


@w1_encode_decode.judge
def _w1_encode_decode(inputs: Inputs, record: Record) -> None:
    for z_size, seed in inputs["cases"]:
        x, z = _encode_decode_xz(z_size, seed)
        mu, logvar = record.tensor(f"mu_{z_size}"), record.tensor(f"logvar_{z_size}")
        x_hat = record.tensor(f"x_hat_{z_size}")
        expect(
            record.flag(f"deterministic_{z_size}"),
            "encode(x) should be deterministic: return the mean and log-variance, not a sample",
        )
        expect(
            tuple(mu.shape) == tuple(logvar.shape) == (5, z_size),
            f"encode returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)}, expected (B, {z_size}) each",
        )
        expect(
            tuple(x_hat.shape) == (5, 3, 64, 64), f"decode(z) returned {tuple(x_hat.shape)}, expected (B, 3, 64, 64)"
        )
        expect(float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0, "decode(z) should be in [0, 1] (a sigmoid)")
        ref, ref_mu, ref_logvar = _with_matching_weights(z_size, seed, x, mu, logvar)
        expect(
            torch.allclose(mu, ref_mu, atol=1e-5),
            "with the grader's weights, encode(x)'s mu differs from the paper's (largest difference "
            f"{float((mu - ref_mu).abs().max()):.3g}); check the ReLUs after each convolution, the flatten, and that "
            "mu comes from its own Linear layer",
        )
        expect(
            torch.allclose(logvar, ref_logvar, atol=1e-5),
            "with the grader's weights, encode(x)'s logvar differs from the paper's; logvar is the raw output of its "
            "Linear layer (no activation, no exp)",
        )
        with torch.no_grad():
            ref_x_hat = ref.decode(z)
        expect(
            torch.allclose(x_hat, ref_x_hat, atol=1e-5),
            "with the grader's weights, decode(z) differs from the paper's (largest difference "
            f"{float((x_hat - ref_x_hat).abs().max()):.3g}); check: no activation after the dense layer, reshape to "
            "(B, 1024, 1, 1), ReLU after each transposed convolution but the last, a sigmoid at the end",
        )


def sampling_check_inputs(seed: int) -> Inputs:
    """Samples' means and deviations, the gradient leaves' seed, and the forward pass's weights and batch."""
    rng = _rng(seed)
    return {**sampling.sample_inputs(rng), "seed": _sub(rng), "gradient_seed": _sub(rng), "forward_seed": _sub(rng)}


def _forward_x(seed: int) -> torch.Tensor:
    """The batch ``x`` ``(128, 3, 64, 64)`` in [0, 1] whose ``forward`` is probed."""
    return torch.rand(128, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 3))


@check("w1_sampling", inputs=sampling_check_inputs)
def w1_sampling(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """``reparameterize`` draws ``z ~ N(mu, exp(logvar))`` with gradients to both; ``forward`` returns
    ``(decode(z), mu, logvar)`` with ``z`` sampled that way."""
    require_student_code(model_cls, "ConvVAE")
    model = _build(model_cls, z_size=32)
    mu, logvar = sampling.mu_logvar(inputs)
    with seeded(inputs["seed"]), torch.no_grad(), student_code("reparameterize(mu, logvar)"):
        z1 = _tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
        z2 = _tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
    values: dict[str, Any] = {"z1": z1, "z2": z2}
    mu_g, logvar_g = (t.clone().requires_grad_(True) for t in sampling.gradient_leaves(inputs["gradient_seed"]))
    with seeded(inputs["seed"] + 1), student_code("reparameterize(mu, logvar)"):
        z = model.reparameterize(mu_g, logvar_g)
        expect(torch.is_tensor(z) and z.requires_grad, "reparameterize(mu, logvar) returned a tensor with no gradient")
        z.sum().backward()
    values |= {f"gradient_{k}": v for k, v in sampling.gradient_values(z, mu_g, logvar_g).items()}

    # forward: the decoded z is a sample of N(mu, exp(logvar)), with sigma far from 1
    x = _forward_x(inputs["forward_seed"])
    load_weights(model, 32, inputs["forward_seed"])
    shift_latent_biases(model, 32)
    # the decoder's dense layer, z (B, 32) -> (B, 1024); load_weights has refused a model without it
    dense = next(m for m in parameterised_layers(model) if signature(m) == linear_signature(32, 1024))
    model.train()
    with (
        layer_inputs(dense) as captured,
        seeded(inputs["seed"] + 2),
        torch.no_grad(),
        student_code("ConvVAE.forward"),
    ):
        x_hat, mu_f, logvar_f = _triple(model(x), "forward(x)")
        first = len(captured)  # the decoder inputs of the first call; the second call's follow
        model(x)
    expect(0 < first < len(captured), "forward(x) should decode z with the decoder's dense layer")
    return values | {
        "mu": mu_f.float(),
        "logvar": logvar_f.float(),
        "z": captured[0].float(),
        "z_again": captured[first].float(),
        "x_hat": x_hat[:SAMPLING_RECORDED].float(),
        "x_hat_shape": np.array(x_hat.shape, dtype=np.int64),
    }


class _Prefixed(Record):
    """The values of a record whose names start with ``prefix``, without it."""

    def __init__(self, record: Record, prefix: str):
        super().__init__({k[len(prefix) :]: v for k, v in record.values.items() if k.startswith(prefix)})


@w1_sampling.judge
def _w1_sampling(inputs: Inputs, record: Record) -> None:
    sampling.expect_samples(inputs, record)
    sampling.expect_gradients(inputs["gradient_seed"], _Prefixed(record, "gradient_"), noise_seed=inputs["seed"] + 1)
    x = _forward_x(inputs["forward_seed"])
    mu, logvar, z = record.tensor("mu"), record.tensor("logvar"), record.tensor("z")
    expect(
        tuple(mu.shape) == tuple(logvar.shape) == (128, 32),
        f"forward(x) returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)}, expected (B, 32) each",
    )
    expect(tuple(z.shape) == (128, 32), f"forward decoded a z of shape {tuple(z.shape)}, expected (B, 32)")
    shape = tuple(int(n) for n in record.array("x_hat_shape", "int64"))
    expect(shape == (128, 3, 64, 64), f"forward's x_hat has shape {shape}, expected (B, 3, 64, 64)")
    expect(not torch.allclose(z, mu), "forward should decode a sampled z (reparameterize), not mu")
    expect(
        not torch.equal(z, record.tensor("z_again")),
        "two calls of forward decoded the same z; it should sample z each time",
    )
    ref, ref_mu, ref_logvar = _with_matching_weights(32, inputs["forward_seed"], x, mu, logvar, shift=True)
    expect(
        torch.allclose(mu, ref_mu, atol=1e-5) and torch.allclose(logvar, ref_logvar, atol=1e-5),
        "forward(x) should return encode(x)'s mu and logvar as its second and third outputs",
    )
    eps = (z - ref_mu) / torch.exp(0.5 * ref_logvar)  # (128, 32): N(0, 1) for z = mu + sigma * eps
    # six standard errors of the mean (1 / sqrt(n)) and of the standard deviation (1 / sqrt(2 n))
    n = eps.numel()
    expect(
        abs(float(eps.mean())) < 6 / n**0.5 and abs(float(eps.std()) - 1.0) < 6 / (2 * n) ** 0.5,
        f"in forward, (z - mu) / exp(logvar / 2) has mean {float(eps.mean()):.3f} and std {float(eps.std()):.3f}, "
        "expected 0 and 1: sample z = mu + exp(logvar / 2) * eps",
    )
    drawn, tolerance = sampling.noise_of_calls([z, record.tensor("z_again")], mu, logvar)
    expect(
        sampling.noise_is_drawn(drawn, tolerance, inputs["seed"] + 2, 2 * z.numel()),
        "the z that forward decodes is not mu + exp(logvar / 2) * eps with the random generator's noise: "
        + sampling.DRAW_EPS,
    )
    with torch.no_grad():
        expected = ref.decode(z[:SAMPLING_RECORDED])
    x_hat = record.tensor("x_hat")
    expect(
        x_hat.shape == expected.shape and torch.allclose(x_hat, expected, atol=1e-5),
        "forward's x_hat should be decode(z) of the sampled z, the first output",
    )


# ---------------------------------------------------------------- w2: the loss
def loss_case(seed: int, batch: int = 6, z_size: int = 32) -> tuple[torch.Tensor, ...]:
    """``(x, x_hat, mu, logvar)``: ``(B, 3, 64, 64)`` twice, ``(B, z_size)`` twice.

    Half the batch has a KL below the floor (0.5 * z_size nats), half well above it.
    """
    g = torch.Generator().manual_seed(int(seed))
    x = torch.rand(batch, 3, 64, 64, generator=g)
    x_hat = torch.rand(batch, 3, 64, 64, generator=g)
    scale = torch.tensor([0.1] * (batch // 2) + [2.0] * (batch - batch // 2)).unsqueeze(1)  # (B, 1)
    mu = scale * torch.randn(batch, z_size, generator=g)
    logvar = scale * 0.5 * torch.randn(batch, z_size, generator=g)
    return x, x_hat, mu, logvar


#: Library functions that compute the World Models loss, which w2 asks students to write: they
#: raise while the student's ``vae_loss`` runs (:func:`_library_losses_refused`).
_LIBRARY_LOSSES = (library_losses.vae_loss, library_losses.kl_floor)


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("vae_loss must not call course_lib's loss functions; write the reduction and the floor yourself")


@contextmanager
def _library_losses_refused() -> Iterator[None]:
    """While the block runs, ``course_lib``'s World Models loss functions raise, however they are
    reached (an alias made earlier, ``getattr`` with a built name, ``course_lib.train.make_vae_loss``
    which calls ``vae_loss``): their code is swapped. A kernel-side guard against an honest
    shortcut; the judge cannot tell who computed a correct value."""
    saved = {fn: fn.__code__ for fn in _LIBRARY_LOSSES}
    for fn in saved:
        fn.__code__ = _refuse.__code__
    try:
        yield
    finally:
        for fn, code in saved.items():
            fn.__code__ = code


def _call_loss(vae_loss: Callable, *args: torch.Tensor, **kwargs: float) -> dict[str, torch.Tensor]:
    with student_code("vae_loss"), _library_losses_refused():
        out = vae_loss(*args, **kwargs)
    expect(isinstance(out, dict), f"vae_loss should return a dict, got {type(out).__name__}")
    for key in ("loss", "recon", "kl"):
        expect(key in out, f"vae_loss's dict has no {key!r} (keys: {sorted(out)})")
        expect(
            torch.is_tensor(out[key]) and out[key].ndim == 0,
            f"vae_loss's {key!r} should be a scalar tensor, got "
            f"{type(out[key]).__name__}{tuple(out[key].shape) if torch.is_tensor(out[key]) else ''}",
        )
    return out


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal within 1e-4 (relative and absolute), compared in float64."""
    return bool(torch.allclose(a.detach().double(), b.detach().double(), rtol=1e-4, atol=1e-4))


def recon_inputs(seed: int) -> Inputs:
    """Seeds and batch sizes of the loss cases, and of a batch that is doubled."""
    rng = _rng(seed)
    return {"cases": [(_sub(rng), 6), (_sub(rng), 3)], "doubled": _sub(rng)}


@check("w2_recon", inputs=recon_inputs)
def w2_recon(inputs: Inputs, vae_loss: Callable) -> dict[str, Any]:
    """``recon`` is the squared error summed over channels and pixels, averaged over the batch."""
    require_student_code(vae_loss, "vae_loss")
    values: dict[str, Any] = {}
    for k, (seed, batch) in enumerate(inputs["cases"]):
        values[f"recon_{k}"] = _call_loss(vae_loss, *loss_case(seed, batch))["recon"].detach().double()
    x, x_hat, mu, logvar = loss_case(inputs["doubled"], 4)
    values["single"] = _call_loss(vae_loss, x, x_hat, mu, logvar)["recon"].detach().double()
    values["doubled"] = (
        _call_loss(vae_loss, *(torch.cat([t, t]) for t in (x, x_hat, mu, logvar)))["recon"].detach().double()
    )
    return values


@w2_recon.judge
def _w2_recon(inputs: Inputs, record: Record) -> None:
    from course_lib.solutions import hw2 as reference

    expect(
        close(record.tensor("single"), record.tensor("doubled")),
        "recon changed when the batch was duplicated: average over the batch",
    )
    for k, (seed, batch) in enumerate(inputs["cases"]):
        x, x_hat, mu, logvar = loss_case(seed, batch)
        got = record.tensor(f"recon_{k}")
        want = reference.vae_loss(x, x_hat, mu, logvar)["recon"]
        hint = ""
        if close(got * x[0].numel(), want):
            hint = " (you averaged over the pixels; World Models sums over them)"
        elif close(got, want * batch):
            hint = " (you summed over the batch; average over it)"
        elif close(got, want * 2) or close(got * 2, want):
            hint = " (a factor 2 off: no 1/2 in front of the squared error here)"
        expect(close(got, want), f"recon is {float(got):.4f}, expected {float(want):.4f}{hint}")


#: (z_size, kl_tolerance or None for the default) of the KL cases.
KL_SETTINGS = ((32, None), (32, 0.5), (32, 0.0), (8, 1.0), (16, 2.0))


def kl_inputs(seed: int) -> Inputs:
    """One seed per setting of :data:`KL_SETTINGS`."""
    rng = _rng(seed)
    return {"cases": [(_sub(rng), z_size, tolerance) for z_size, tolerance in KL_SETTINGS]}


def _loss_call(tolerance: float | None) -> str:
    return f"vae_loss(..., {'kl_tolerance=' + str(tolerance) if tolerance is not None else 'default kl_tolerance'})"


@check("w2_kl_floor", inputs=kl_inputs)
def w2_kl_floor(inputs: Inputs, vae_loss: Callable) -> dict[str, Any]:
    """``loss = recon + kl`` with ``kl_tolerance`` defaulting to 0.5, and ``kl`` summed over ``z``,
    floored per sample at ``kl_tolerance * z_size``, averaged over the batch."""
    require_student_code(vae_loss, "vae_loss")
    values: dict[str, Any] = {}
    for k, (seed, z_size, tolerance) in enumerate(inputs["cases"]):
        kwargs = {} if tolerance is None else {"kl_tolerance": tolerance}
        out = _call_loss(vae_loss, *loss_case(seed, 6, z_size), **kwargs)
        for key in ("loss", "recon", "kl"):
            values[f"{key}_{k}"] = out[key].detach().double()
    return values


@w2_kl_floor.judge
def _w2_kl_floor(inputs: Inputs, record: Record) -> None:
    from course_lib.solutions import hw2 as reference

    for k, (seed, z_size, tolerance) in enumerate(inputs["cases"]):
        call = _loss_call(tolerance)
        loss, recon, got = (record.tensor(f"{key}_{k}") for key in ("loss", "recon", "kl"))
        expect(
            close(loss, recon + got),
            f"{call}: loss ({float(loss):.4f}) should be recon + kl ({float(recon + got):.4f})",
        )
        x, x_hat, mu, logvar = loss_case(seed, 6, z_size)
        kwargs = {} if tolerance is None else {"kl_tolerance": tolerance}
        want = reference.vae_loss(x, x_hat, mu, logvar, **kwargs)["kl"]
        t = 0.5 if tolerance is None else tolerance
        per_latent = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (B, z_size)
        per_sample = per_latent.sum(1)  # (B,)
        hint = ""
        if close(got, torch.clamp(per_sample.mean(), min=t * z_size)):
            hint = " (you applied the floor after the batch mean; floor each sample's KL, then average)"
        elif close(got, torch.clamp(per_latent, min=t).sum(1).mean()):
            hint = " (you floored each latent dimension; World Models floors each sample's total KL)"
        elif close(got, per_sample.mean()) and t > 0:
            hint = " (no floor applied)"
        elif close(got, torch.clamp(per_sample, min=t * z_size).mean() / z_size):
            hint = " (sum the KL over the latent dimensions, do not average)"
        expect(close(got, want), f"{call}: kl is {float(got):.4f}, expected {float(want):.4f}{hint}")


def loss_gradient_inputs(seed: int) -> Inputs:
    """The seed of the loss case whose gradients are probed."""
    return {"seed": _sub(_rng(seed))}


@check("w2_gradients", inputs=loss_gradient_inputs)
def w2_gradients(inputs: Inputs, vae_loss: Callable) -> dict[str, Any]:
    """Samples below the floor get no KL gradient, the others the KL's gradient; ``x_hat``'s is
    ``2 (x_hat - x) / B``."""
    require_student_code(vae_loss, "vae_loss")
    x, x_hat, mu, logvar = loss_case(inputs["seed"], 6)
    leaves = [t.clone().requires_grad_(True) for t in (x_hat, mu, logvar)]
    with student_code("backpropagating vae_loss"):
        _call_loss(vae_loss, x, *leaves)["loss"].backward()
    names = ("x_hat", "mu", "logvar")
    for name, leaf in zip(names, leaves, strict=True):
        expect(leaf.grad is not None, f"no gradient reached {name}: compute the loss with torch operations")
    return {name: leaf.grad.float() for name, leaf in zip(names, leaves, strict=True)}


@w2_gradients.judge
def _w2_gradients(inputs: Inputs, record: Record) -> None:
    from course_lib.solutions import hw2 as reference

    x, x_hat, mu, logvar = loss_case(inputs["seed"], 6)
    ref_leaves = [t.clone().requires_grad_(True) for t in (x_hat, mu, logvar)]
    reference.vae_loss(x, *ref_leaves)["loss"].backward()
    for name, theirs in zip(("x_hat", "mu", "logvar"), ref_leaves, strict=True):
        ours = record.tensor(name)
        expect(
            ours.shape == theirs.shape and torch.allclose(ours, theirs.grad, rtol=1e-4, atol=1e-6),
            f"the gradient of the loss with respect to {name} differs from the expected one"
            + (" (samples whose KL is below the floor must get no KL gradient)" if name != "x_hat" else ""),
        )


# ---------------------------------------------------------------- w3: the RNN dataset
class _StandInVAE(SmallVAE):
    """The VAE given to ``encode_rollouts``: ``SmallVAE``, sampling in eval mode too (as World Models'
    ``ConvVAE`` does), so that storing a sampled z instead of mu is seen whatever the mode."""

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _stand_in(seed: int) -> _StandInVAE:
    """Any VAE with ``encode(x) -> (mu, logvar)`` will do, so not the reference (the answer of w1)."""
    with seeded(seed):
        model = _StandInVAE(z_size=32, width=4)
    with torch.no_grad():
        model.fc_logvar.bias += LOGVAR_SHIFT  # sigma far from 1: a sampled z is far from mu
    return model


def _rollouts(seed: int, lengths: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, size=(t, 64, 64, 3), dtype=np.uint8) for t in lengths]
    actions = [rng.uniform(-1, 1, size=(t, 3)).astype(np.float32) for t in lengths]
    return frames, actions


def rollout_inputs(seed: int) -> Inputs:
    """Three rollouts of different lengths: their seed, the stand-in VAE's and the noise's."""
    rng = _rng(seed)
    lengths = [int(n) for n in rng.choice(np.arange(2, 15), size=3, replace=False)]
    return {"lengths": lengths, "rollouts_seed": _sub(rng), "model_seed": _sub(rng), "seed": _sub(rng)}


_SEQUENCE_KEYS = ("mu", "logvar", "actions")


@check("w3_encode", inputs=rollout_inputs)
def w3_encode(inputs: Inputs, encode_rollouts: Callable) -> dict[str, Any]:
    """One sequence per rollout (lengths differ) with ``mu``, ``logvar`` = ``encode(frames)`` and the
    actions taken in those frames, as float32 numpy arrays."""
    require_student_code(encode_rollouts, "encode_rollouts")
    frames, actions = _rollouts(inputs["rollouts_seed"], inputs["lengths"])
    model = _stand_in(inputs["model_seed"])
    model.train()
    with seeded(inputs["seed"]), student_code("encode_rollouts(model, frames, actions)"):
        sequences = encode_rollouts(model, frames, actions)
    expect(
        isinstance(sequences, (list, tuple)),
        f"encode_rollouts should return a list with one dict per rollout, got {type(sequences).__name__}",
    )
    values: dict[str, Any] = {"n": len(sequences)}
    for i, seq in enumerate(sequences):
        expect(
            isinstance(seq, dict) and set(_SEQUENCE_KEYS) <= set(seq),
            f"rollout {i}: expected a dict with keys 'mu', 'logvar' and 'actions', got "
            f"{sorted(seq) if isinstance(seq, dict) else type(seq).__name__}",
        )
        for key in _SEQUENCE_KEYS:
            value = seq[key]
            is_float32 = isinstance(value, np.ndarray) and value.dtype == np.float32
            values[f"{key}_{i}_type"] = f"{type(value).__name__} {getattr(value, 'dtype', '')}".strip()
            values[f"{key}_{i}"] = value if is_float32 else np.zeros(0, np.float32)
    return values


@w3_encode.judge
def _w3_encode(inputs: Inputs, record: Record) -> None:
    lengths = inputs["lengths"]
    n = int(record.number("n"))
    expect(n == len(lengths), f"encode_rollouts should return one sequence per rollout ({len(lengths)}), got {n}")
    frames, actions = _rollouts(inputs["rollouts_seed"], lengths)
    model = _stand_in(inputs["model_seed"]).eval()
    for i, t in enumerate(lengths):
        for key in _SEQUENCE_KEYS:
            kind = record.text(f"{key}_{i}_type")
            expect(
                kind == "ndarray float32",
                f"rollout {i}: {key!r} should be a float32 numpy array, got {kind} (use .detach().cpu().numpy())",
            )
        arrays = {key: record.array(f"{key}_{i}", "float32") for key in _SEQUENCE_KEYS}
        for key, width in (("mu", 32), ("logvar", 32), ("actions", 3)):
            expect(
                arrays[key].shape == (t, width),
                f"rollout {i} ({t} frames): {key!r} has shape {arrays[key].shape}, expected ({t}, {width})",
            )
        with torch.no_grad():
            ref_mu, ref_logvar = (v.numpy() for v in model.encode(to_tensor(frames[i])))
        sampled = np.abs(arrays["mu"] - ref_mu).mean() > 0.1
        expect(
            np.allclose(arrays["mu"], ref_mu, atol=1e-4),
            f"rollout {i}: 'mu' is not model.encode(frames)'s mean"
            + (
                " (it looks like a sampled z = mu + sigma * eps: store the deterministic mean, as the MDN-RNN models "
                "the posterior, not one noisy draw)"
                if sampled
                else ""
            ),
        )
        expect(
            np.allclose(arrays["logvar"], ref_logvar, atol=1e-4),
            f"rollout {i}: 'logvar' is not model.encode(frames)'s log-variance",
        )
        shifted = t > 1 and np.allclose(arrays["actions"][:-1], actions[i][1:])
        expect(
            np.allclose(arrays["actions"], actions[i]),
            f"rollout {i}: 'actions' should be the actions of that rollout, aligned with its frames "
            "(actions[t] was taken in frame t)" + (" - yours are shifted by one step" if shifted else ""),
        )


def _sequences(seed: int, lengths: list[int]) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "mu": rng.standard_normal((t, 32)).astype(np.float32),
            "logvar": rng.standard_normal((t, 32)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
        }
        for t in lengths
    ]


def files_inputs(seed: int) -> Inputs:
    """Three sequences' lengths and seed."""
    rng = _rng(seed)
    return {"lengths": [int(n) for n in rng.integers(2, 10, size=3)], "seed": _sub(rng)}


@check("w3_files", inputs=files_inputs)
def w3_files(inputs: Inputs, save_rnn_dataset: Callable) -> dict[str, Any]:
    """One ``rollout_<i:04d>.npz`` per rollout with arrays ``mu``, ``logvar``, ``actions`` (no pickles),
    the paths returned, and saving into an existing folder works."""
    require_student_code(save_rnn_dataset, "save_rnn_dataset")
    sequences = _sequences(inputs["seed"], inputs["lengths"])
    values: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "rnn"
        with student_code("save_rnn_dataset(sequences, directory)"):
            returned = save_rnn_dataset(sequences, directory)
        files = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        values["files"] = json.dumps(files)
        paths = returned if isinstance(returned, list | tuple) else []
        values["returned"] = json.dumps([Path(p).name if isinstance(p, str | Path) else repr(p) for p in paths])
        for i, name in enumerate(f for f in files if f.endswith(".npz")):
            if i < 16:
                values[f"file_{i}"] = np.frombuffer((directory / name).read_bytes(), dtype=np.uint8)
        with student_code("save_rnn_dataset into an existing folder"):
            save_rnn_dataset(sequences[:1], directory)
    return values


@w3_files.judge
def _w3_files(inputs: Inputs, record: Record) -> None:
    sequences = _sequences(inputs["seed"], inputs["lengths"])
    files = [f for f in record.json("files") if f.endswith(".npz")]
    want = [f"rollout_{i:04d}.npz" for i in range(len(sequences))]
    expect(files == want, f"save_rnn_dataset wrote {files}, expected {want}")
    expect(
        record.json("returned") == want,
        "save_rnn_dataset should return the paths it wrote, one per rollout, in order",
    )
    for i, seq in enumerate(sequences):
        try:
            with np.load(io.BytesIO(record.array(f"file_{i}", "uint8").tobytes()), allow_pickle=False) as data:
                stored = {k: data[k] for k in data.files}
        except ValueError as err:
            expect(False, f"{want[i]} holds pickled objects or is not an .npz file ({err}); save plain float arrays")
        expect(
            set(_SEQUENCE_KEYS) <= set(stored),
            f"{want[i]} holds {sorted(stored)}, expected 'mu', 'logvar' and 'actions'",
        )
        for key, value in seq.items():
            expect(
                stored[key].shape == value.shape and np.allclose(stored[key], value),
                f"{want[i]}: {key!r} has shape {stored[key].shape}, expected {value.shape} with the rollout's values",
            )
