"""Hidden checks of homework 2 (``hw2_world_models``), one function per graded test cell.

Activities (seeds 000 and 002): w1 the World Models ``ConvVAE``, w2 its loss ``vae_loss`` with
the KL floor, w3 the RNN dataset (``encode_rollouts``, ``save_rnn_dataset``).

The student's ``ConvVAE`` is compared with :class:`course_lib.solutions.conv_vae.ConvVAE` after
copying the reference weights into it layer by layer, matched by layer type and parameter shapes
(not by attribute names or registration order), so any naming and nesting of the layers passes.
"""

from __future__ import annotations

import inspect
import itertools
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autograder.checks import expect, require_student_code, seeded, student_code
from course_lib import losses as library_losses
from course_lib import train as library_train
from course_lib.frames import to_tensor
from course_lib.solutions import hw2 as reference
from course_lib.solutions.conv_vae import ConvVAE as ReferenceVAE

N_PARAMS = 4_348_547
#: (in_channels, out_channels, kernel, stride, output side) of the encoder's convolutions.
ENCODER_CONVS = [(3, 32, 4, 2, 31), (32, 64, 4, 2, 14), (64, 128, 4, 2, 6), (128, 256, 4, 2, 2)]
#: ... and of the decoder's transposed convolutions.
DECODER_DECONVS = [(1024, 128, 5, 2, 5), (128, 64, 5, 2, 13), (64, 32, 6, 2, 30), (32, 3, 6, 2, 64)]
LOGVAR_SHIFT = -1.5  # added to the log-variance layer's bias, so that sigma is far from 1


# ---------------------------------------------------------------- helpers
def _build(model_cls: type, **kwargs: Any) -> nn.Module:
    call = f"ConvVAE({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    with student_code(call):
        model = model_cls(**kwargs)
    expect(isinstance(model, nn.Module), f"{call} should be an nn.Module")
    return model


def _reference(z_size: int, seed: int) -> nn.Module:
    with seeded(seed):
        return ReferenceVAE(z_size=z_size).eval()


#: Library functions that compute the World Models loss: w2 asks students to write it.
_LIBRARY_LOSSES = {
    "vae_loss": library_losses.vae_loss,
    "kl_floor": library_losses.kl_floor,
    "make_vae_loss": library_train.make_vae_loss,
}


def _own_loss(vae_loss: Callable) -> None:
    """Fail if ``vae_loss`` comes from the grader or the reference, or calls the library's loss."""
    require_student_code(vae_loss, "vae_loss")
    if not inspect.isfunction(vae_loss):
        return
    code = vae_loss.__code__
    referenced = [vae_loss.__globals__.get(n) for n in code.co_names]
    referenced += [c.cell_contents for c in (vae_loss.__closure__ or ()) if c.cell_contents is not None]
    for name, fn in _LIBRARY_LOSSES.items():
        via_module = name in code.co_names and any(r is library_losses or r is library_train for r in referenced)
        expect(
            not (any(r is fn for r in referenced) or via_module),
            f"vae_loss calls course_lib's {name}; write the reduction and the floor yourself",
        )


def _layers(model: nn.Module) -> list[nn.Module]:
    """Modules that hold parameters themselves, in registration order."""
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def _signature(module: nn.Module) -> tuple:
    shapes = tuple((name, tuple(p.shape)) for name, p in module.named_parameters(recurse=False))
    return (type(module).__name__, shapes)


def _describe(signature: tuple) -> str:
    kind, shapes = signature
    return f"{kind}({', '.join(f'{n}{list(s)}' for n, s in shapes)})"


@contextmanager
def _trace(model: nn.Module) -> Iterator[list[tuple[nn.Module, torch.Tensor, torch.Tensor]]]:
    """Record ``(module, input, output)`` of every parameterised layer called inside the block."""
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        first = inputs[0] if inputs else None
        calls.append((module, first.detach() if torch.is_tensor(first) else first, output))

    handles = [m.register_forward_hook(hook) for m in _layers(model)]
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


def _load_reference(model: nn.Module, ref: nn.Module, x: torch.Tensor) -> dict[nn.Module, nn.Module]:
    """Copy ``ref``'s weights into ``model`` layer by layer; return {reference layer: student layer}.

    Layers are matched by type and parameter shapes. Where several layers have the same shapes
    (``fc_mu`` and ``fc_logvar``), the assignment whose ``encode(x)`` agrees with the reference is
    kept (the first one if none does; the comparison then fails with a clear message).
    """
    ours, theirs = _layers(model), _layers(ref)
    ours_sig = sorted(_describe(_signature(m)) for m in ours)
    theirs_sig = sorted(_describe(_signature(m)) for m in theirs)
    if ours_sig != theirs_sig:
        extra = sorted({s for s in ours_sig if ours_sig.count(s) > theirs_sig.count(s)})
        missing = sorted({s for s in theirs_sig if theirs_sig.count(s) > ours_sig.count(s)})
        expect(
            False,
            "the layers do not match the World Models VAE: "
            + (f"unexpected {extra}; " if extra else "")
            + (f"missing {missing}" if missing else ""),
        )
    groups: dict[tuple, tuple[list[nn.Module], list[nn.Module]]] = {}
    for m in theirs:
        groups.setdefault(_signature(m), ([], []))[0].append(m)
    for m in ours:
        groups.setdefault(_signature(m), ([], []))[1].append(m)
    choices = [[list(zip(r, p, strict=True)) for p in itertools.permutations(s)] for r, s in groups.values()]
    with torch.no_grad():
        ref_mu, ref_logvar = ref.encode(x)
    first: dict[nn.Module, nn.Module] | None = None
    for combo in itertools.product(*choices):
        mapping = {r: s for pairs in combo for r, s in pairs}
        _copy(mapping)
        first = first or mapping
        with torch.no_grad(), student_code("ConvVAE.encode"):
            mu, logvar = _pair(model.encode(x), "encode(x)")
        if (
            mu.shape == ref_mu.shape
            and torch.allclose(mu, ref_mu, atol=1e-5)
            and torch.allclose(logvar, ref_logvar, atol=1e-5)
        ):
            return mapping
    # no assignment reproduces encode: keep the first one and let the caller report
    _copy(first)
    return first


@torch.no_grad()
def _copy(mapping: dict[nn.Module, nn.Module]) -> None:
    """Copy each reference layer's parameters into the student layer it is mapped to."""
    for r, s in mapping.items():
        for (_, p_ref), (_, p_s) in zip(
            r.named_parameters(recurse=False), s.named_parameters(recurse=False), strict=True
        ):
            p_s.copy_(p_ref)


def _shift_logvar(ref: nn.Module, mapping: dict[nn.Module, nn.Module]) -> None:
    """Move the log-variance layer's bias (reference and student) by LOGVAR_SHIFT."""
    with torch.no_grad():
        ref.fc_logvar.bias += LOGVAR_SHIFT
        mapping[ref.fc_logvar].bias.copy_(ref.fc_logvar.bias)


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
            type(m).__name__ for m in _layers(model) if not isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)
        ]
        expect(not extra, f"the World Models VAE has no {sorted(set(extra))} layers")


def w1_parameter_count(model_cls: type) -> None:
    """4,348,547 parameters with z_size=32, and the reference's count with other latent sizes."""
    require_student_code(model_cls, "ConvVAE")
    for z_size in (32, 8):
        model = _build(model_cls, z_size=z_size)
        ours = sum(p.numel() for p in model.parameters())
        theirs = sum(p.numel() for p in ReferenceVAE(z_size=z_size).parameters())
        if z_size == 32:
            theirs = N_PARAMS
        expect(
            ours == theirs,
            f"ConvVAE(z_size={z_size}) has {ours:,} parameters, expected {theirs:,}"
            + (" (use z_size for the latent layers, not a hard-coded 32)" if z_size != 32 and ours == N_PARAMS else ""),
        )


def w1_encode_decode(model_cls: type) -> None:
    """With the reference's weights copied in, ``encode`` and ``decode`` give the reference's outputs."""
    require_student_code(model_cls, "ConvVAE")
    for z_size, seed in ((32, 11), (16, 12)):
        with seeded(seed):
            model = _build(model_cls, z_size=z_size)
            x = torch.rand(5, 3, 64, 64)
            z = 1.5 * torch.randn(5, z_size)
        model.eval()
        ref = _reference(z_size, seed)
        _load_reference(model, ref, x)
        with torch.no_grad():
            ref_mu, ref_logvar = ref.encode(x)
            ref_x_hat = ref.decode(z)
        with torch.no_grad(), student_code("ConvVAE.encode"):
            mu, logvar = _pair(model.encode(x), "encode(x)")
            again = _pair(model.encode(x), "encode(x)")
        expect(
            torch.equal(mu, again[0]) and torch.equal(logvar, again[1]),
            "encode(x) should be deterministic: return the mean and log-variance, not a sample",
        )
        expect(
            torch.allclose(mu, ref_mu, atol=1e-5),
            "with the reference weights, encode(x)'s mu differs from the reference (max error "
            f"{float((mu - ref_mu).abs().max()):.3g}); check the ReLUs after each convolution, the flatten, "
            "and that mu comes from its own Linear layer",
        )
        expect(
            torch.allclose(logvar, ref_logvar, atol=1e-5),
            "with the reference weights, encode(x)'s logvar differs from the reference; logvar is the raw output "
            "of its Linear layer (no activation, no exp)",
        )
        with torch.no_grad(), student_code("ConvVAE.decode"):
            x_hat = model.decode(z)
        expect(
            torch.is_tensor(x_hat) and tuple(x_hat.shape) == (5, 3, 64, 64),
            "decode(z) should return a (B, 3, 64, 64) tensor",
        )
        expect(
            torch.allclose(x_hat, ref_x_hat, atol=1e-5),
            "with the reference weights, decode(z) differs from the reference (max error "
            f"{float((x_hat - ref_x_hat).abs().max()):.3g}); check: no activation after the dense layer, reshape "
            "to (B, 1024, 1, 1), ReLU after each transposed convolution but the last, a sigmoid at the end",
        )
        expect(float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0, "decode(z) should be in [0, 1] (a sigmoid)")


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
    with seeded(15):
        x = torch.rand(128, 3, 64, 64)
    ref = _reference(32, 15)
    mapping = _load_reference(model, ref, x[:4])
    _shift_logvar(ref, mapping)
    dense = mapping[ref.fc_decode]
    captured: list[torch.Tensor] = []
    handle = dense.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0].detach()))
    model.train()
    try:
        with seeded(16), torch.no_grad(), student_code("ConvVAE.forward"):
            x_hat, mu_f, logvar_f = _triple(model(x), "forward(x)")
            x_hat2 = model(x)[0]
    finally:
        handle.remove()
    with torch.no_grad():
        ref_mu, ref_logvar = ref.encode(x)
    expect(
        torch.allclose(mu_f, ref_mu, atol=1e-5) and torch.allclose(logvar_f, ref_logvar, atol=1e-5),
        "forward(x) should return encode(x)'s mu and logvar as its second and third outputs",
    )
    expect(len(captured) >= 1, "forward(x) should decode z with the decoder's dense layer")
    z = captured[0]
    expect(tuple(z.shape) == tuple(mu_f.shape), f"forward decoded a z of shape {tuple(z.shape)}, expected (128, 32)")
    expect(not torch.allclose(z, mu_f), "forward should decode a sampled z (reparameterize), not mu")
    eps = (z - ref_mu) / torch.exp(0.5 * ref_logvar)
    expect(
        abs(float(eps.mean())) < 0.05 and abs(float(eps.std()) - 1.0) < 0.05,
        f"in forward, (z - mu) / exp(logvar / 2) has mean {float(eps.mean()):.3f} and std {float(eps.std()):.3f}, "
        "expected 0 and 1: sample z = mu + exp(logvar / 2) * eps",
    )
    with torch.no_grad():
        expected = ref.decode(z)
    expect(
        torch.allclose(x_hat, expected, atol=1e-5),
        "forward's x_hat should be decode(z) of the sampled z, the first output",
    )
    expect(not torch.equal(x_hat, x_hat2), "two calls of forward gave the same x_hat; it should sample z each time")


# ---------------------------------------------------------------- w2: the loss
def _loss_case(seed: int, batch: int = 6, z_size: int = 32) -> tuple[torch.Tensor, ...]:
    """Half the batch has a KL below the floor (0.5 * z_size nats), half well above it."""
    with seeded(seed):
        x = torch.rand(batch, 3, 64, 64)
        x_hat = torch.rand(batch, 3, 64, 64)
        scale = torch.tensor([0.1] * (batch // 2) + [2.0] * (batch - batch // 2)).unsqueeze(1)  # (B, 1)
        mu = scale * torch.randn(batch, z_size)
        logvar = scale * 0.5 * torch.randn(batch, z_size)
    return x, x_hat, mu, logvar


def _call_loss(vae_loss: Callable, *args: torch.Tensor, **kwargs: float) -> dict[str, torch.Tensor]:
    with student_code("vae_loss"):
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


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.detach().double(), b.detach().double(), rtol=1e-4, atol=1e-4))


def w2_recon(vae_loss: Callable) -> None:
    """``recon`` is the squared error summed over channels and pixels, averaged over the batch."""
    _own_loss(vae_loss)
    for seed, batch in ((20, 6), (21, 3)):
        x, x_hat, mu, logvar = _loss_case(seed, batch)
        out = _call_loss(vae_loss, x, x_hat, mu, logvar)
        want = reference.vae_loss(x, x_hat, mu, logvar)["recon"]
        got = out["recon"]
        hint = ""
        if _close(got * x[0].numel(), want):
            hint = " (you averaged over the pixels; World Models sums over them)"
        elif _close(got, want * batch):
            hint = " (you summed over the batch; average over it)"
        elif _close(got, want * 2) or _close(got * 2, want):
            hint = " (a factor 2 off: no 1/2 in front of the squared error here)"
        expect(_close(got, want), f"recon is {float(got):.4f}, expected {float(want):.4f}{hint}")
    # doubling the batch with a copy must not change a batch mean
    x, x_hat, mu, logvar = _loss_case(22, 4)
    single = _call_loss(vae_loss, x, x_hat, mu, logvar)["recon"]
    double = _call_loss(vae_loss, *(torch.cat([t, t]) for t in (x, x_hat, mu, logvar)))["recon"]
    expect(_close(single, double), "recon changed when the batch was duplicated: average over the batch")


def w2_kl_floor(vae_loss: Callable) -> None:
    """``kl`` is summed over ``z``, floored per sample at ``kl_tolerance * z_size``, then averaged;
    ``loss = recon + kl``; ``kl_tolerance`` defaults to 0.5."""
    _own_loss(vae_loss)
    cases = [(30, 32, None), (31, 32, 0.5), (32, 32, 0.0), (33, 8, 1.0), (34, 16, 2.0)]
    for seed, z_size, tolerance in cases:
        x, x_hat, mu, logvar = _loss_case(seed, 6, z_size)
        kwargs = {} if tolerance is None else {"kl_tolerance": tolerance}
        out = _call_loss(vae_loss, x, x_hat, mu, logvar, **kwargs)
        want = reference.vae_loss(x, x_hat, mu, logvar, **kwargs)
        got = out["kl"]
        t = 0.5 if tolerance is None else tolerance
        per_sample = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        call = f"vae_loss(..., {'kl_tolerance=' + str(tolerance) if tolerance is not None else 'default kl_tolerance'})"
        hint = ""
        if _close(got, torch.clamp(per_sample.mean(), min=t * z_size)):
            hint = " (you applied the floor after the batch mean; floor each sample's KL, then average)"
        elif _close(got, torch.clamp(-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()), min=t).sum(1).mean()):
            hint = " (you floored each latent dimension; World Models floors each sample's total KL)"
        elif _close(got, per_sample.mean()) and t > 0:
            hint = " (no floor applied)"
        elif _close(got, torch.clamp(per_sample, min=t * z_size).mean() / z_size):
            hint = " (sum the KL over the latent dimensions, do not average)"
        expect(_close(got, want["kl"]), f"{call}: kl is {float(got):.4f}, expected {float(want['kl']):.4f}{hint}")
        expect(
            _close(out["loss"], out["recon"] + out["kl"]),
            f"{call}: loss ({float(out['loss']):.4f}) should be recon + kl ({float(out['recon'] + out['kl']):.4f})",
        )


def w2_gradients(vae_loss: Callable) -> None:
    """Samples below the floor get no KL gradient; the others get the KL's gradient; x_hat's is 2 (x_hat - x) / B."""
    _own_loss(vae_loss)
    x, x_hat, mu, logvar = _loss_case(40, 6)
    leaves = [t.clone().requires_grad_(True) for t in (x_hat, mu, logvar)]
    with student_code("backpropagating vae_loss"):
        _call_loss(vae_loss, x, *leaves)["loss"].backward()
    ref_leaves = [t.clone().requires_grad_(True) for t in (x_hat, mu, logvar)]
    reference.vae_loss(x, *ref_leaves)["loss"].backward()
    names = ("x_hat", "mu", "logvar")
    for name, ours, theirs in zip(names, leaves, ref_leaves, strict=True):
        expect(ours.grad is not None, f"no gradient reached {name}: compute the loss with torch operations")
        expect(
            torch.allclose(ours.grad, theirs.grad, rtol=1e-4, atol=1e-6),
            f"the gradient of the loss with respect to {name} differs from the expected one"
            + (" (samples whose KL is below the floor must get no KL gradient)" if name != "x_hat" else ""),
        )


# ---------------------------------------------------------------- w3: the RNN dataset
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
    ref = _reference(32, 50)
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
