"""w1, the World Models ``ConvVAE`` (Ha & Schmidhuber 2018, appendix): architecture, parameter
count, ``encode``/``decode`` against the reference, and ``forward``'s sampling.
"""

from __future__ import annotations

import itertools
import json
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
from autograder.checks.hw2_world_models.matching import (
    DECODER_DECONVS,
    ENCODER_CONVS,
    N_PARAMS,
    PARAMS_PER_LATENT,
    SAMPLING_RECORDED,
    as_pair,
    as_triple,
    build_model,
    describe,
    layer_spec,
    layer_weights,
    layers_differ,
    linear_signature,
    load_weights,
    parameterised_layers,
    rng_of,
    shape_of,
    shift_latent_biases,
    signature,
    sub_seed,
    tensor_out,
    traced,
)


def _z_sizes(seed: int) -> tuple[int, int]:
    """The default latent size 32 and one drawn from 8 to 23: never 32, so that a latent size
    hard-coded to the default shows."""
    return 32, int(rng_of(seed + 1).integers(8, 24))


def conv_vae_cases(seed: int) -> Inputs:
    """The inputs of ``w1_architecture`` and ``w1_encode_decode``: ``cases``, the z sizes
    (:func:`_z_sizes`) each with a seed of its weights and inputs."""
    rng = rng_of(seed)
    return {"cases": [(z, sub_seed(rng)) for z in _z_sizes(seed)]}


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
        model = build_model(model_cls, z_size=z_size)
        model.eval()
        differ = layers_differ(model, z_size)
        if differ is None:
            load_weights(model, z_size, seed)
        x, z = _architecture_xz(z_size, seed)
        trace: dict[str, Any] = {"layers": differ}
        for part in ("encode", "decode"):
            with torch.no_grad(), traced(model) as calls, student_code(f"ConvVAE(z_size={z_size}).{part}"):
                result = model.encode(x) if part == "encode" else model.decode(z)
            trace[part] = [{"spec": layer_spec(m), "in": shape_of(i), "out": shape_of(o)} for m, i, o in calls]
            for k, (_, _, output) in enumerate(calls):
                values[f"{part}_{z_size}_{k}"] = tensor_out(output, f"a layer of {part}")
            if part == "encode":
                mu, logvar = as_pair(result, "encode(x)")
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
            with torch.no_grad(), traced(ref) as calls:
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
    rng = rng_of(seed)
    return {"z_sizes": list(_z_sizes(seed)), "seeds": [sub_seed(rng) for _ in range(2)]}


def _count_xz(z_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 4)
    return torch.rand(1, 3, 64, 64, generator=g), torch.randn(1, z_size, generator=g)  # (1, 3, 64, 64), (1, z)


@check("w1_parameter_count", inputs=parameter_inputs)
def w1_parameter_count(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """4,348,547 parameters with z_size=32, and 3,074 more or fewer per latent dimension."""
    require_student_code(model_cls, "ConvVAE")
    values: dict[str, Any] = {}
    for k, (z_size, seed) in enumerate(zip(inputs["z_sizes"], inputs["seeds"], strict=True)):
        model = build_model(model_cls, z_size=z_size).eval()
        values[f"model_{k}"] = json.dumps(layers.describe(model))
        if layers_differ(model, z_size) is not None:
            continue  # the judge names the missing layers from the description
        load_weights(model, z_size, seed)
        names = {id(m): name for name, m in model.named_modules()}
        x, z = _count_xz(z_size, seed)
        for part in ("encode", "decode"):
            with torch.no_grad(), traced(model) as calls, student_code(f"ConvVAE(z_size={z_size}).{part}"):
                model.encode(x) if part == "encode" else model.decode(z)
            values[f"{part}_{k}"] = json.dumps([names[id(m)] for m, _, _ in calls])
            for j, (_, given, output) in enumerate(calls):
                values[f"{part}_{k}_{j}_in"] = tensor_out(given, f"the input of a layer of {part}")
                values[f"{part}_{k}_{j}_out"] = tensor_out(output, f"a layer of {part}")
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
        model = build_model(model_cls, z_size=z_size)
        model.eval()
        load_weights(model, z_size, seed)
        x, z = _encode_decode_xz(z_size, seed)
        with torch.no_grad(), student_code("ConvVAE.encode"):
            mu, logvar = as_pair(model.encode(x), "encode(x)")
            again = as_pair(model.encode(x), "encode(x)")
        with torch.no_grad(), student_code("ConvVAE.decode"):
            x_hat = tensor_out(model.decode(z), "decode(z)")
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
    rng = rng_of(seed)
    return {
        **sampling.sample_inputs(rng),
        "seed": sub_seed(rng),
        "gradient_seed": sub_seed(rng),
        "forward_seed": sub_seed(rng),
    }


def _forward_x(seed: int) -> torch.Tensor:
    """The batch ``x`` ``(128, 3, 64, 64)`` in [0, 1] whose ``forward`` is probed."""
    return torch.rand(128, 3, 64, 64, generator=torch.Generator().manual_seed(seed + 3))


@check("w1_sampling", inputs=sampling_check_inputs)
def w1_sampling(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """``reparameterize`` draws ``z ~ N(mu, exp(logvar))`` with gradients to both; ``forward`` returns
    ``(decode(z), mu, logvar)`` with ``z`` sampled that way."""
    require_student_code(model_cls, "ConvVAE")
    model = build_model(model_cls, z_size=32)
    mu, logvar = sampling.mu_logvar(inputs)
    with seeded(inputs["seed"]), torch.no_grad(), student_code("reparameterize(mu, logvar)"):
        z1 = tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
        z2 = tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
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
        x_hat, mu_f, logvar_f = as_triple(model(x), "forward(x)")
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
