"""Hidden checks of homework 2 (``hw2_world_models``), one function per graded test cell.

Activities (seeds 000 and 002): w1 the World Models ``ConvVAE``, w2 its loss ``vae_loss`` with
the KL floor, w3 the RNN dataset (``encode_rollouts``, ``save_rnn_dataset``).

The reference answers never enter the student's kernel. Properties (shapes, layer types,
sampling statistics, gradients reaching a layer) are checked here; outputs that must equal the
reference's are recorded (:func:`autograder.checks.record`) and compared with it by
:mod:`autograder.judges.hw2` in the grader's process. To compare a ``ConvVAE`` with the reference,
both get the same weights (:func:`layer_weights`), matched to layers by type and parameter shapes
(not by attribute names or registration order), so any naming and nesting of the layers passes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autograder.checks import expect, record, require_student_code, seeded, student_code
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
#: (z_size, seed) of the weights and inputs of w1_encode_decode.
ENCODE_DECODE_CASES = ((32, 11), (16, 12))
SAMPLING_SEED = 15
#: (seed, batch) of the inputs of w2_recon.
RECON_CASES = ((20, 6), (21, 3))
#: (seed, z_size, kl_tolerance or None for the default) of the inputs of w2_kl_floor.
KL_CASES = ((30, 32, None), (31, 32, 0.5), (32, 32, 0.0), (33, 8, 1.0), (34, 16, 2.0))
GRADIENT_SEED = 40
#: Images of forward's x_hat that w1_sampling records (the judge decodes the same z).
SAMPLING_RECORDED = 4


# ---------------------------------------------------------------- helpers
def _build(model_cls: type, **kwargs: Any) -> nn.Module:
    call = f"ConvVAE({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    with student_code(call):
        model = model_cls(**kwargs)
    expect(isinstance(model, nn.Module), f"{call} should be an nn.Module")
    return model


#: Library functions that compute the World Models loss, which w2 asks students to write: they
#: raise while the student's ``vae_loss`` runs (:func:`_library_losses_refused`).
_LIBRARY_LOSSES = (library_losses.vae_loss, library_losses.kl_floor)


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


@contextmanager
def _trace(model: nn.Module) -> Iterator[list[tuple[nn.Module, torch.Tensor, torch.Tensor]]]:
    """Record ``(module, input, output)`` of every parameterised layer called inside the block."""
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        first = inputs[0] if inputs else None
        calls.append((module, first.detach() if torch.is_tensor(first) else first, output))

    handles = [m.register_forward_hook(hook) for m in parameterised_layers(model)]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


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


def expected_signatures(z_size: int) -> list[tuple]:
    """The layer signatures (see :func:`signature`) of the World Models VAE with ``z_size``."""
    sigs = [("Conv2d", (("weight", (o, i, k, k)), ("bias", (o,)))) for i, o, k, _, _ in ENCODER_CONVS]
    sigs += [("Linear", (("weight", (z_size, 1024)), ("bias", (z_size,))))] * 2  # mu and logvar
    sigs += [("Linear", (("weight", (1024, z_size)), ("bias", (1024,))))]  # the decoder's dense layer
    sigs += [("ConvTranspose2d", (("weight", (i, o, k, k)), ("bias", (o,)))) for i, o, k, _, _ in DECODER_DECONVS]
    return sigs


def layer_weights(z_size: int, seed: int) -> dict[tuple, list[list[torch.Tensor]]]:
    """Weights for the World Models VAE drawn from ``seed``: {signature: one parameter list per layer}.

    Drawn like PyTorch's default initialisation, uniform in +-1/sqrt(fan_in), signature by
    signature in a fixed order, so that the kernel (student's model) and the judge (reference)
    get the same tensors without either one seeing the other's model.
    """
    sigs = expected_signatures(z_size)
    generator = torch.Generator().manual_seed(seed)
    out: dict[tuple, list[list[torch.Tensor]]] = {}
    for sig in sorted(set(sigs), key=describe):
        (_, weight_shape), *_ = sig[1]
        bound = 1.0 / float(np.prod(weight_shape[1:])) ** 0.5  # 1 / sqrt(fan_in)
        out[sig] = [
            [(torch.rand(shape, generator=generator) * 2 - 1) * bound for _, shape in sig[1]]
            for _ in range(sigs.count(sig))
        ]
    return out


def _require_layers(model: nn.Module, z_size: int) -> list[nn.Module]:
    """The student's parameterised layers, after checking they are those of the World Models VAE."""
    ours = parameterised_layers(model)
    ours_sig = sorted(describe(signature(m)) for m in ours)
    want_sig = sorted(describe(s) for s in expected_signatures(z_size))
    if ours_sig != want_sig:
        extra = sorted({s for s in ours_sig if ours_sig.count(s) > want_sig.count(s)})
        missing = sorted({s for s in want_sig if want_sig.count(s) > ours_sig.count(s)})
        expect(
            False,
            "the layers do not match the World Models VAE: "
            + (f"unexpected {extra}; " if extra else "")
            + (f"missing {missing}" if missing else ""),
        )
    return ours


@torch.no_grad()
def load_weights(model: nn.Module, z_size: int, seed: int) -> None:
    """Give the student's layers the weights of :func:`layer_weights`, in registration order.

    Layers are matched by type and parameter shapes, not by attribute names, so any naming and
    nesting passes. Of the two ``Linear(1024, z_size)`` layers the first registered gets the first
    weights; the judge tries both ways round on the reference.

    Raises:
        CheckFailed: if the layers are not those of the World Models VAE.
    """
    weights = {sig: list(group) for sig, group in layer_weights(z_size, seed).items()}
    for layer in _require_layers(model, z_size):
        for param, value in zip(layer.parameters(recurse=False), weights[signature(layer)].pop(0), strict=True):
            param.copy_(value)


@torch.no_grad()
def shift_latent_biases(model: nn.Module, z_size: int) -> None:
    """Add LOGVAR_SHIFT to the bias of both ``Linear(1024, z_size)`` layers (mu and logvar).

    Applied alike to the student's model and to the reference, it makes sigma far from 1
    whichever of the two layers computes the log-variance.
    """
    for layer in parameterised_layers(model):
        if isinstance(layer, nn.Linear) and (layer.in_features, layer.out_features) == (1024, z_size):
            layer.bias += LOGVAR_SHIFT


def encode_decode_inputs(z_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(5, 3, 64, 64)`` in [0, 1] and ``z`` ``(5, z_size)`` of :func:`w1_encode_decode`."""
    with seeded(seed):
        return torch.rand(5, 3, 64, 64), 1.5 * torch.randn(5, z_size)


def sampling_inputs() -> torch.Tensor:
    """The batch ``x`` ``(128, 3, 64, 64)`` in [0, 1] whose ``forward`` :func:`w1_sampling` probes."""
    with seeded(SAMPLING_SEED):
        return torch.rand(128, 3, 64, 64)


# ---------------------------------------------------------------- w1: the ConvVAE
def w1_architecture(model_cls: type) -> None:
    """Encoder: four Conv2d(k4, s2) + ReLU, 64 -> 31 -> 14 -> 6 -> 2, dense mu and logvar from 1024
    features; decoder: dense z -> 1024, reshaped to 1x1, four ConvTranspose2d(k5, 5, 6, 6; s2),
    1 -> 5 -> 13 -> 30 -> 64 pixels."""
    require_student_code(model_cls, "ConvVAE")
    for z_size in (32, 16):
        model = _build(model_cls, z_size=z_size)
        model.eval()
        with seeded(10):
            x = torch.rand(2, 3, 64, 64)
            z = torch.randn(2, z_size)
        with torch.no_grad(), _trace(model) as calls, student_code(f"ConvVAE(z_size={z_size}).encode"):
            mu, logvar = _pair(model.encode(x), "encode(x)")
        convs = [(m, i, o) for m, i, o in calls if isinstance(m, nn.Conv2d)]
        expect(
            len(convs) == 4,
            f"encode should apply four Conv2d layers, it applied {len(convs)} "
            f"({[type(m).__name__ for m, _, _ in calls]})",
        )
        for k, ((m, inp, out), (c_in, c_out, kernel, stride, side)) in enumerate(
            zip(convs, ENCODER_CONVS, strict=True)
        ):
            got = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            want = (c_in, c_out, (kernel, kernel), (stride, stride), (0, 0))
            expect(
                got == want,
                f"encoder convolution {k + 1}: (in, out, kernel, stride, padding) = {got}, expected {want}",
            )
            expect(
                tuple(out.shape) == (2, c_out, side, side),
                f"encoder convolution {k + 1} outputs {tuple(out.shape)}, expected (2, {c_out}, {side}, {side})",
            )
            if k > 0:
                expect(bool((inp >= 0).all()), f"encoder convolution {k} should be followed by a ReLU")
        linears = [(m, i, o) for m, i, o in calls if isinstance(m, nn.Linear)]
        expect(
            len(linears) == 2 and all((m.in_features, m.out_features) == (1024, z_size) for m, _, _ in linears),
            f"encode should end with two Linear(1024, {z_size}) layers (mu and logvar) applied to the flattened "
            f"(B, 1024) features, got {[(m.in_features, m.out_features) for m, _, _ in linears]}",
        )
        expect(
            all(bool((i >= 0).all()) for _, i, _ in linears),
            "the last encoder convolution should be followed by a ReLU before the dense layers",
        )
        expect(
            tuple(mu.shape) == tuple(logvar.shape) == (2, z_size),
            f"encode returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)}, expected (2, {z_size}) each",
        )
        with torch.no_grad(), _trace(model) as calls, student_code(f"ConvVAE(z_size={z_size}).decode"):
            x_hat = model.decode(z)
        linears = [m for m, _, _ in calls if isinstance(m, nn.Linear)]
        expect(
            len(linears) == 1 and (linears[0].in_features, linears[0].out_features) == (z_size, 1024),
            f"decode should start with one Linear({z_size}, 1024) layer",
        )
        deconvs = [(m, i, o) for m, i, o in calls if isinstance(m, nn.ConvTranspose2d)]
        expect(len(deconvs) == 4, f"decode should apply four ConvTranspose2d layers, it applied {len(deconvs)}")
        expect(
            tuple(deconvs[0][1].shape) == (2, 1024, 1, 1),
            f"the first transposed convolution gets {tuple(deconvs[0][1].shape)}, expected the dense output "
            "reshaped to (2, 1024, 1, 1)",
        )
        for k, ((m, _, out), (c_in, c_out, kernel, stride, side)) in enumerate(
            zip(deconvs, DECODER_DECONVS, strict=True)
        ):
            got = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)
            want = (c_in, c_out, (kernel, kernel), (stride, stride), (0, 0))
            expect(
                got == want,
                f"decoder transposed convolution {k + 1}: (in, out, kernel, stride, padding) = {got}, expected {want}",
            )
            expect(
                tuple(out.shape) == (2, c_out, side, side),
                f"decoder transposed convolution {k + 1} outputs {tuple(out.shape)}, expected "
                f"(2, {c_out}, {side}, {side})",
            )
        expect(tuple(x_hat.shape) == (2, 3, 64, 64), f"decode returned {tuple(x_hat.shape)}, expected (2, 3, 64, 64)")
        extra = [
            type(m).__name__
            for m in parameterised_layers(model)
            if not isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
        ]
        expect(not extra, f"the World Models VAE has no {sorted(set(extra))} layers")


def w1_parameter_count(model_cls: type) -> None:
    """4,348,547 parameters with z_size=32, and 3,074 more or fewer per latent dimension."""
    require_student_code(model_cls, "ConvVAE")
    for z_size in (32, 8):
        model = _build(model_cls, z_size=z_size)
        ours = sum(p.numel() for p in model.parameters())
        theirs = N_PARAMS + (z_size - 32) * PARAMS_PER_LATENT
        expect(
            ours == theirs,
            f"ConvVAE(z_size={z_size}) has {ours:,} parameters, expected {theirs:,}"
            + (" (use z_size for the latent layers, not a hard-coded 32)" if z_size != 32 and ours == N_PARAMS else ""),
        )


def w1_encode_decode(model_cls: type) -> None:
    """``encode`` is deterministic and ``decode`` ends in [0, 1]; the judge checks that, with the
    same weights, both give the reference's outputs."""
    require_student_code(model_cls, "ConvVAE")
    values = {}
    for z_size, seed in ENCODE_DECODE_CASES:
        model = _build(model_cls, z_size=z_size)
        model.eval()
        load_weights(model, z_size, seed)
        x, z = encode_decode_inputs(z_size, seed)
        with torch.no_grad(), student_code("ConvVAE.encode"):
            mu, logvar = _pair(model.encode(x), "encode(x)")
            again = _pair(model.encode(x), "encode(x)")
        expect(
            torch.equal(mu, again[0]) and torch.equal(logvar, again[1]),
            "encode(x) should be deterministic: return the mean and log-variance, not a sample",
        )
        expect(
            tuple(mu.shape) == tuple(logvar.shape) == (5, z_size),
            f"encode returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)}, expected (5, {z_size}) each",
        )
        with torch.no_grad(), student_code("ConvVAE.decode"):
            x_hat = model.decode(z)
        expect(
            torch.is_tensor(x_hat) and tuple(x_hat.shape) == (5, 3, 64, 64),
            "decode(z) should return a (B, 3, 64, 64) tensor",
        )
        expect(float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0, "decode(z) should be in [0, 1] (a sigmoid)")
        values |= {f"mu_{z_size}": mu, f"logvar_{z_size}": logvar, f"x_hat_{z_size}": x_hat}
    record("hw2.w1_encode_decode", **{k: v.float() for k, v in values.items()})


def w1_sampling(model_cls: type) -> None:
    """``reparameterize`` draws ``z ~ N(mu, exp(logvar))`` with gradients to both; ``forward`` returns
    ``(decode(z), mu, logvar)`` with ``z`` sampled that way."""
    require_student_code(model_cls, "ConvVAE")
    model = _build(model_cls, z_size=32)
    mu = torch.tensor([0.0, 1.5, -2.0, 3.0]).repeat(40000, 1)  # (40000, 4)
    std = torch.tensor([1.0, 0.5, 2.0, 0.1])
    logvar = torch.log(std**2).repeat(40000, 1)
    with seeded(13), torch.no_grad(), student_code("reparameterize(mu, logvar)"):
        z1 = model.reparameterize(mu, logvar)
        z2 = model.reparameterize(mu, logvar)
    expect(
        torch.is_tensor(z1) and z1.shape == mu.shape,
        f"reparameterize should return a tensor shaped like mu {tuple(mu.shape)}",
    )
    mean, spread = z1.mean(0), z1.std(0)
    expect(
        torch.allclose(mean, mu[0], atol=0.06),
        f"the mean of z is {[round(v, 3) for v in mean.tolist()]}, expected mu = {mu[0].tolist()}",
    )
    expect(
        torch.allclose(spread, std, rtol=0.03),
        f"the std of z is {[round(v, 3) for v in spread.tolist()]}, expected exp(logvar / 2) = {std.tolist()} "
        "(logvar is the log of the variance, not of the standard deviation)",
    )
    expect(not torch.equal(z1, z2), "two calls of reparameterize gave the same z; draw new noise each time")
    mu_g = torch.randn(64, 4, requires_grad=True)
    logvar_g = (0.3 * torch.randn(64, 4)).requires_grad_(True)
    with seeded(14), student_code("reparameterize(mu, logvar)"):
        model.reparameterize(mu_g, logvar_g).sum().backward()
    expect(
        mu_g.grad is not None and logvar_g.grad is not None and float(logvar_g.grad.abs().sum()) > 0,
        "no gradient reached mu or logvar through reparameterize (use z = mu + sigma * eps with torch operations)",
    )

    # forward: the decoded z is a sample of N(mu, exp(logvar)), with sigma far from 1
    x = sampling_inputs()
    load_weights(model, 32, SAMPLING_SEED)
    shift_latent_biases(model, 32)
    dense = next(m for m in parameterised_layers(model) if isinstance(m, nn.Linear) and m.in_features == 32)
    captured: list[torch.Tensor] = []
    handle = dense.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach()))
    model.train()
    try:
        with seeded(16), torch.no_grad(), student_code("ConvVAE.forward"):
            x_hat, mu_f, logvar_f = _triple(model(x), "forward(x)")
            x_hat2 = model(x)[0]
    finally:
        handle.remove()
    expect(len(captured) >= 1, "forward(x) should decode z with the decoder's dense layer")
    z = captured[0]
    expect(
        tuple(mu_f.shape) == tuple(logvar_f.shape) == (128, 32),
        f"forward(x) returned mu {tuple(mu_f.shape)} and logvar {tuple(logvar_f.shape)}, expected (128, 32) each",
    )
    expect(tuple(z.shape) == tuple(mu_f.shape), f"forward decoded a z of shape {tuple(z.shape)}, expected (128, 32)")
    expect(not torch.allclose(z, mu_f), "forward should decode a sampled z (reparameterize), not mu")
    expect(
        tuple(x_hat.shape) == (128, 3, 64, 64),
        f"forward's x_hat has shape {tuple(x_hat.shape)}, expected (128, 3, 64, 64)",
    )
    expect(not torch.equal(x_hat, x_hat2), "two calls of forward gave the same x_hat; it should sample z each time")
    record(
        "hw2.w1_sampling",
        mu=mu_f.float(),
        logvar=logvar_f.float(),
        z=z.float(),
        x_hat=x_hat[:SAMPLING_RECORDED].float(),
    )


# ---------------------------------------------------------------- w2: the loss
def loss_case(seed: int, batch: int = 6, z_size: int = 32) -> tuple[torch.Tensor, ...]:
    """``(x, x_hat, mu, logvar)``: ``(B, 3, 64, 64)`` twice, ``(B, z_size)`` twice.

    Half the batch has a KL below the floor (0.5 * z_size nats), half well above it.
    """
    with seeded(seed):
        x = torch.rand(batch, 3, 64, 64)
        x_hat = torch.rand(batch, 3, 64, 64)
        scale = torch.tensor([0.1] * (batch // 2) + [2.0] * (batch - batch // 2)).unsqueeze(1)  # (B, 1)
        mu = scale * torch.randn(batch, z_size)
        logvar = scale * 0.5 * torch.randn(batch, z_size)
    return x, x_hat, mu, logvar


def _refuse(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("vae_loss must not call course_lib's loss functions; write the reduction and the floor yourself")


@contextmanager
def _library_losses_refused() -> Iterator[None]:
    """While the block runs, ``course_lib``'s World Models loss functions raise, however they are
    reached (an alias made earlier, ``getattr`` with a built name, ``course_lib.train.make_vae_loss``
    which calls ``vae_loss``): their code is swapped."""
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


def w2_recon(vae_loss: Callable) -> None:
    """``recon`` is a batch mean (the judge compares it with the reference's: squared error summed
    over channels and pixels, averaged over the batch)."""
    require_student_code(vae_loss, "vae_loss")
    values = {}
    for seed, batch in RECON_CASES:
        out = _call_loss(vae_loss, *loss_case(seed, batch))
        values[f"recon_{seed}"] = out["recon"].detach().double()
    # doubling the batch with a copy must not change a batch mean
    x, x_hat, mu, logvar = loss_case(22, 4)
    single = _call_loss(vae_loss, x, x_hat, mu, logvar)["recon"]
    double = _call_loss(vae_loss, *(torch.cat([t, t]) for t in (x, x_hat, mu, logvar)))["recon"]
    expect(close(single, double), "recon changed when the batch was duplicated: average over the batch")
    record("hw2.w2_recon", **values)


def w2_kl_floor(vae_loss: Callable) -> None:
    """``loss = recon + kl`` with ``kl_tolerance`` defaulting to 0.5; the judge compares ``kl`` with the
    reference's (summed over ``z``, floored per sample at ``kl_tolerance * z_size``, averaged)."""
    require_student_code(vae_loss, "vae_loss")
    values = {}
    for seed, z_size, tolerance in KL_CASES:
        kwargs = {} if tolerance is None else {"kl_tolerance": tolerance}
        out = _call_loss(vae_loss, *loss_case(seed, 6, z_size), **kwargs)
        call = f"vae_loss(..., {'kl_tolerance=' + str(tolerance) if tolerance is not None else 'default kl_tolerance'})"
        expect(
            close(out["loss"], out["recon"] + out["kl"]),
            f"{call}: loss ({float(out['loss']):.4f}) should be recon + kl ({float(out['recon'] + out['kl']):.4f})",
        )
        values[f"kl_{seed}"] = out["kl"].detach().double()
    record("hw2.w2_kl_floor", **values)


def w2_gradients(vae_loss: Callable) -> None:
    """Gradients of the loss reach ``x_hat``, ``mu`` and ``logvar``; the judge compares them with the
    reference's (none from the KL for samples below the floor; ``2 (x_hat - x) / B`` for ``x_hat``)."""
    require_student_code(vae_loss, "vae_loss")
    x, x_hat, mu, logvar = loss_case(GRADIENT_SEED, 6)
    leaves = [t.clone().requires_grad_(True) for t in (x_hat, mu, logvar)]
    with student_code("backpropagating vae_loss"):
        _call_loss(vae_loss, x, *leaves)["loss"].backward()
    names = ("x_hat", "mu", "logvar")
    for name, leaf in zip(names, leaves, strict=True):
        expect(leaf.grad is not None, f"no gradient reached {name}: compute the loss with torch operations")
    record("hw2.w2_gradients", **{name: leaf.grad.float() for name, leaf in zip(names, leaves, strict=True)})


# ---------------------------------------------------------------- w3: the RNN dataset
class _StandInVAE(SmallVAE):
    """The VAE given to ``encode_rollouts``: ``SmallVAE``, sampling in eval mode too (as World Models'
    ``ConvVAE`` does), so that storing a sampled z instead of mu is seen whatever the mode."""

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _rollouts(seed: int, lengths: Sequence[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, size=(t, 64, 64, 3), dtype=np.uint8) for t in lengths]
    actions = [rng.uniform(-1, 1, size=(t, 3)).astype(np.float32) for t in lengths]
    return frames, actions


def _sequence_arrays(seq: Any, i: int) -> dict[str, np.ndarray]:
    expect(
        isinstance(seq, dict) and {"mu", "logvar", "actions"} <= set(seq),
        f"rollout {i}: expected a dict with keys 'mu', 'logvar' and 'actions', got "
        f"{sorted(seq) if isinstance(seq, dict) else type(seq).__name__}",
    )
    out = {}
    for key in ("mu", "logvar", "actions"):
        value = seq[key]
        expect(
            isinstance(value, np.ndarray) and value.dtype == np.float32,
            f"rollout {i}: {key!r} should be a float32 numpy array, got {type(value).__name__} "
            f"{getattr(value, 'dtype', '')} (use .detach().cpu().numpy())",
        )
        out[key] = value
    return out


def w3_encode_rollouts(encode_rollouts: Callable) -> None:
    """One sequence per rollout (lengths differ) with ``mu``, ``logvar`` = ``encode(frames)`` and the
    actions taken in those frames."""
    require_student_code(encode_rollouts, "encode_rollouts")
    lengths = (9, 4, 13)
    frames, actions = _rollouts(50, lengths)
    # any VAE with encode(x) -> (mu, logvar) will do, so not the reference (the answer of w1)
    with seeded(50):
        ref = _StandInVAE(z_size=32, width=4)
    with torch.no_grad():
        ref.fc_logvar.bias += LOGVAR_SHIFT  # sigma far from 1: a sampled z is far from mu
    ref.train()
    with seeded(51), student_code("encode_rollouts(model, frames, actions)"):
        sequences = encode_rollouts(ref, frames, actions)
    expect(
        isinstance(sequences, (list, tuple)) and len(sequences) == len(lengths),
        f"encode_rollouts should return one sequence per rollout ({len(lengths)}), got "
        f"{type(sequences).__name__} of length {len(sequences) if hasattr(sequences, '__len__') else '?'}",
    )
    for i, (seq, t) in enumerate(zip(sequences, lengths, strict=True)):
        arrays = _sequence_arrays(seq, i)
        for key, width in (("mu", 32), ("logvar", 32), ("actions", 3)):
            expect(
                arrays[key].shape == (t, width),
                f"rollout {i} ({t} frames): {key!r} has shape {arrays[key].shape}, expected ({t}, {width})",
            )
        with torch.no_grad():
            ref_mu, ref_logvar = ref.encode(to_tensor(frames[i]))
        expect(
            np.allclose(arrays["mu"], ref_mu.numpy(), atol=1e-4),
            f"rollout {i}: 'mu' is not model.encode(frames)'s mean"
            + (
                " (it looks like a sampled z = mu + sigma * eps: store the deterministic mean, as the MDN-RNN "
                "models the posterior, not one noisy draw)"
                if np.abs(arrays["mu"] - ref_mu.numpy()).mean() > 0.1
                else ""
            ),
        )
        expect(
            np.allclose(arrays["logvar"], ref_logvar.numpy(), atol=1e-4),
            f"rollout {i}: 'logvar' is not model.encode(frames)'s log-variance",
        )
        shifted = t > 1 and np.allclose(arrays["actions"][:-1], actions[i][1:])
        expect(
            np.allclose(arrays["actions"], actions[i]),
            f"rollout {i}: 'actions' should be the actions of that rollout, aligned with its frames "
            "(actions[t] was taken in frame t)" + (" - yours are shifted by one step" if shifted else ""),
        )


def w3_save(save_rnn_dataset: Callable) -> None:
    """One ``rollout_<i:04d>.npz`` per rollout with arrays ``mu``, ``logvar``, ``actions`` (no pickles)."""
    require_student_code(save_rnn_dataset, "save_rnn_dataset")
    lengths = (6, 3, 8)
    rng = np.random.default_rng(60)
    sequences = [
        {
            "mu": rng.standard_normal((t, 32)).astype(np.float32),
            "logvar": rng.standard_normal((t, 32)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
        }
        for t in lengths
    ]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "rnn"
        with student_code("save_rnn_dataset(sequences, directory)"):
            returned = save_rnn_dataset(sequences, directory)
        files = sorted(p.name for p in directory.glob("*.npz")) if directory.exists() else []
        want = [f"rollout_{i:04d}.npz" for i in range(len(lengths))]
        expect(files == want, f"save_rnn_dataset wrote {files}, expected {want}")
        expect(
            returned is not None and len(returned) == len(lengths),
            "save_rnn_dataset should return the paths it wrote, one per rollout",
        )
        for i, seq in enumerate(sequences):
            path = directory / want[i]
            try:
                with np.load(path, allow_pickle=False) as data:
                    stored = {k: data[k] for k in data.files}
            except ValueError as err:
                expect(False, f"{path.name} holds pickled objects ({err}); save plain float arrays")
            expect(
                {"mu", "logvar", "actions"} <= set(stored),
                f"{path.name} holds {sorted(stored)}, expected 'mu', 'logvar' and 'actions'",
            )
            for key, value in seq.items():
                expect(
                    stored[key].shape == value.shape and np.allclose(stored[key], value),
                    f"{path.name}: {key!r} has shape {stored[key].shape}, expected {value.shape} with the "
                    "rollout's values",
                )
        # saving into an existing folder works too
        with student_code("save_rnn_dataset into an existing folder"):
            save_rnn_dataset(sequences[:1], directory)
