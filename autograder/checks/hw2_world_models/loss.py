"""w2, ``vae_loss``: the reconstruction term, the KL floor (``kl_tolerance``) and the gradients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from autograder.checks import (
    Inputs,
    Record,
    check,
    expect,
    require_student_code,
    student_code,
)
from autograder.checks.hw2_world_models.matching import rng_of, sub_seed
from course_lib import losses as library_losses


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
    rng = rng_of(seed)
    return {"cases": [(sub_seed(rng), 6), (sub_seed(rng), 3)], "doubled": sub_seed(rng)}


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
    rng = rng_of(seed)
    return {"cases": [(sub_seed(rng), z_size, tolerance) for z_size, tolerance in KL_SETTINGS]}


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
    return {"seed": sub_seed(rng_of(seed))}


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
