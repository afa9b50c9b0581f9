"""Hidden checks of homework 1 (``hw1_vae``), one function per graded test cell.

Activities (seed 004): a1 autoencoder (``MyVAE.__init__``), a2 VAE (``reparameterize``,
``encode``, ``forward``), a3 episode reset (``collect_frames``), a4 angle filter
(``collect_upright_frames``), a5 another environment (``collect_other_frames``).
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from autograder.checks import expect, require_student_code, seeded, student_code
from course_lib.data import sample_frames
from course_lib.envs import EpisodeRecorder, make_env, wide_cartpole
from course_lib.frames import is_blank, to_tensor
from course_lib.losses import autoencoder_loss, gaussian_kl
from course_lib.train import evaluate, mean_image_baseline

SMALL_DIMS = [8, 16, 32, 64, 128]
#: ``hidden_dims`` of ``MyVAE`` when none are given (seed 004).
DEFAULT_HIDDEN_DIMS = [32, 64, 128, 256, 512]
OTHER_ENVS = ("Pendulum-v1", "Acrobot-v1", "MountainCar-v0")


@cache
def _cartpole_frames() -> np.ndarray:
    return sample_frames("CartPole-v1", 96, seed=2024, progress=False)


def _build(model_cls: type, *args: Any) -> nn.Module:
    with student_code(f"MyVAE{args}"):
        return model_cls(*args)


def _params(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def encoder_parameter_count(in_channels: int, latent_dim: int, hidden_dims: list[int]) -> int:
    """Parameters of the encoder blocks and the three z layers of seed 004's ``MyVAE``.

    Each block is ``Conv2d(c_in, h, 3)`` (``9 c_in h + h``) and ``BatchNorm2d(h)`` (``2 h``); the
    encoder ends at 2x2, so each z layer is ``Linear(4 h_last, latent_dim)``.
    """
    count, c_in = 0, in_channels
    for h in hidden_dims:
        count += 9 * c_in * h + h + 2 * h
        c_in = h
    return count + 3 * (4 * hidden_dims[-1] * latent_dim + latent_dim)


# ---------------------------------------------------------------- activity 1: the autoencoder
def a1_structure(model_cls: type) -> None:
    """The encoder has one Conv2d(k3, s2, p1) + BatchNorm2d + LeakyReLU block per hidden dim, and
    ``z_simple``, ``z_mu``, ``z_var`` map ``hidden_dims[-1] * 4`` features to ``latent_dim``."""
    require_student_code(model_cls, "MyVAE")
    for args in [(3, 10), (3, 6, list(SMALL_DIMS)), (1, 4, [4, 8, 16, 32, 64])]:
        in_channels, latent_dim = args[0], args[1]
        dims = list(args[2]) if len(args) > 2 else list(DEFAULT_HIDDEN_DIMS)
        model = _build(model_cls, *args)
        encoder = getattr(model, "encoder", None)
        expect(isinstance(encoder, nn.Sequential), f"MyVAE{args}.encoder should be an nn.Sequential")
        expect(
            len(encoder) == len(dims),
            f"MyVAE{args}.encoder has {len(encoder)} blocks, expected one per hidden dim ({len(dims)})",
        )
        c_in = in_channels
        for i, (block, h_dim) in enumerate(zip(encoder, dims, strict=True)):
            layers = list(block.children()) if isinstance(block, nn.Sequential) else [block]
            kinds = [type(layer).__name__ for layer in layers]
            expect(
                kinds == ["Conv2d", "BatchNorm2d", "LeakyReLU"],
                f"encoder block {i} of MyVAE{args} is {kinds}, expected ['Conv2d', 'BatchNorm2d', 'LeakyReLU']",
            )
            conv, bn = layers[0], layers[1]
            got = (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
            want = (c_in, h_dim, (3, 3), (2, 2), (1, 1))
            expect(
                got == want,
                f"encoder block {i} of MyVAE{args}: Conv2d(in, out, kernel, stride, padding) = {got}, expected {want}",
            )
            expect(
                bn.num_features == h_dim,
                f"encoder block {i}: BatchNorm2d has {bn.num_features} features, expected {h_dim}",
            )
            c_in = h_dim
        for name in ("z_simple", "z_mu", "z_var"):
            layer = getattr(model, name, None)
            expect(isinstance(layer, nn.Linear), f"MyVAE{args}.{name} should be an nn.Linear")
            expect(
                (layer.in_features, layer.out_features) == (dims[-1] * 4, latent_dim),
                f"MyVAE{args}.{name} maps {layer.in_features} -> {layer.out_features}, expected "
                f"{dims[-1] * 4} -> {latent_dim} (the encoder ends at 2x2 with {dims[-1]} channels)",
            )
        expect(getattr(model, "latent_dim", None) == latent_dim, f"MyVAE{args}.latent_dim should be {latent_dim}")
        ours = _params(model.encoder, model.z_simple, model.z_mu, model.z_var)
        theirs = encoder_parameter_count(in_channels, latent_dim, dims)
        expect(ours == theirs, f"encoder and z layers of MyVAE{args} have {ours} parameters, expected {theirs}")
        with torch.no_grad(), seeded(0), student_code(f"the encoder of MyVAE{args}"):
            h = model.encoder(torch.rand(2, in_channels, 64, 64))
        expect(
            tuple(h.shape) == (2, dims[-1], 2, 2),
            f"the encoder maps (2, {in_channels}, 64, 64) to {tuple(h.shape)}, expected (2, {dims[-1]}, 2, 2)",
        )


def a1_output_range(model_cls: type) -> None:
    """The autoencoder returns ``[x_hat, x, mu, logvar]`` with ``x_hat`` of the input's shape in [0, 1]."""
    require_student_code(model_cls, "MyVAE")
    for args in [(3, 8, list(SMALL_DIMS)), (1, 4, [4, 8, 16, 32, 64])]:
        with seeded(1):
            model = _build(model_cls, *args)
            model.train()
            x = torch.rand(4, args[0], 64, 64)
            with torch.no_grad(), student_code(f"MyVAE{args}.forward"):
                out = model(x)
                x_hat = out[0]
                far = model.decode(torch.randn(4, args[1]) * 30.0)
        expect(tuple(x_hat.shape) == tuple(x.shape), f"x_hat has shape {tuple(x_hat.shape)}, expected {tuple(x.shape)}")
        for name, y in (("x_hat", x_hat), ("decode(30 * z)", far)):
            expect(
                float(y.min()) >= 0.0 and float(y.max()) <= 1.0,
                f"{name} has values in [{float(y.min()):.3f}, {float(y.max()):.3f}]; frames are in [0, 1], "
                "so the output layer must end in a sigmoid (a Tanh gives values in [-1, 1])",
            )


def a1_loss_drops(model_cls: type) -> None:
    """A few Adam steps as an autoencoder lower the reconstruction error on fixed CartPole frames."""
    require_student_code(model_cls, "MyVAE")
    x = to_tensor(_cartpole_frames()[:48])
    with seeded(2):
        model = _build(model_cls, 3, 8, list(SMALL_DIMS))
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        losses = []
        with student_code("training MyVAE as an autoencoder"):
            for _ in range(25):
                x_hat = model(x)[0]
                loss = autoencoder_loss(x, x_hat)["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    expect(
        math.isfinite(last) and last < 0.8 * first,
        f"the reconstruction loss went from {first:.1f} to {last:.1f} in 25 Adam steps; expected it to drop by at "
        "least 20%",
    )


def _check_images(prefix: str, n: int = 2) -> None:
    """The PNGs exist and are images of at least 64x64 (their content is graded elsewhere)."""
    for i in range(n):
        path = Path(f"{prefix}_{i}.png")
        expect(path.exists(), f"{path} was not saved (save {n} generated images as {prefix}_0.png, ...)")
        with student_code(f"opening {path}"):
            image = np.asarray(Image.open(path).convert("RGB"))
        height, width = image.shape[:2]
        expect(height >= 64 and width >= 64, f"{path} is {width}x{height} pixels, expected at least 64x64")


def a1_images() -> None:
    """Two images generated by the autoencoder were saved as PNGs."""
    _check_images("a1_generated")


# ---------------------------------------------------------------- activity 2: the VAE
def _small(model_cls: type, latent_dim: int = 4) -> nn.Module:
    return _build(model_cls, 3, latent_dim, list(SMALL_DIMS))


def a2_reparameterize(model_cls: type) -> None:
    """``reparameterize(mu, logvar)`` draws ``z ~ N(mu, exp(logvar))``: mean, std and randomness."""
    require_student_code(model_cls, "MyVAE")
    model = _small(model_cls)
    mu = torch.tensor([0.0, 1.5, -2.0, 3.0]).repeat(40000, 1)  # (40000, 4)
    std = torch.tensor([1.0, 0.5, 2.0, 0.1])
    logvar = torch.log(std**2).repeat(40000, 1)
    with seeded(3), torch.no_grad(), student_code("reparameterize(mu, logvar)"):
        z1 = model.reparameterize(mu, logvar)
        z2 = model.reparameterize(mu, logvar)
    expect(
        tuple(z1.shape) == tuple(mu.shape), f"z has shape {tuple(z1.shape)}, expected {tuple(mu.shape)} (same as mu)"
    )
    mean, spread = z1.mean(0), z1.std(0)
    expect(
        torch.allclose(mean, mu[0], atol=0.03 + 0.02 * float(std.max())),
        f"mean of z is {mean.tolist()}, expected mu = {mu[0].tolist()}",
    )
    expect(
        torch.allclose(spread, std, rtol=0.03),
        f"std of z is {[round(v, 3) for v in spread.tolist()]}, expected exp(logvar / 2) = {std.tolist()} "
        "(logvar is the log of the variance, not of the standard deviation)",
    )
    expect(not torch.equal(z1, z2), "two calls of reparameterize returned the same z; it must draw new noise each time")
    corr = torch.corrcoef((z1 - mu).T)
    off_diagonal = (corr - torch.eye(4)).abs().max()
    expect(
        off_diagonal < 0.03,
        "the noise of different latent dimensions is correlated; draw independent N(0, 1) noise per element "
        "(torch.randn_like)",
    )


def a2_gradients(model_cls: type) -> None:
    """Gradients flow through ``z`` to ``mu`` and ``logvar`` (the point of the trick)."""
    require_student_code(model_cls, "MyVAE")
    model = _small(model_cls)
    mu = torch.randn(256, 4, requires_grad=True)
    logvar = (0.3 * torch.randn(256, 4)).requires_grad_(True)
    with seeded(4), student_code("reparameterize(mu, logvar)"):
        z = model.reparameterize(mu, logvar)
        z.sum().backward()
    expect(
        mu.grad is not None and logvar.grad is not None,
        "no gradient reached mu or logvar: z must be computed from them with differentiable operations",
    )
    expect(torch.allclose(mu.grad, torch.ones_like(mu)), "dz/dmu should be 1 for z = mu + sigma * eps")
    expected = 0.5 * (z.detach() - mu.detach())  # dz/dlogvar = 0.5 * sigma * eps
    expect(
        torch.allclose(logvar.grad, expected, atol=1e-5),
        "dz/dlogvar should be 0.5 * exp(logvar / 2) * eps; check the formula of sigma",
    )


def a2_encode_forward(model_cls: type) -> None:
    """``encode`` returns ``[mu, logvar]`` from ``z_mu``/``z_var``; ``forward`` returns
    ``[x_hat, x, mu, logvar]`` with a sampled ``z``, so the KL term is computed on the right tensors."""
    require_student_code(model_cls, "MyVAE")
    model = _small(model_cls, latent_dim=5)
    model.eval()  # BatchNorm with running statistics: encode is deterministic
    x = to_tensor(_cartpole_frames()[:6])
    with torch.no_grad(), seeded(5), student_code("MyVAE.encode"):
        h = torch.flatten(model.encoder(x), start_dim=1)
        out = model.encode(x)
    expect(isinstance(out, (list, tuple)) and len(out) == 2, "encode(x) should return [mu, logvar]")
    mu, logvar = out
    expect(
        torch.allclose(mu, model.z_mu(h)) and torch.allclose(logvar, model.z_var(h)),
        "encode should compute mu with z_mu and logvar with z_var from the flattened encoder output",
    )
    with torch.no_grad(), seeded(6), student_code("MyVAE.forward"):
        out1 = model(x)
        out2 = model(x)
    expect(isinstance(out1, (list, tuple)) and len(out1) == 4, "forward(x) should return [x_hat, x, mu, logvar]")
    x_hat, x_out, mu_f, logvar_f = out1
    expect(
        tuple(x_hat.shape) == tuple(x.shape) and torch.equal(x_out, x),
        "forward should return the reconstruction first and the input x second",
    )
    expect(
        torch.allclose(mu_f, mu) and torch.allclose(logvar_f, logvar),
        "forward should return mu and logvar from encode, in that order",
    )
    expect(
        not torch.allclose(out2[0], x_hat),
        "forward should decode a sampled z (reparameterize), not mu: two calls gave the same x_hat",
    )
    kl = gaussian_kl(mu_f, logvar_f).sum(1)
    expect(bool((kl >= 0).all()), "the KL term computed from forward's mu and logvar is negative")
    # gradients of the VAE loss reach z_mu and z_var, not z_simple
    model.train()
    with seeded(7), student_code("backpropagating the VAE loss"):
        x_hat, _, mu_t, logvar_t = model(x)
        (autoencoder_loss(x, x_hat)["loss"] + gaussian_kl(mu_t, logvar_t).sum(1).mean()).backward()
    for name in ("z_mu", "z_var"):
        grad = getattr(model, name).weight.grad
        expect(
            grad is not None and float(grad.abs().sum()) > 0,
            f"no gradient reached {name}: the VAE's forward pass must use it",
        )
    expect(
        model.z_simple.weight.grad is None,
        "the VAE's forward pass should not use z_simple (that is the autoencoder's layer)",
    )


def a2_images() -> None:
    """Two images generated by the VAE were saved as PNGs."""
    _check_images("a2_generated")


# ---------------------------------------------------------------- activity 3: episode resets
def _run_collector(fn: Any, what: str, env: Any, *args: Any, **kwargs: Any) -> np.ndarray:
    with student_code(what):
        frames = fn(env, *args, **kwargs)
    frames = np.asarray(frames)
    n = args[0]
    expect(frames.shape == (n, 64, 64, 3), f"{what} returned shape {frames.shape}, expected ({n}, 64, 64, 3)")
    expect(frames.dtype == np.uint8, f"{what} returned dtype {frames.dtype}, expected uint8")
    blank = [i for i, f in enumerate(frames) if is_blank(f)]
    expect(
        not blank,
        f"{what} returned {len(blank)} blank frames (first at index {blank[:1]}); every frame must be a real render",
    )
    return frames


def _episodes_of(recorder: EpisodeRecorder, frames: np.ndarray, what: str) -> list[int]:
    """The episode each frame was rendered in, matching frames to renders in order.

    Identical 64x64 frames occur in several episodes (reset states look alike), so each frame is
    matched to the first matching render after the previous frame's.
    """
    episodes, last = [], -1
    for i, frame in enumerate(frames):
        candidates = recorder.render_indices(frame)
        expect(
            candidates,
            f"frame {i} of {what} is not a render of the environment passed in, preprocessed with "
            "preprocess_frame(frame, 'CartPole-v1')",
        )
        later = [c for c in candidates if c > last]
        last = later[0] if later else candidates[-1]
        episodes.append(recorder.renders[last].episode)
    return episodes


def a3_reset_pattern(collect_frames: Any) -> None:
    """Every episode contributes at most ``episode_length`` frames; the env is reset then, and
    on termination or truncation (never stepped after the episode ended)."""
    require_student_code(collect_frames, "collect_frames")
    for seed, n_frames, episode_length in [(11, 150, 20), (12, 60, 5)]:
        env = EpisodeRecorder(make_env("CartPole-v1", seed=seed))
        what = f"collect_frames(env, {n_frames}, episode_length={episode_length}, seed={seed})"
        frames = _run_collector(collect_frames, what, env, n_frames, episode_length=episode_length, seed=seed)
        episodes = _episodes_of(env, frames, what)
        counts = np.bincount(episodes)
        worst = int(counts.max())
        expect(
            worst <= episode_length,
            f"{what}: one episode contributed {worst} frames, expected at most {episode_length} (reset the "
            "environment and the frame counter)",
        )
        expect(
            env.steps_after_end() == 0,
            f"{what} stepped the environment {env.steps_after_end()} times after an episode had terminated; reset "
            "it on termination or truncation",
        )
        ended = {episode for (episode, _), end in zip(env.steps, env.ends, strict=True) if end}
        last = max(episodes)
        early = [e for e in set(episodes) if counts[e] < episode_length and e not in ended and e != last]
        expect(
            not early,
            f"{what}: {len(early)} episodes were reset after fewer than {episode_length} frames although they had "
            "not terminated; reset after episode_length frames, not earlier",
        )


def a3_frames(collect_frames: Any) -> None:
    """Frame count, dtype, no blank frames; the same seed gives the same frames, another seed others."""
    require_student_code(collect_frames, "collect_frames")
    a = _run_collector(collect_frames, "collect_frames(env, 40, seed=5)", make_env("CartPole-v1"), 40, seed=5)
    b = _run_collector(collect_frames, "collect_frames(env, 40, seed=5)", make_env("CartPole-v1"), 40, seed=5)
    c = _run_collector(collect_frames, "collect_frames(env, 40, seed=6)", make_env("CartPole-v1"), 40, seed=6)
    expect(
        np.array_equal(a, b),
        "collect_frames with the same seed returned different frames: seed env.reset and env.action_space",
    )
    expect(not np.array_equal(a, c), "collect_frames with different seeds returned the same frames")
    expect(len({f.tobytes() for f in a}) > 20, "collect_frames returned mostly identical frames")


# ---------------------------------------------------------------- activity 4: the angle filter
def a4_angles(collect_upright_frames: Any) -> None:
    """Every kept frame shows a state with ``abs(theta) <= max_angle`` (checked on the rendered state)."""
    require_student_code(collect_upright_frames, "collect_upright_frames")
    for seed, n_frames, max_angle in [(21, 120, 0.3), (22, 60, 0.1)]:
        env = EpisodeRecorder(wide_cartpole(seed=seed))
        what = f"collect_upright_frames(env, {n_frames}, max_angle={max_angle}, seed={seed})"
        frames = _run_collector(collect_upright_frames, what, env, n_frames, max_angle=max_angle, seed=seed)
        seen = np.abs([s[2] for s in env.states]) if env.states else np.zeros(0)
        expect(
            (seen > max_angle).any(),
            f"{what} never met a state beyond max_angle; it should run the episodes of the environment it is given",
        )
        for i, frame in enumerate(frames):
            renders = env.renders_of(frame)
            expect(
                renders,
                f"frame {i} of {what} is not a render of the environment passed in, preprocessed with "
                "preprocess_frame(frame, 'CartPole-v1')",
            )
            theta = min(abs(float(r.state[2])) for r in renders)
            expect(
                theta <= max_angle + 1e-9,
                f"frame {i} of {what} shows a pole angle of {theta:.3f} rad, outside [-{max_angle}, {max_angle}] "
                "(filter on the state you render)",
            )


def a4_count(collect_upright_frames: Any) -> None:
    """Exactly ``n_frames`` kept frames, none blank, and the same seed gives the same frames."""
    require_student_code(collect_upright_frames, "collect_upright_frames")
    a = _run_collector(collect_upright_frames, "collect_upright_frames(env, 50, seed=3)", wide_cartpole(), 50, seed=3)
    b = _run_collector(collect_upright_frames, "collect_upright_frames(env, 50, seed=3)", wide_cartpole(), 50, seed=3)
    expect(np.array_equal(a, b), "collect_upright_frames with the same seed returned different frames")


# ---------------------------------------------------------------- activity 5: another environment
def _colour_profile(frames: np.ndarray) -> np.ndarray:
    x = frames.reshape(-1, 3).astype(np.float64)
    ink = x[(x < 235).any(axis=1)]  # pixels that are not the white background
    mean = ink.mean(axis=0) if len(ink) else np.full(3, 255.0)
    return np.concatenate([mean / 255.0, [len(ink) / len(x) * 4]])


@cache
def _profiles() -> dict[str, np.ndarray]:
    return {
        env_id: _colour_profile(sample_frames(env_id, 48, seed=99, progress=False))
        for env_id in ("CartPole-v1", *OTHER_ENVS)
    }


def _nearest_env(frames: np.ndarray) -> str:
    profile = _colour_profile(frames)
    return min(_profiles(), key=lambda env_id: float(np.sum((_profiles()[env_id] - profile) ** 2)))


def a5_frames(collect_other_frames: Any, env_id: str) -> None:
    """The frames come from ``ENV_ID`` (one of Pendulum-v1, Acrobot-v1, MountainCar-v0)."""
    require_student_code(collect_other_frames, "collect_other_frames")
    expect(env_id in OTHER_ENVS, f"ENV_ID is {env_id!r}; choose one of {OTHER_ENVS}")
    with student_code(f"collect_other_frames({env_id!r}, 64, seed=0)"):
        frames = np.asarray(collect_other_frames(env_id, 64, seed=0))
    expect(
        frames.shape == (64, 64, 64, 3) and frames.dtype == np.uint8,
        f"collect_other_frames returned {frames.dtype} {frames.shape}, expected uint8 (64, 64, 64, 3)",
    )
    expect(not any(is_blank(f) for f in frames), "collect_other_frames returned blank frames")
    expect(len({f.tobytes() for f in frames}) > 16, "collect_other_frames returned mostly identical frames")
    nearest = _nearest_env(frames)
    expect(nearest == env_id, f"these frames look like {nearest}, not {env_id}")


def a5_beats_baseline(model: nn.Module, train_frames: np.ndarray, val_frames: np.ndarray, env_id: str) -> None:
    """On held-out frames of ``ENV_ID``, the trained VAE reconstructs better than the mean image."""
    train_frames, val_frames = np.asarray(train_frames), np.asarray(val_frames)
    expect(
        len(val_frames) >= 32 and len(train_frames) >= len(val_frames),
        "use at least 32 validation frames, and more training frames than validation frames",
    )
    overlap = {f.tobytes() for f in train_frames} & {f.tobytes() for f in val_frames}
    expect(
        len(overlap) <= 0.1 * len(val_frames),
        f"{len(overlap)} validation frames also appear in the training frames; validation frames must be held out",
    )
    expect(_nearest_env(val_frames) == env_id, f"the validation frames do not look like {env_id}")
    with student_code("evaluating the trained model"):
        mse = evaluate(model, val_frames)["mse"]
    baseline = mean_image_baseline(train_frames, val_frames)
    expect(
        mse < baseline,
        f"validation MSE {mse:.5f} is not below the mean-image baseline {baseline:.5f}; train longer or lower beta",
    )


def a5_images() -> None:
    """Two images generated by the VAE trained on the other environment were saved as PNGs."""
    _check_images("a5_generated")
