"""Hidden checks of homework 1 (``hw1_vae``), one per graded test cell, named by its ``grade_id``.

Activities (the CMPE 260 homework): a1 the autoencoder (``MyVAE.__init__``), a2 the VAE
(``reparameterize``, ``encode``, ``forward``), a3 episode resets (``collect_frames``), a4 the angle
filter (``collect_upright_frames``), a5 another environment (``collect_other_frames``).

Each check's probe runs the student's code in the kernel and returns raw outputs; its judge decides
in the grader's process (see :mod:`autograder.checks`). What the judges compare with:

- the encoder and the latent layers: the reference ``MyVAE`` given the same weights, drawn by the
  judge's seed and loaded layer by layer (``z_simple``, ``z_mu``, ``z_var`` by the names the
  notebook gives them);
- ``reparameterize``: the statistics and the gradients of ``z = mu + exp(logvar / 2) * eps``;
- the collectors: a replay of the environment's log in the grader (:mod:`autograder.checks.episodes`);
- activity 5's model: the judge rebuilds the notebook's ``SmallVAE`` from the recorded weights and
  measures it on frames the collector made for seeds drawn at grading time.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

from autograder.checks import (
    Inputs,
    Record,
    check,
    expect,
    layer_inputs,
    require_student_code,
    sampling,
    seeded,
    student_code,
)
from autograder.checks.episodes import collector_values, expect_frames, replay
from course_lib.envs import EpisodeRecorder, make_env, wide_cartpole
from course_lib.frames import FRAME_SIZE

#: ``hidden_dims`` of ``MyVAE`` when none are given (the CMPE 260 template).
DEFAULT_HIDDEN_DIMS = [32, 64, 128, 256, 512]
SMALL_DIMS = [8, 16, 32, 64, 128]
TINY_DIMS = [4, 8, 16, 32, 64]
OTHER_ENVS = ("Pendulum-v1", "Acrobot-v1", "MountainCar-v0")
#: Added to the bias of ``z_var`` where ``forward``'s sampling is checked, so that sigma is far from 1.
LOGVAR_SHIFT = -1.5


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _torch(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _sub(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _build(model_cls: type, args: tuple) -> nn.Module:
    with student_code(f"MyVAE{args}"):
        model = model_cls(*args)
    expect(isinstance(model, nn.Module), f"MyVAE{args} should be an nn.Module")
    return model


def _tensor_out(value: Any, what: str) -> torch.Tensor:
    expect(torch.is_tensor(value), f"{what} should be a tensor, got {type(value).__name__}")
    return value.detach().float()


def _dims(args: tuple) -> list[int]:
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
    g = _torch(seed)
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
    g, bound = _torch(seed), 1.0 / math.sqrt(features)
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


def describe(model: nn.Module) -> dict[str, Any]:
    """What activity 1 specifies of a ``MyVAE``: encoder blocks, z layers, ``latent_dim``, parameters."""
    encoder = getattr(model, "encoder", None)
    blocks = []
    if isinstance(encoder, nn.Sequential):
        for block in encoder:
            layers = list(block.children()) if isinstance(block, nn.Sequential) else [block]
            conv, bn = [*layers, None, None][:2]
            blocks.append(
                {
                    "kinds": [type(layer).__name__ for layer in layers],
                    "conv": [
                        conv.in_channels,
                        conv.out_channels,
                        list(conv.kernel_size),
                        list(conv.stride),
                        list(conv.padding),
                    ]
                    if isinstance(conv, nn.Conv2d)
                    else None,
                    "bn": bn.num_features if isinstance(bn, nn.BatchNorm2d) else None,
                }
            )
    z = {}
    for name in ("z_simple", "z_mu", "z_var"):
        layer = getattr(model, name, None)
        z[name] = [layer.in_features, layer.out_features] if isinstance(layer, nn.Linear) else None
    parts = [getattr(model, name, None) for name in ("encoder", "z_simple", "z_mu", "z_var")]
    params = sum(p.numel() for m in parts if isinstance(m, nn.Module) for p in m.parameters())
    latent_dim = getattr(model, "latent_dim", None)
    return {
        "encoder": type(encoder).__name__ if encoder is not None else None,
        "blocks": blocks,
        "z": z,
        "latent_dim": latent_dim if isinstance(latent_dim, int) else None,
        "params": params,
    }


# ---------------------------------------------------------------- activity 1: the autoencoder
def structure_inputs(seed: int) -> Inputs:
    """Three ``MyVAE`` argument tuples (latent sizes drawn), and seeds for weights and inputs."""
    rng = _rng(seed)
    cases = [
        (3, int(rng.integers(6, 13))),
        (3, int(rng.integers(4, 9)), list(SMALL_DIMS)),
        (1, int(rng.integers(3, 6)), list(TINY_DIMS)),
    ]
    return {"cases": cases, "seeds": [_sub(rng) for _ in cases]}


def _structure_x(args: tuple, seed: int) -> torch.Tensor:
    return torch.rand(2, args[0], FRAME_SIZE, FRAME_SIZE, generator=_torch(seed + 1))  # (2, C, 64, 64)


@check("a1_structure", inputs=structure_inputs)
def a1_structure(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """The encoder has one Conv2d(k3, s2, p1) + BatchNorm2d + LeakyReLU block per hidden dim, and
    ``z_simple``, ``z_mu``, ``z_var`` map ``hidden_dims[-1] * 4`` features to ``latent_dim``."""
    require_student_code(model_cls, "MyVAE")
    values: dict[str, Any] = {}
    for k, (args, seed) in enumerate(zip(inputs["cases"], inputs["seeds"], strict=True)):
        args = tuple(args)
        model = _build(model_cls, args)
        values[f"structure_{k}"] = json.dumps(describe(model))
        model.eval()  # batch norm with the running statistics loaded below
        loaded = load_encoder(model, encoder_weights(args[0], _dims(args), seed))
        values[f"loaded_{k}"] = loaded
        h = torch.zeros(0)
        if loaded:
            with torch.no_grad(), student_code(f"the encoder of MyVAE{args}"):
                h = _tensor_out(model.encoder(_structure_x(args, seed)), "encoder(x)")
        values[f"h_{k}"] = h
    return values


@a1_structure.judge
def _a1_structure(inputs: Inputs, record: Record) -> None:
    from course_lib.solutions.hw1 import MyVAE

    for k, (args, seed) in enumerate(zip(inputs["cases"], inputs["seeds"], strict=True)):
        args = tuple(args)
        in_channels, latent_dim, dims = args[0], args[1], _dims(args)
        call = f"MyVAE({', '.join(map(str, args[:2]))}{', hidden_dims=' + str(dims) if len(args) > 2 else ''})"
        got = record.json(f"structure_{k}")
        expect(got.get("encoder") == "Sequential", f"{call}.encoder should be an nn.Sequential")
        blocks = got.get("blocks") or []
        expect(
            len(blocks) == len(dims),
            f"{call}.encoder has {len(blocks)} blocks, expected one per hidden dim ({len(dims)})",
        )
        c_in = in_channels
        for i, (block, h_dim) in enumerate(zip(blocks, dims, strict=True)):
            kinds = block.get("kinds")
            expect(
                kinds == ["Conv2d", "BatchNorm2d", "LeakyReLU"],
                f"encoder block {i} of {call} is {kinds}, expected ['Conv2d', 'BatchNorm2d', 'LeakyReLU']",
            )
            want = [c_in, h_dim, [3, 3], [2, 2], [1, 1]]
            expect(
                block.get("conv") == want,
                f"encoder block {i} of {call}: Conv2d(in, out, kernel, stride, padding) = {block.get('conv')}, "
                f"expected {want}",
            )
            expect(
                block.get("bn") == h_dim,
                f"encoder block {i}: BatchNorm2d has {block.get('bn')} features, expected {h_dim}",
            )
            c_in = h_dim
        for name in ("z_simple", "z_mu", "z_var"):
            shape = got.get("z", {}).get(name)
            expect(shape is not None, f"{call}.{name} should be an nn.Linear")
            expect(
                shape == [dims[-1] * 4, latent_dim],
                f"{call}.{name} maps {shape[0]} -> {shape[1]}, expected {dims[-1] * 4} -> {latent_dim} (the encoder "
                f"ends at 2x2 with {dims[-1]} channels)",
            )
        expect(got.get("latent_dim") == latent_dim, f"{call}.latent_dim should be {latent_dim}")
        theirs = encoder_parameter_count(in_channels, latent_dim, dims)
        expect(
            got.get("params") == theirs,
            f"the encoder and z layers of {call} have {got.get('params')} parameters, expected {theirs}",
        )
        expect(record.flag(f"loaded_{k}"), f"the encoder blocks of {call} do not hold a Conv2d and a BatchNorm2d each")
        h = record.tensor(f"h_{k}")
        expect(
            tuple(h.shape) == (2, dims[-1], 2, 2),
            f"the encoder maps (2, {in_channels}, 64, 64) to {tuple(h.shape)}, expected (2, {dims[-1]}, 2, 2)",
        )
        reference = MyVAE(*args).eval()
        load_encoder(reference, encoder_weights(in_channels, dims, seed))
        with torch.no_grad():
            want_h = reference.encoder(_structure_x(args, seed))
        expect(
            torch.allclose(h, want_h, rtol=1e-4, atol=1e-5),
            f"with the grader's weights, the encoder of {call} computes something else than Conv2d -> BatchNorm2d -> "
            f"LeakyReLU() blocks (largest difference {float((h - want_h).abs().max()):.3g}): check the order of the "
            "layers and LeakyReLU's default slope",
        )


def output_inputs(seed: int) -> Inputs:
    """Two ``MyVAE`` argument tuples and seeds for their initialisation and inputs."""
    rng = _rng(seed)
    cases = [(3, int(rng.integers(6, 11)), list(SMALL_DIMS)), (1, int(rng.integers(3, 6)), list(TINY_DIMS))]
    return {"cases": cases, "seeds": [_sub(rng) for _ in cases]}


@check("a1_output_range", inputs=output_inputs)
def a1_output_range(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """The autoencoder returns ``[x_hat, x, mu, logvar]`` with ``x_hat`` of the input's shape in [0, 1],
    also when decoding codes far from the data."""
    require_student_code(model_cls, "MyVAE")
    values: dict[str, Any] = {}
    for k, (args, seed) in enumerate(zip(inputs["cases"], inputs["seeds"], strict=True)):
        args = tuple(args)
        g = _torch(seed)
        x = torch.rand(4, args[0], FRAME_SIZE, FRAME_SIZE, generator=g)  # (4, C, 64, 64)
        z = 30.0 * torch.randn(4, args[1], generator=g)  # (4, latent_dim), far from the prior's bulk
        with seeded(seed):
            model = _build(model_cls, args)
            model.train()
            with torch.no_grad(), student_code(f"MyVAE{args}.forward"):
                out = model(x)
                expect(
                    isinstance(out, (list, tuple)) and len(out) >= 1, "forward(x) should return [x_hat, x, mu, logvar]"
                )
                values[f"x_hat_{k}"] = _tensor_out(out[0], "forward(x)[0]")
                values[f"far_{k}"] = _tensor_out(model.decode(z), "decode(z)")
    return values


@a1_output_range.judge
def _a1_output_range(inputs: Inputs, record: Record) -> None:
    for k, args in enumerate(inputs["cases"]):
        want = (4, args[0], FRAME_SIZE, FRAME_SIZE)
        x_hat = record.array(f"x_hat_{k}")
        expect(x_hat.shape == want, f"x_hat has shape {x_hat.shape}, expected {want} (the input's shape)")
        for name, y in (("x_hat", x_hat), ("decode(z) for codes far from the data", record.array(f"far_{k}"))):
            expect(y.size > 0 and np.isfinite(y).all(), f"{name} is empty or not finite")
            expect(
                float(y.min()) >= 0.0 and float(y.max()) <= 1.0,
                f"{name} has values in [{float(y.min()):.3f}, {float(y.max()):.3f}]; frames are in [0, 1], so the "
                "output layer must end in a sigmoid (a Tanh gives values in [-1, 1], a ReLU values above 1)",
            )


@cache
def cartpole_frames(seed: int, n: int = 48) -> np.ndarray:
    """``uint8 (n, 64, 64, 3)`` real CartPole frames from seeded random episodes."""
    from course_lib.data import sample_frames

    return sample_frames("CartPole-v1", n, seed=seed, progress=False)


def training_inputs(seed: int) -> Inputs:
    """Seeds of the frames and of the model's initialisation."""
    rng = _rng(seed)
    return {"frames_seed": _sub(rng) % 10_000, "init_seed": _sub(rng), "steps": 25}


@check("a1_loss_drops", inputs=training_inputs)
def a1_loss_drops(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """Adam steps as an autoencoder lower the reconstruction error on fixed CartPole frames."""
    from course_lib.frames import to_tensor
    from course_lib.losses import autoencoder_loss

    require_student_code(model_cls, "MyVAE")
    x = to_tensor(cartpole_frames(inputs["frames_seed"])).contiguous()  # (48, 3, 64, 64)
    losses = []
    with seeded(inputs["init_seed"]):
        model = _build(model_cls, (3, 8, list(SMALL_DIMS)))
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        with student_code("training MyVAE as an autoencoder"):
            for _ in range(inputs["steps"]):
                loss = autoencoder_loss(x, model(x)[0])["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
    return {"losses": np.array(losses, dtype=np.float64)}


@a1_loss_drops.judge
def _a1_loss_drops(inputs: Inputs, record: Record) -> None:
    losses = record.array("losses", "float64")
    expect(losses.shape == (inputs["steps"],), "the record's training curve has the wrong length")
    expect(np.isfinite(losses).all(), "the reconstruction loss became NaN or infinite while training")
    first, last = float(np.mean(losses[:3])), float(np.mean(losses[-3:]))
    expect(
        last < 0.8 * first,
        f"the reconstruction loss went from {first:.1f} to {last:.1f} in {len(losses)} Adam steps; expected it to drop "
        "by at least 20% (can the output layer produce every colour of a frame?)",
    )


# ---------------------------------------------------------------- activity 2: the VAE
def reparameterize_inputs(seed: int) -> Inputs:
    """Means and standard deviations of 4 latent dimensions, and the seed of the noise."""
    rng = _rng(seed)
    return {**sampling.sample_inputs(rng), "seed": _sub(rng)}


@check("a2_reparameterize_stats", inputs=reparameterize_inputs)
def a2_reparameterize_stats(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """``reparameterize(mu, logvar)`` draws ``z ~ N(mu, exp(logvar))``: mean, spread, independence,
    Gaussian noise, and new noise at every call."""
    require_student_code(model_cls, "MyVAE")
    model = _build(model_cls, (3, 4, list(SMALL_DIMS)))
    mu, logvar = sampling.mu_logvar(inputs)
    with seeded(inputs["seed"]), torch.no_grad(), student_code("reparameterize(mu, logvar)"):
        z1 = _tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
        z2 = _tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
    return {"z1": z1, "z2": z2}


@a2_reparameterize_stats.judge
def _a2_reparameterize_stats(inputs: Inputs, record: Record) -> None:
    sampling.expect_samples(inputs, record)


def gradient_inputs(seed: int) -> Inputs:
    """The seed of ``mu`` and ``logvar`` ``(256, 4)``."""
    return {"seed": int(seed)}


@check("a2_gradients", inputs=gradient_inputs)
def a2_gradients(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """Gradients flow through ``z`` to ``mu`` and ``logvar`` (the point of the trick)."""
    require_student_code(model_cls, "MyVAE")
    model = _build(model_cls, (3, 4, list(SMALL_DIMS)))
    mu, logvar = (t.clone().requires_grad_(True) for t in sampling.gradient_leaves(inputs["seed"]))
    with seeded(inputs["seed"]), student_code("reparameterize(mu, logvar)"):
        z = model.reparameterize(mu, logvar)
        expect(torch.is_tensor(z) and z.requires_grad, "reparameterize(mu, logvar) returned a tensor with no gradient")
        z.sum().backward()
    return sampling.gradient_values(z, mu, logvar)


@a2_gradients.judge
def _a2_gradients(inputs: Inputs, record: Record) -> None:
    sampling.expect_gradients(inputs["seed"], record)


def encode_forward_inputs(seed: int) -> Inputs:
    """The latent size, and seeds of the latent layers' weights and of the batch ``x``."""
    rng = _rng(seed)
    return {"latent_dim": int(rng.integers(3, 8)), "weights_seed": _sub(rng), "x_seed": _sub(rng), "seed": _sub(rng)}


def _encode_forward_weights(inputs: Inputs) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    weights = latent_weights(SMALL_DIMS[-1] * 4, inputs["latent_dim"], inputs["weights_seed"])
    weight, bias = weights["z_var"]
    weights["z_var"] = (weight, bias + LOGVAR_SHIFT)  # sigma far from 1
    return weights


@check("a2_encode_forward", inputs=encode_forward_inputs)
def a2_encode_forward(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """``encode`` returns ``[mu, logvar]`` from ``z_mu``/``z_var`` on the flattened encoder output;
    ``forward`` returns ``[x_hat, x, mu, logvar]`` and decodes a sampled ``z``; the VAE loss's
    gradients reach ``z_mu`` and ``z_var``, not ``z_simple``."""
    from course_lib.losses import autoencoder_loss, gaussian_kl

    require_student_code(model_cls, "MyVAE")
    args = (3, inputs["latent_dim"], list(SMALL_DIMS))
    model = _build(model_cls, args)
    load_latent(model, _encode_forward_weights(inputs))
    decoder_input = getattr(model, "decoder_input", None)
    expect(isinstance(decoder_input, nn.Module), "MyVAE has no decoder_input: call self.build_decoder() in __init__")
    x = torch.rand(64, 3, FRAME_SIZE, FRAME_SIZE, generator=_torch(inputs["x_seed"]))  # (64, 3, 64, 64)
    model.eval()  # batch norm with running statistics: encode is deterministic
    values: dict[str, Any] = {}
    with layer_inputs(decoder_input) as captured, torch.no_grad(), seeded(inputs["seed"]):
        with student_code("the encoder of MyVAE"):
            values["h"] = _tensor_out(torch.flatten(model.encoder(x), start_dim=1), "flatten(encoder(x))")
        with student_code("MyVAE.encode"):
            out = model.encode(x)
        expect(isinstance(out, (list, tuple)) and len(out) == 2, "encode(x) should return [mu, logvar]")
        values["mu"], values["logvar"] = _tensor_out(out[0], "mu"), _tensor_out(out[1], "logvar")
        with student_code("MyVAE.forward"):
            out1 = model(x)
            first = len(captured)  # the decoder inputs of the first call; the second call's follow
            model(x)
    decoded = 0 < first < len(captured)
    expect(isinstance(out1, (list, tuple)) and len(out1) == 4, "forward(x) should return [x_hat, x, mu, logvar]")
    x_hat = _tensor_out(out1[0], "forward(x)[0]")
    values |= {
        "x_hat_shape": np.array(x_hat.shape, dtype=np.int64),
        "x_is_input": torch.is_tensor(out1[1]) and out1[1].shape == x.shape and torch.equal(out1[1], x),
        "mu_f": _tensor_out(out1[2], "forward(x)[2]"),
        "logvar_f": _tensor_out(out1[3], "forward(x)[3]"),
        "decoded": decoded,
        "z1": captured[0].float() if decoded else torch.zeros(0),
        "z2": captured[first].float() if decoded else torch.zeros(0),
    }
    # the VAE loss's gradients, in training mode
    model.train()
    model.zero_grad(set_to_none=True)
    with seeded(inputs["seed"] + 1), student_code("backpropagating the VAE loss through forward"):
        x_hat, _, mu, logvar = model(x[:8])
        (autoencoder_loss(x[:8], x_hat)["loss"] + gaussian_kl(mu, logvar).sum(1).mean()).backward()
    for name in ("z_mu", "z_var", "z_simple"):
        grad = getattr(model, name).weight.grad
        values[f"grad_{name}"] = -1.0 if grad is None else float(grad.abs().sum())
    return values


@a2_encode_forward.judge
def _a2_encode_forward(inputs: Inputs, record: Record) -> None:
    latent = inputs["latent_dim"]
    weights = {name: (w.double(), b.double()) for name, (w, b) in _encode_forward_weights(inputs).items()}
    h = record.tensor("h").double()
    expect(tuple(h.shape) == (64, SMALL_DIMS[-1] * 4), f"flatten(encoder(x)) has shape {tuple(h.shape)}")
    by_layer = {name: h @ w.T + b for name, (w, b) in weights.items()}  # (64, latent) each
    mu, logvar = record.tensor("mu").double(), record.tensor("logvar").double()
    expect(
        tuple(mu.shape) == tuple(logvar.shape) == (64, latent),
        f"encode(x) returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)}, expected (B, latent_dim) each",
    )

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-4))

    if not (same(mu, by_layer["z_mu"]) and same(logvar, by_layer["z_var"])):
        hint = ""
        if same(mu, by_layer["z_var"]) and same(logvar, by_layer["z_mu"]):
            hint = " (mu and logvar are swapped)"
        elif same(mu, by_layer["z_simple"]) or same(logvar, by_layer["z_simple"]):
            hint = " (z_simple is the autoencoder's layer)"
        expect(
            False, "encode should compute mu with z_mu and logvar with z_var from the flattened encoder output" + hint
        )
    shape = tuple(int(n) for n in record.array("x_hat_shape", "int64"))
    expect(
        shape == (64, 3, FRAME_SIZE, FRAME_SIZE),
        f"forward(x)[0] has shape {shape}, expected the input's (B, 3, 64, 64)",
    )
    expect(record.flag("x_is_input"), "forward should return the reconstruction first and the input x second")
    expect(
        same(record.tensor("mu_f").double(), mu) and same(record.tensor("logvar_f").double(), logvar),
        "forward should return mu and logvar from encode, third and fourth",
    )
    expect(record.flag("decoded"), "forward should decode z with the decoder (self.decode(z))")
    z1, z2 = record.tensor("z1").double(), record.tensor("z2").double()
    expect(tuple(z1.shape) == (64, latent), f"forward decoded a z of shape {tuple(z1.shape)}, expected (B, latent_dim)")
    expect(not same(z1, mu), "forward should decode a sampled z (reparameterize), not mu")
    expect(
        not torch.equal(z1, z2),
        "two calls of forward decoded the same z; it should sample z each time",
    )
    eps = (z1 - mu) / torch.exp(0.5 * logvar)  # N(0, 1) for z = mu + sigma * eps
    expect(
        abs(float(eps.mean())) < 0.4 and 0.6 < float(eps.std()) < 1.4,
        "the z that forward decodes is not mu + exp(logvar / 2) * eps: pass mu and logvar to reparameterize",
    )
    for name in ("z_mu", "z_var"):
        expect(record.number(f"grad_{name}") > 0, f"no gradient reached {name}: the VAE's forward pass must use it")
    expect(
        record.number("grad_z_simple") <= 0,
        "the VAE's forward pass should not use z_simple (that is the autoencoder's layer)",
    )


# ---------------------------------------------------------------- activity 3: episode resets
def reset_inputs(seed: int) -> Inputs:
    """Two calls of ``collect_frames``: (environment seed, call seed, n_frames, episode_length)."""
    rng = _rng(seed)
    return {
        "cases": [
            (_sub(rng), _sub(rng), 150, int(rng.integers(15, 26))),
            (_sub(rng), _sub(rng), 60, int(rng.integers(4, 8))),
        ]
    }


def _cartpole(seed: int) -> EpisodeRecorder:
    return EpisodeRecorder(make_env("CartPole-v1", seed=seed))


def _call(fn_name: str, n: int, **kwargs: Any) -> str:
    return f"{fn_name}(env, {n}{''.join(f', {k}={v}' for k, v in kwargs.items())}, seed=...)"


@check("a3_reset_pattern", inputs=reset_inputs)
def a3_reset_pattern(inputs: Inputs, collect_frames: Any) -> dict[str, Any]:
    """Every episode contributes at most ``episode_length`` frames; the env is reset then, and on
    termination or truncation (never stepped after the episode ended)."""
    require_student_code(collect_frames, "collect_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed, n_frames, episode_length) in enumerate(inputs["cases"]):
        env = _cartpole(env_seed)
        with student_code(_call("collect_frames", n_frames, episode_length=episode_length)):
            frames = collect_frames(env, n_frames, episode_length=episode_length, seed=seed)
        values |= collector_values(f"run{k}", frames, env)
    return values


@a3_reset_pattern.judge
def _a3_reset_pattern(inputs: Inputs, record: Record) -> None:
    for k, (env_seed, seed, n_frames, episode_length) in enumerate(inputs["cases"]):
        what = _call("collect_frames", n_frames, episode_length=episode_length)
        digests = expect_frames(record, f"run{k}", n_frames, what)
        played = replay(
            lambda s=env_seed: make_env("CartPole-v1", seed=s), record, f"run{k}", "CartPole-v1", what, seed
        )
        episodes = [played.renders[i].episode for i in played.match(digests, what)]
        counts = np.bincount(episodes)
        expect(
            int(counts.max()) <= episode_length,
            f"{what}: one episode contributed {int(counts.max())} frames, expected at most {episode_length} (reset the "
            "environment and the frame counter)",
        )
        after = played.steps_after_end()
        expect(
            after == 0,
            f"{what} stepped the environment {after} times after an episode had terminated; reset it on termination "
            "or truncation",
        )
        ended, last = played.episodes_ended, max(episodes)
        early = [e for e in set(episodes) if counts[e] < episode_length and e not in ended and e != last]
        expect(
            not early,
            f"{what}: {len(early)} episodes were reset after fewer than {episode_length} frames although they had not "
            "terminated; reset after episode_length frames, not earlier",
        )


def frames_inputs(seed: int) -> Inputs:
    """Environment seeds and two different call seeds."""
    rng = _rng(seed)
    first, second = (int(s) for s in rng.choice(2**31 - 1, size=2, replace=False))
    return {"env_seeds": [_sub(rng) for _ in range(3)], "seeds": [first, first, second], "n": 40}


@check("a3_frames", inputs=frames_inputs)
def a3_frames(inputs: Inputs, collect_frames: Any) -> dict[str, Any]:
    """Frame count, dtype, no blank frames, real renders; the same seed gives the same frames, another
    seed others."""
    require_student_code(collect_frames, "collect_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed) in enumerate(zip(inputs["env_seeds"], inputs["seeds"], strict=True)):
        env = _cartpole(env_seed)
        with student_code(_call("collect_frames", inputs["n"])):
            values |= collector_values(f"run{k}", collect_frames(env, inputs["n"], seed=seed), env)
    return values


def _expect_seeding(record: Record, inputs: Inputs, collector: str, make: Any, crop: str, unique: int) -> None:
    """Runs 0 and 1 share a seed, run 2 has another: same frames, other frames, each run real renders."""
    what = _call(collector, inputs["n"])
    digests = []
    for k, (env_seed, seed) in enumerate(zip(inputs["env_seeds"], inputs["seeds"], strict=True)):
        runs = expect_frames(record, f"run{k}", inputs["n"], what)
        replay(lambda s=env_seed: make(s), record, f"run{k}", crop, what, seed).match(runs, what)
        digests.append(runs)
    expect(
        np.array_equal(digests[0], digests[1]),
        f"{collector} with the same seed returned different frames: seed env.reset(seed=seed) and env.action_space",
    )
    expect(not np.array_equal(digests[0], digests[2]), f"{collector} with different seeds returned the same frames")
    distinct = len({bytes(d) for d in digests[0]})
    expect(distinct > unique, f"{collector} returned mostly identical frames ({distinct} different in {inputs['n']})")


@a3_frames.judge
def _a3_frames(inputs: Inputs, record: Record) -> None:
    _expect_seeding(record, inputs, "collect_frames", lambda s: make_env("CartPole-v1", seed=s), "CartPole-v1", 10)


# ---------------------------------------------------------------- activity 4: the angle filter
def angle_inputs(seed: int) -> Inputs:
    """Two calls of ``collect_upright_frames``: (environment seed, call seed, n_frames, max_angle)."""
    rng = _rng(seed)
    return {
        "cases": [
            (_sub(rng), _sub(rng), 120, round(float(rng.uniform(0.25, 0.35)), 3)),
            (_sub(rng), _sub(rng), 60, round(float(rng.uniform(0.08, 0.12)), 3)),
        ]
    }


@check("a4_angles", inputs=angle_inputs)
def a4_angles(inputs: Inputs, collect_upright_frames: Any) -> dict[str, Any]:
    """Every kept frame shows a state with ``abs(theta) <= max_angle`` (the state rendered)."""
    require_student_code(collect_upright_frames, "collect_upright_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed, n_frames, max_angle) in enumerate(inputs["cases"]):
        env = EpisodeRecorder(wide_cartpole(seed=env_seed))
        with student_code(_call("collect_upright_frames", n_frames, max_angle=max_angle)):
            frames = collect_upright_frames(env, n_frames, max_angle=max_angle, seed=seed)
        values |= collector_values(f"run{k}", frames, env)
    return values


@a4_angles.judge
def _a4_angles(inputs: Inputs, record: Record) -> None:
    for k, (env_seed, seed, n_frames, max_angle) in enumerate(inputs["cases"]):
        what = _call("collect_upright_frames", n_frames, max_angle=max_angle)
        digests = expect_frames(record, f"run{k}", n_frames, what)
        played = replay(lambda s=env_seed: wide_cartpole(seed=s), record, f"run{k}", "CartPole-v1", what, seed)
        seen = np.abs([state[2] for state in played.visited]) if played.visited else np.zeros(0)
        expect(
            (seen > max_angle).any(),
            f"{what} never met a state beyond max_angle; it should run the episodes of the environment it is given",
        )
        played.match(digests, what)  # every frame is a render of this environment
        for i, digest in enumerate(digests):
            # identical images can show slightly different states: the most upright one counts
            theta = min(abs(float(played.renders[j].state[2])) for j in played.digests[bytes(digest)])
            expect(
                theta <= max_angle + 1e-9,
                f"frame {i} of {what} shows a pole angle of {theta:.3f} rad, outside [-max_angle, max_angle] "
                "(filter on the state you render)",
            )


def count_inputs(seed: int) -> Inputs:
    """Environment seeds and call seeds of two runs with the same seed (and one with another)."""
    inputs = frames_inputs(seed)
    return {**inputs, "n": 50}


@check("a4_count", inputs=count_inputs)
def a4_count(inputs: Inputs, collect_upright_frames: Any) -> dict[str, Any]:
    """Exactly ``n_frames`` kept frames, none blank, real renders, and the same seed gives the same frames."""
    require_student_code(collect_upright_frames, "collect_upright_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed) in enumerate(zip(inputs["env_seeds"], inputs["seeds"], strict=True)):
        env = EpisodeRecorder(wide_cartpole(seed=env_seed))
        with student_code(_call("collect_upright_frames", inputs["n"])):
            values |= collector_values(f"run{k}", collect_upright_frames(env, inputs["n"], seed=seed), env)
    return values


@a4_count.judge
def _a4_count(inputs: Inputs, record: Record) -> None:
    _expect_seeding(record, inputs, "collect_upright_frames", lambda s: wide_cartpole(seed=s), "CartPole-v1", 10)


# ---------------------------------------------------------------- activity 5: another environment
def _colour_profile(frames: np.ndarray) -> np.ndarray:
    x = frames.reshape(-1, 3).astype(np.float64)
    ink = x[(x < 235).any(axis=1)]  # pixels that are not the white background
    mean = ink.mean(axis=0) if len(ink) else np.full(3, 255.0)
    return np.concatenate([mean / 255.0, [len(ink) / len(x) * 4]])


@cache
def _profiles() -> dict[str, np.ndarray]:
    from course_lib.data import sample_frames

    return {  # 16 frames give the profile of 48 to within 0.01 (and cost a third of the time)
        env_id: _colour_profile(sample_frames(env_id, 16, seed=99, progress=False))
        for env_id in ("CartPole-v1", *OTHER_ENVS)
    }


def nearest_env(frames: np.ndarray) -> str:
    """The environment whose frames' colours ``frames`` resemble most (grader side)."""
    profile = _colour_profile(frames)
    return min(_profiles(), key=lambda env_id: float(np.sum((_profiles()[env_id] - profile) ** 2)))


def other_frames_inputs(seed: int) -> Inputs:
    """Two different call seeds of ``collect_other_frames``."""
    rng = _rng(seed)
    first, second = (int(s) for s in rng.choice(2**31 - 1, size=2, replace=False))
    return {"seeds": [first, first, second], "n": 64}


def _expect_env_frames(frames: np.ndarray, env_id: str, what: str, unique: int) -> None:
    want = (len(frames), FRAME_SIZE, FRAME_SIZE, 3)
    expect(
        frames.shape == want and frames.dtype == np.uint8,
        f"{what} returned {frames.dtype} {frames.shape}, expected uint8 {want}",
    )
    from course_lib.frames import is_blank

    expect(not any(is_blank(f) for f in frames), f"{what} returned blank frames")
    distinct = len({f.tobytes() for f in frames})
    expect(distinct > unique, f"{what} returned mostly identical frames ({distinct} different in {len(frames)})")
    nearest = nearest_env(frames)
    expect(nearest == env_id, f"the frames of {what} look like {nearest}, not {env_id}")


@check("a5_frames", inputs=other_frames_inputs)
def a5_frames(inputs: Inputs, collect_other_frames: Any, env_id: str) -> dict[str, Any]:
    """The frames come from ``ENV_ID`` (one of Pendulum-v1, Acrobot-v1, MountainCar-v0); the same seed
    gives the same frames, another seed others."""
    from autograder.checks.episodes import frame_digests

    require_student_code(collect_other_frames, "collect_other_frames")
    values: dict[str, Any] = {"env_id": str(env_id)}
    for k, seed in enumerate(inputs["seeds"]):
        with student_code(f"collect_other_frames(ENV_ID, {inputs['n']}, seed=...)"):
            frames = np.asarray(collect_other_frames(env_id, inputs["n"], seed=seed))
        if k == 0:
            values["frames"] = frames if frames.dtype == np.uint8 else np.zeros((0,), np.uint8)
            values["frames_dtype"] = str(frames.dtype)
        ok = frames.dtype == np.uint8 and frames.shape == (inputs["n"], FRAME_SIZE, FRAME_SIZE, 3)
        values[f"digests_{k}"] = frame_digests(frames) if ok else np.zeros((0, 20), np.uint8)
    return values


@a5_frames.judge
def _a5_frames(inputs: Inputs, record: Record) -> None:
    from autograder.checks.episodes import frame_digests

    env_id = record.text("env_id")
    expect(env_id in OTHER_ENVS, f"ENV_ID is {env_id!r}; choose one of {OTHER_ENVS}")
    what = f"collect_other_frames(ENV_ID, {inputs['n']}, seed=...)"
    expect(
        record.text("frames_dtype") == "uint8", f"{what} returned dtype {record.text('frames_dtype')}, expected uint8"
    )
    frames = record.array("frames", "uint8")
    _expect_env_frames(frames, env_id, what, 16)
    first = frame_digests(frames)
    expect(
        np.array_equal(first, record.array("digests_1", "uint8")),
        "collect_other_frames with the same seed returned different frames: seed env.reset and env.action_space",
    )
    expect(
        not np.array_equal(first, record.array("digests_2", "uint8")),
        "collect_other_frames with different seeds returned the same frames",
    )


def baseline_inputs(seed: int) -> Inputs:
    """Seeds of fresh training and validation frames for the baseline check."""
    rng = _rng(seed)
    first, second = (int(s) for s in rng.choice(2**31 - 1, size=2, replace=False))
    return {"train_seed": first, "val_seed": second, "n": 96}


@check("a5_beats_baseline", inputs=baseline_inputs)
def a5_beats_baseline(inputs: Inputs, model: nn.Module, collect_other_frames: Any, env_id: str) -> dict[str, Any]:
    """On frames the collector makes for seeds nobody trained on, the trained VAE reconstructs better
    than the mean image of other fresh frames."""
    require_student_code(collect_other_frames, "collect_other_frames")
    expect(isinstance(model, nn.Module), f"model should be the notebook's SmallVAE, got {type(model).__name__}")
    values: dict[str, Any] = {"env_id": str(env_id), "model": type(model).__name__}
    for part in ("train", "val"):
        with student_code(f"collect_other_frames(ENV_ID, {inputs['n']}, seed=...)"):
            frames = np.asarray(collect_other_frames(env_id, inputs["n"], seed=inputs[f"{part}_seed"]))
        values[part] = frames if frames.dtype == np.uint8 else np.zeros((0,), np.uint8)
    state = model.state_dict()
    n_params = sum(t.numel() for t in state.values())
    expect(n_params <= 4_000_000, f"the model has {n_params:,} parameters, too many to grade; keep WIDTH at 64 or less")
    values |= {f"param.{name}": t.detach().float() for name, t in state.items() if t.is_floating_point()}
    values["z_size"] = int(getattr(model, "z_size", 0))
    values["width"] = int(getattr(model, "width", 0))
    return values


@a5_beats_baseline.judge
def _a5_beats_baseline(inputs: Inputs, record: Record) -> None:
    from course_lib.models import SmallVAE
    from course_lib.pretrained import is_shipped
    from course_lib.train import evaluate, mean_image_baseline

    env_id = record.text("env_id")
    expect(env_id in OTHER_ENVS, f"ENV_ID is {env_id!r}; choose one of {OTHER_ENVS}")
    frames = {}
    for part in ("train", "val"):
        frames[part] = record.array(part, "uint8")
        _expect_env_frames(frames[part], env_id, f"collect_other_frames(ENV_ID, {inputs['n']}, seed=...)", 16)
    overlap = {f.tobytes() for f in frames["train"]} & {f.tobytes() for f in frames["val"]}
    expect(len(overlap) <= 0.1 * inputs["n"], "collect_other_frames returns the same frames for different seeds")
    expect(record.text("model") == "SmallVAE", f"model should be the notebook's SmallVAE, got {record.text('model')}")
    z_size, width = int(record.number("z_size")), int(record.number("width"))
    expect(1 <= z_size <= 512 and 1 <= width <= 64, f"SmallVAE(z_size={z_size}, width={width}) is not one to grade")
    model = SmallVAE(z_size=z_size, width=width)
    state = {name[len("param.") :]: record.tensor(name) for name in record.values if name.startswith("param.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        expect(False, f"the model's weights do not fit SmallVAE(z_size={z_size}, width={width}) ({str(err)[:200]})")
    shipped = is_shipped(state)
    expect(
        shipped is None,
        f"the model holds the weights of the pretrained checkpoint {shipped!r}; this activity grades a VAE you train",
    )
    mse = evaluate(model, frames["val"])["mse"]
    baseline = mean_image_baseline(frames["train"], frames["val"])
    expect(math.isfinite(mse), "the model's reconstructions are not finite")
    expect(
        mse < baseline,
        f"on held-out frames, the validation MSE {mse:.5f} is not below the mean-image baseline {baseline:.5f}; "
        "train longer, lower BETA or choose a tighter crop",
    )
