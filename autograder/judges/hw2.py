"""Judges of homework 2: the recorded outputs of the student's ``ConvVAE`` and ``vae_loss`` against
the reference (:mod:`course_lib.solutions`), one function per judged check of
:mod:`autograder.checks.hw2`, of the same name. Each takes the record's arrays and raises
:class:`~autograder.checks.CheckFailed` with the message the student sees.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from autograder.checks import expect
from autograder.checks import hw2 as probe
from course_lib.solutions import hw2 as reference
from course_lib.solutions.conv_vae import ConvVAE as ReferenceVAE


def _tensor(values: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> torch.Tensor:
    value = torch.from_numpy(values[name])
    expect(tuple(value.shape) == shape, f"the recorded {name} has shape {tuple(value.shape)}, expected {shape}")
    return value


@torch.no_grad()
def _assign(ref: nn.Module, z_size: int, weights: dict, groups: dict, combo: tuple, shift: bool) -> None:
    """Copy ``weights`` (:func:`~autograder.checks.hw2.layer_weights`) into ``ref``, group ``k``'s layers
    in order ``combo[k]``."""
    for (sig, layers), order in zip(groups.items(), combo, strict=True):
        for layer, k in zip(layers, order, strict=True):
            for param, value in zip(layer.parameters(recurse=False), weights[sig][k], strict=True):
                param.copy_(value)
    if shift:
        probe.shift_latent_biases(ref, z_size)


def _with_matching_weights(
    z_size: int, seed: int, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, shift: bool = False
) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The reference with :func:`~autograder.checks.hw2.layer_weights`, and its ``encode(x)``.

    Layers of the same signature (``fc_mu`` and ``fc_logvar``) may have got the weights in either
    order in the student's model: the order whose ``encode(x)`` agrees with the student's ``mu``
    and ``logvar`` is kept (the first one if none does, and the comparison then fails).
    ``shift`` applies :func:`~autograder.checks.hw2.shift_latent_biases`, as the probe did.

    Returns:
        ``(reference, mu, logvar)``, ``mu`` and ``logvar`` of shape ``(B, z_size)``.
    """
    ref = ReferenceVAE(z_size=z_size).eval()
    layers = probe.parameterised_layers(ref)
    expect(
        sorted(probe.describe(probe.signature(m)) for m in layers)
        == sorted(probe.describe(s) for s in probe.expected_signatures(z_size)),
        "the reference does not have the expected layers (a grader bug; tell the instructor)",
    )
    groups: dict[tuple, list[nn.Module]] = {}
    for layer in layers:
        groups.setdefault(probe.signature(layer), []).append(layer)
    weights = probe.layer_weights(z_size, seed)
    first = None
    for combo in itertools.product(*(itertools.permutations(range(len(g))) for g in groups.values())):
        _assign(ref, z_size, weights, groups, combo, shift)
        with torch.no_grad():
            ref_mu, ref_logvar = ref.encode(x)  # (B, z_size) each
        if torch.allclose(mu, ref_mu, atol=1e-5) and torch.allclose(logvar, ref_logvar, atol=1e-5):
            return ref, ref_mu, ref_logvar
        first = first or (combo, ref_mu, ref_logvar)
    combo, ref_mu, ref_logvar = first
    _assign(ref, z_size, weights, groups, combo, shift)
    return ref, ref_mu, ref_logvar


def w1_encode_decode(values: dict[str, np.ndarray]) -> None:
    """With the same weights, ``encode`` and ``decode`` give the reference's outputs."""
    for z_size, seed in probe.ENCODE_DECODE_CASES:
        x, z = probe.encode_decode_inputs(z_size, seed)
        mu = _tensor(values, f"mu_{z_size}", (5, z_size))
        logvar = _tensor(values, f"logvar_{z_size}", (5, z_size))
        x_hat = _tensor(values, f"x_hat_{z_size}", (5, 3, 64, 64))
        ref, ref_mu, ref_logvar = _with_matching_weights(z_size, seed, x, mu, logvar)
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
        with torch.no_grad():
            ref_x_hat = ref.decode(z)
        expect(
            torch.allclose(x_hat, ref_x_hat, atol=1e-5),
            "with the reference weights, decode(z) differs from the reference (max error "
            f"{float((x_hat - ref_x_hat).abs().max()):.3g}); check: no activation after the dense layer, reshape "
            "to (B, 1024, 1, 1), ReLU after each transposed convolution but the last, a sigmoid at the end",
        )


def w1_sampling(values: dict[str, np.ndarray]) -> None:
    """``forward`` returns ``encode(x)``'s mu and logvar and decodes ``z = mu + exp(logvar / 2) * eps``."""
    x = probe.sampling_inputs()
    mu = _tensor(values, "mu", (128, 32))
    logvar = _tensor(values, "logvar", (128, 32))
    z = _tensor(values, "z", (128, 32))
    n = probe.SAMPLING_RECORDED
    x_hat = _tensor(values, "x_hat", (n, 3, 64, 64))
    ref, ref_mu, ref_logvar = _with_matching_weights(32, probe.SAMPLING_SEED, x, mu, logvar, shift=True)
    expect(
        torch.allclose(mu, ref_mu, atol=1e-5) and torch.allclose(logvar, ref_logvar, atol=1e-5),
        "forward(x) should return encode(x)'s mu and logvar as its second and third outputs",
    )
    eps = (z - ref_mu) / torch.exp(0.5 * ref_logvar)
    expect(
        abs(float(eps.mean())) < 0.05 and abs(float(eps.std()) - 1.0) < 0.05,
        f"in forward, (z - mu) / exp(logvar / 2) has mean {float(eps.mean()):.3f} and std {float(eps.std()):.3f}, "
        "expected 0 and 1: sample z = mu + exp(logvar / 2) * eps",
    )
    with torch.no_grad():
        expected = ref.decode(z[:n])
    expect(
        torch.allclose(x_hat, expected, atol=1e-5),
        "forward's x_hat should be decode(z) of the sampled z, the first output",
    )


def w2_recon(values: dict[str, np.ndarray]) -> None:
    """``recon`` is the squared error summed over channels and pixels, averaged over the batch."""
    for seed, batch in probe.RECON_CASES:
        x, x_hat, mu, logvar = probe.loss_case(seed, batch)
        got = _tensor(values, f"recon_{seed}", ())
        want = reference.vae_loss(x, x_hat, mu, logvar)["recon"]
        hint = ""
        if probe.close(got * x[0].numel(), want):
            hint = " (you averaged over the pixels; World Models sums over them)"
        elif probe.close(got, want * batch):
            hint = " (you summed over the batch; average over it)"
        elif probe.close(got, want * 2) or probe.close(got * 2, want):
            hint = " (a factor 2 off: no 1/2 in front of the squared error here)"
        expect(probe.close(got, want), f"recon is {float(got):.4f}, expected {float(want):.4f}{hint}")


def w2_kl_floor(values: dict[str, np.ndarray]) -> None:
    """``kl`` is summed over ``z``, floored per sample at ``kl_tolerance * z_size``, then averaged."""
    for seed, z_size, tolerance in probe.KL_CASES:
        x, x_hat, mu, logvar = probe.loss_case(seed, 6, z_size)
        kwargs = {} if tolerance is None else {"kl_tolerance": tolerance}
        want = reference.vae_loss(x, x_hat, mu, logvar, **kwargs)["kl"]
        got = _tensor(values, f"kl_{seed}", ())
        t = 0.5 if tolerance is None else tolerance
        per_latent = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())  # (B, z_size)
        per_sample = per_latent.sum(1)  # (B,)
        call = f"vae_loss(..., {'kl_tolerance=' + str(tolerance) if tolerance is not None else 'default kl_tolerance'})"
        hint = ""
        if probe.close(got, torch.clamp(per_sample.mean(), min=t * z_size)):
            hint = " (you applied the floor after the batch mean; floor each sample's KL, then average)"
        elif probe.close(got, torch.clamp(per_latent, min=t).sum(1).mean()):
            hint = " (you floored each latent dimension; World Models floors each sample's total KL)"
        elif probe.close(got, per_sample.mean()) and t > 0:
            hint = " (no floor applied)"
        elif probe.close(got, torch.clamp(per_sample, min=t * z_size).mean() / z_size):
            hint = " (sum the KL over the latent dimensions, do not average)"
        expect(probe.close(got, want), f"{call}: kl is {float(got):.4f}, expected {float(want):.4f}{hint}")


def w2_gradients(values: dict[str, np.ndarray]) -> None:
    """Samples below the floor get no KL gradient; the others get the KL's gradient; x_hat's is 2 (x_hat - x) / B."""
    x, x_hat, mu, logvar = probe.loss_case(probe.GRADIENT_SEED, 6)
    ref_leaves = [t.clone().requires_grad_(True) for t in (x_hat, mu, logvar)]
    reference.vae_loss(x, *ref_leaves)["loss"].backward()
    for name, theirs in zip(("x_hat", "mu", "logvar"), ref_leaves, strict=True):
        ours = _tensor(values, name, tuple(theirs.shape))
        expect(
            torch.allclose(ours, theirs.grad, rtol=1e-4, atol=1e-6),
            f"the gradient of the loss with respect to {name} differs from the expected one"
            + (" (samples whose KL is below the floor must get no KL gradient)" if name != "x_hat" else ""),
        )
