"""Judging a ``reparameterize(mu, logvar)`` from its samples and gradients (homeworks 1 and 2).

Kingma & Welling 2014 ("Auto-Encoding Variational Bayes"): ``z = mu + sigma * eps``, ``sigma =
exp(logvar / 2)``, ``eps ~ N(0, I)``. The judge checks the statistics of ``eps = (z - mu) / sigma``
(thresholds six standard errors wide), the gradients ``dz/dmu = 1`` and ``dz/dlogvar = 0.5 * sigma *
eps``, and that ``eps`` is the noise generators seeded with the grading run's seed draw
(:func:`generator_draws`), so statistics met by noise of another origin do not pass.
"""

from __future__ import annotations

import numpy as np
import torch

from autograder.checks import Inputs, Record, expect, seeded

#: Samples per dimension drawn by the statistics probe.
SAMPLES = 40_000


def sample_inputs(rng: np.random.Generator) -> Inputs:
    """Means and standard deviations of 4 latent dimensions (one small, one large, one near 1)."""
    std = rng.permutation([rng.uniform(0.08, 0.3), rng.uniform(0.4, 0.7), rng.uniform(1.6, 3.0), rng.uniform(0.9, 1.1)])
    return {"mu": rng.normal(0.0, 2.0, 4).tolist(), "std": std.tolist(), "n": SAMPLES}


def mu_logvar(inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu`` and ``logvar``, ``float32 (n, 4)``, of :func:`sample_inputs`."""
    n = inputs["n"]
    mu = torch.tensor(inputs["mu"], dtype=torch.float32).repeat(n, 1)  # (n, 4)
    logvar = torch.log(torch.tensor(inputs["std"], dtype=torch.float32) ** 2).repeat(n, 1)  # (n, 4)
    return mu, logvar


#: What the messages tell students to draw eps with.
DRAW_EPS = "draw eps with torch.randn_like(mu) (the grader seeds the generator and recomputes your noise)"


def generator_draws(seed: int, shape: tuple[int, ...], calls: int = 1) -> list[np.ndarray]:
    """The standard normal noise that code drawing ``calls`` arrays of ``shape`` gets right after
    :func:`~autograder.checks.seeded` ``(seed)``: one ``float64 (calls, *shape)`` array per source.

    The sources: PyTorch's float32 generator (``torch.randn_like``, ``torch.randn``, ``normal_``,
    ``torch.distributions.Normal.rsample`` all draw the same values), PyTorch in float64, and NumPy's
    global generator (``np.random.randn``, ``normal``, ``standard_normal``).
    """
    draws = []
    for dtype in (torch.float32, torch.float64):
        with seeded(seed):
            draws.append(np.stack([torch.randn(shape, dtype=dtype).double().numpy() for _ in range(calls)]))
    numpy = np.random.RandomState(seed % 2**32)
    draws.append(np.stack([numpy.standard_normal(shape) for _ in range(calls)]))
    return draws


def noise_of(z: object, mu: object, logvar: object) -> tuple[np.ndarray, np.ndarray]:
    """``eps = (z - mu) / exp(logvar / 2)`` in float64, and how far float32 rounding of ``z`` (and of
    sigma) can have moved each value: the tolerance of comparing it with a generator's draw."""
    z, mu, logvar = (np.asarray(v, dtype=np.float64) for v in (z, mu, logvar))
    sigma = np.exp(0.5 * logvar)
    eps = (z - mu) / sigma
    rounding = 8 * np.finfo(np.float32).eps * (np.abs(z) + np.abs(mu) + np.abs(eps) * sigma) / sigma
    return eps, rounding + 1e-6


def noise_of_calls(samples: list[object], mu: object, logvar: object) -> tuple[np.ndarray, np.ndarray]:
    """:func:`noise_of` for the samples of several calls with the same ``mu`` and ``logvar``, stacked
    (``(calls, *shape)`` each)."""
    eps, tolerance = zip(*(noise_of(z, mu, logvar) for z in samples), strict=True)
    return np.stack(eps), np.stack(tolerance)


def expect_drawn_noise(eps: np.ndarray, tolerance: np.ndarray, seed: int, what: str) -> None:
    """``eps`` (``(calls, *shape)``, recomputed from samples by :func:`noise_of`) is, in order, what
    one of the seeded generators draws for ``calls`` calls of that shape (:func:`generator_draws`).

    Raises:
        CheckFailed: naming ``what`` and saying how to draw the noise.
    """
    drawn = generator_draws(seed, eps.shape[1:], eps.shape[0])
    expect(
        any((np.abs(eps - d) <= tolerance).all() for d in drawn),
        f"{what} is not mu + exp(logvar / 2) * eps for the noise the random generator draws: {DRAW_EPS}",
    )


def noise_is_drawn(eps: np.ndarray, tolerance: np.ndarray, seed: int, count: int) -> bool:
    """Whether every value of ``eps`` is one of the first ``count`` standard normal values a seeded
    generator draws (:func:`generator_draws`), in any layout: noise of shape ``(B, 1)`` broadcast
    over the latent dimensions, or drawn transposed, is still the generator's.

    ``count`` is kept small (the number of values a correct call draws), so that noise of another
    origin matches by chance with a vanishing probability.
    """
    values, tolerance = np.ravel(eps), np.ravel(np.broadcast_to(tolerance, np.shape(eps)))
    if not np.isfinite(values).all():
        return False
    for drawn in generator_draws(seed, (count,)):
        pool = np.sort(np.ravel(drawn))
        at = np.clip(np.searchsorted(pool, values), 1, len(pool) - 1)
        nearest = np.minimum(np.abs(pool[at] - values), np.abs(pool[at - 1] - values))
        if (nearest <= tolerance).all():
            return True
    return False


def expect_samples(inputs: Inputs, record: Record, first: str = "z1", second: str = "z2") -> None:
    """``z`` has mu's shape, mean mu, spread exp(logvar / 2), independent Gaussian noise, two calls
    differ, and the noise is what the generators seeded with ``inputs["seed"]`` draw.

    Raises:
        CheckFailed: saying what is wrong, without the drawn means and deviations.
    """
    mu, logvar = (t.double().numpy() for t in mu_logvar(inputs))
    z1, z2 = record.array(first).astype(np.float64), record.array(second).astype(np.float64)
    expect(z1.shape == mu.shape and z2.shape == mu.shape, f"z has shape {z1.shape}, expected {mu.shape} (same as mu)")
    std = np.exp(0.5 * logvar[0])
    eps = (z1 - mu) / std  # (n, 4): N(0, 1) if z is right
    expect(np.isfinite(eps).all(), "z holds NaN or infinite values")
    expect(np.abs(eps.mean(axis=0)).max() < 0.03, "the mean of z is not mu: z = mu + sigma * eps with eps of mean 0")
    ratio = eps.std(axis=0)
    if not np.allclose(ratio, 1.0, atol=0.03):
        logsigma = np.allclose(ratio, std, rtol=0.05)  # a spread of exp(logvar) = sigma^2 instead of sigma
        off = float(np.max(np.maximum(ratio, 1 / np.maximum(ratio, 1e-12))))
        expect(
            False,
            f"the standard deviation of z is not exp(logvar / 2): it is off by up to a factor {off:.2f}"
            + (" (logvar is the log of the variance, so sigma = exp(logvar / 2), not exp(logvar))" if logsigma else ""),
        )
    corr = np.corrcoef(eps.T)
    expect(
        np.abs(corr - np.eye(4)).max() < 0.03,
        "the noise of different latent dimensions is correlated; draw independent N(0, 1) noise per element "
        "(torch.randn_like(mu))",
    )
    kurtosis = ((eps - eps.mean(0)) ** 4).mean(0) / eps.var(0) ** 2
    expect(
        np.abs(kurtosis - 3.0).max() < 0.3,
        "the noise is not Gaussian (its tails are wrong); draw eps with torch.randn_like, not torch.rand_like",
    )
    expect(not np.array_equal(z1, z2), "two calls of reparameterize gave the same z; it must draw new noise each time")
    expect_drawn_noise(*noise_of_calls([z1, z2], mu, logvar), inputs["seed"], "reparameterize(mu, logvar)")


def gradient_leaves(seed: int, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu`` and ``logvar``, ``float32 (n, 4)``, whose gradients through ``z`` are probed."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(n, 4, generator=g), 0.3 * torch.randn(n, 4, generator=g)


def gradient_values(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, object]:
    """What the probe records after ``z.sum().backward()``: ``z`` and the leaves' gradients."""
    return {
        "z": z.detach().float(),
        "has_grad_mu": mu.grad is not None,
        "has_grad_logvar": logvar.grad is not None,
        "grad_mu": mu.grad if mu.grad is not None else torch.zeros_like(mu),
        "grad_logvar": logvar.grad if logvar.grad is not None else torch.zeros_like(logvar),
    }


def expect_gradients(seed: int, record: Record, noise_seed: int | None = None) -> None:
    """``dz/dmu = 1`` and ``dz/dlogvar = 0.5 * exp(logvar / 2) * eps = 0.5 * (z - mu)``, where ``eps``,
    recomputed from ``z``, is noise the generators seeded with ``noise_seed`` (default ``seed``, the
    seed of ``mu`` and ``logvar``) draw (:func:`noise_is_drawn`): the judge derives the gradients from
    ``z`` and ties ``z`` to the seed.

    The ``has_grad_*`` flags only choose the message of a failure; passing rests on the arrays.

    Raises:
        CheckFailed: naming the leaf whose gradient is missing or wrong.
    """
    mu, logvar = gradient_leaves(seed)
    z = record.tensor("z")
    expect(tuple(z.shape) == tuple(mu.shape), f"z has shape {tuple(z.shape)}, expected {tuple(mu.shape)}")
    for leaf in ("mu", "logvar"):
        expect(
            record.flag(f"has_grad_{leaf}"),
            f"no gradient reached {leaf}: z must be computed from mu and logvar with differentiable operations",
        )
    expect(torch.allclose(record.tensor("grad_mu"), torch.ones_like(mu)), "dz/dmu should be 1 for z = mu + sigma * eps")
    expect(
        torch.allclose(record.tensor("grad_logvar"), 0.5 * (z - mu), rtol=1e-4, atol=1e-5),
        "dz/dlogvar should be 0.5 * exp(logvar / 2) * eps; check the formula of sigma",
    )
    eps, tolerance = noise_of(z, mu, logvar)  # (n, 4)
    expect(
        noise_is_drawn(eps, tolerance, seed if noise_seed is None else noise_seed, mu.numel()),
        f"the noise of reparameterize(mu, logvar) is not drawn by the random generator: {DRAW_EPS}",
    )
