"""Hidden checks of homework 1 (``hw1_vae``), one per graded test cell, named by its ``grade_id``.

Activities (the CMPE 260 homework): a1 the autoencoder (``MyVAE.__init__``), a2 the VAE
(``reparameterize``, ``encode``, ``forward``), a3 episode resets (``collect_frames``), a4 the angle
filter (``collect_upright_frames``), a5 another environment (``collect_other_frames``).

Each check's probe runs the student's code in the kernel and returns raw outputs; its judge decides
in the grader's process (see :mod:`autograder.checks`). What the judges recompute themselves:

- the student's layers: rebuilt from their description and weights (:mod:`autograder.checks.layers`),
  with the template's own ``decode`` and autoencoder ``forward`` (``MyVAETemplate``) run on them;
  the encoder and the latent layers are compared with the reference ``MyVAE`` given the same
  weights, drawn by the judge's seed;
- ``reparameterize``: ``eps = (z - mu) / exp(logvar / 2)`` must be the noise the seeded generator
  draws, with the statistics and the gradients of ``z = mu + exp(logvar / 2) * eps``;
- the collectors: a replay of the environments' logs in the grader (:mod:`autograder.checks.episodes`);
- activity 5: the environments the collector built, replayed, and its crops redone on the judge's
  renders; the notebook's ``SmallVAE``, rebuilt from the recorded weights, measured on frames the
  judge renders itself with the collector's crop, for seeds drawn at grading time.
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
    CheckFailed,
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
from autograder.checks.episodes import collector_values, expect_frames, recording_values, replay, replay_recording
from course_lib import rules
from course_lib.envs import EpisodeRecorder, make_env, wide_cartpole
from course_lib.frames import FRAME_SIZE
from course_lib.recording import digest, recording
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
    expected.latent_dim, expected.hidden_dims = args[1], _dims(args)
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


def _kind(module: nn.Module) -> str:
    return module.kind if isinstance(module, layers.Opaque) else type(module).__name__


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


def _latent_of(args: tuple, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return latent_weights(_dims(args)[-1] * 4, args[1], seed + 2)


@check("a1_structure", inputs=structure_inputs)
def a1_structure(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """The encoder has one Conv2d(k3, s2, p1) + BatchNorm2d + LeakyReLU block per hidden dim, and
    ``z_simple``, ``z_mu``, ``z_var`` map ``hidden_dims[-1] * 4`` features to ``latent_dim``."""
    require_student_code(model_cls, "MyVAE")
    values: dict[str, Any] = {}
    for k, (args, seed) in enumerate(zip(inputs["cases"], inputs["seeds"], strict=True)):
        args = tuple(args)
        model = _build(model_cls, args)
        values |= model_values(f"model_{k}", model, state=False)  # the weights are the judge's
        model.eval()  # batch norm with the running statistics loaded below
        h, z = torch.zeros(0), torch.zeros(0)
        if load_encoder(model, encoder_weights(args[0], _dims(args), seed)):
            with torch.no_grad(), student_code(f"the encoder of MyVAE{args}"):
                h = _tensor_out(model.encoder(_structure_x(args, seed)), "encoder(x)")
            try:
                load_latent(model, _latent_of(args, seed))
                with torch.no_grad(), student_code(f"the z layers of MyVAE{args}"):
                    flat = torch.flatten(h, start_dim=1)
                    z = torch.stack([_tensor_out(getattr(model, n)(flat), n) for n in ("z_simple", "z_mu", "z_var")])
            except CheckFailed:  # z layers of other shapes: the judge says which
                pass
        values[f"h_{k}"], values[f"z_{k}"] = h, z
    return values


@a1_structure.judge
def _a1_structure(inputs: Inputs, record: Record) -> None:
    """Rebuilds the encoder and z layers from their description and checks their classes and settings
    (the parameter count too, from the rebuilt layers); loads its own weights into them and computes
    the encoder's output and the z layers' outputs itself: the recorded ones must agree
    (:class:`~autograder.checks.Inconsistent` otherwise), and the judge's must be the reference
    encoder's with the same weights."""
    from course_lib.solutions.hw1 import MyVAE

    for k, (args, seed) in enumerate(zip(inputs["cases"], inputs["seeds"], strict=True)):
        args = tuple(args)
        in_channels, latent_dim, dims = args[0], args[1], _dims(args)
        call = f"MyVAE({', '.join(map(str, args[:2]))}{', hidden_dims=' + str(dims) if len(args) > 2 else ''})"
        model = rebuilt_model(record, f"model_{k}", state=False)
        encoder = getattr(model, "encoder", None)
        expect(isinstance(encoder, nn.Sequential), f"{call}.encoder should be an nn.Sequential")
        blocks = list(encoder.children())
        expect(
            len(blocks) == len(dims),
            f"{call}.encoder has {len(blocks)} blocks, expected one per hidden dim ({len(dims)})",
        )
        c_in = in_channels
        for i, (block, h_dim) in enumerate(zip(blocks, dims, strict=True)):
            kinds = [_kind(m) for m in block.children()] if isinstance(block, nn.Sequential) else [_kind(block)]
            expect(
                kinds == ["Conv2d", "BatchNorm2d", "LeakyReLU"],
                f"encoder block {i} of {call} is {kinds}, expected ['Conv2d', 'BatchNorm2d', 'LeakyReLU'] "
                "in an nn.Sequential",
            )
            conv, bn, _ = block.children()
            got = [conv.in_channels, conv.out_channels, list(conv.kernel_size), list(conv.stride), list(conv.padding)]
            want = [c_in, h_dim, [3, 3], [2, 2], [1, 1]]
            expect(
                got == want,
                f"encoder block {i} of {call}: Conv2d(in, out, kernel, stride, padding) = {got}, expected {want}",
            )
            expect(
                bn.num_features == h_dim,
                f"encoder block {i}: BatchNorm2d has {bn.num_features} features, expected {h_dim}",
            )
            c_in = h_dim
        for name in ("z_simple", "z_mu", "z_var"):
            layer = getattr(model, name, None)
            expect(isinstance(layer, nn.Linear), f"{call}.{name} should be an nn.Linear")
            expect(
                [layer.in_features, layer.out_features] == [dims[-1] * 4, latent_dim],
                f"{call}.{name} maps {layer.in_features} -> {layer.out_features}, expected {dims[-1] * 4} -> "
                f"{latent_dim} (the encoder ends at 2x2 with {dims[-1]} channels)",
            )
        ours = sum(layers.parameter_count(getattr(model, n)) for n in ("encoder", "z_simple", "z_mu", "z_var"))
        theirs = encoder_parameter_count(in_channels, latent_dim, dims)
        expect(ours == theirs, f"the encoder and z layers of {call} have {ours} parameters, expected {theirs}")
        expect(
            load_encoder(model, encoder_weights(in_channels, dims, seed)),
            f"the encoder blocks of {call} do not hold a Conv2d (with a bias) and a BatchNorm2d each",
        )
        load_latent(model, _latent_of(args, seed))
        x = _structure_x(args, seed)
        with torch.no_grad():
            h = model.encoder(x)  # (2, h[-1], 2, 2)
            z = torch.stack([getattr(model, n)(torch.flatten(h, 1)) for n in ("z_simple", "z_mu", "z_var")])
        recorded_h, recorded_z = record.tensor(f"h_{k}"), record.tensor(f"z_{k}")
        expect_consistent(
            recorded_h.shape == h.shape and torch.allclose(recorded_h, h, **SAME),
            f"the encoder output of {call} is not what its described layers compute",
        )
        expect_consistent(
            recorded_z.shape == z.shape and torch.allclose(recorded_z, z, **SAME),
            f"the z layers' outputs of {call} are not what its described layers compute",
        )
        reference = MyVAE(*args).eval()
        load_encoder(reference, encoder_weights(in_channels, dims, seed))
        with torch.no_grad():
            want_h = reference.encoder(x)
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


def _output_data(args: tuple, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` ``(4, C, 64, 64)``, codes far from the data ``(4, latent_dim)``, and large activations
    ``(4, h[0], 32, 32)`` for the output layer."""
    g = _torch(seed)
    x = torch.rand(4, args[0], FRAME_SIZE, FRAME_SIZE, generator=g)
    far = 30.0 * torch.randn(4, args[1], generator=g)  # far from the prior's bulk
    loud = 10.0 * torch.randn(4, _dims(args)[0], FRAME_SIZE // 2, FRAME_SIZE // 2, generator=g)
    return x, far, loud


@check("a1_output_range", inputs=output_inputs)
def a1_output_range(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """The autoencoder's output ``x_hat`` has the input's shape and lies in [0, 1], also when decoding
    codes far from the data, and whatever the output layer is given."""
    require_student_code(model_cls, "MyVAE")
    values: dict[str, Any] = {}
    for k, (args, seed) in enumerate(zip(inputs["cases"], inputs["seeds"], strict=True)):
        args = tuple(args)
        x, far, _ = _output_data(args, seed)
        with seeded(seed):
            model = _build(model_cls, args)
        model.train()
        values |= model_values(f"model_{k}", model)
        with torch.no_grad(), student_code(f"MyVAE{args}.forward"):
            out = model(x)
            expect(isinstance(out, (list, tuple)) and len(out) >= 1, "forward(x) should return [x_hat, x, mu, logvar]")
            _tensor_out(out[0], "forward(x)[0]")
            values[f"far_{k}"] = _tensor_out(model.decode(far), "decode(z)")
    return values


@a1_output_range.judge
def _a1_output_range(inputs: Inputs, record: Record) -> None:
    """Rebuilds the whole model from its description and weights and computes, with the template's
    ``forward`` and ``decode``, the reconstructions of ``x``, the decodings of far codes (the recorded
    ones must agree) and the output layer's response to large activations: all must be in [0, 1]
    and of the input's shape."""
    for k, args in enumerate(inputs["cases"]):
        args = tuple(args)
        call = f"MyVAE{args}"
        model = as_template(rebuilt_model(record, f"model_{k}")).train()
        expect_rebuildable(model, PARTS, call)
        expect_template_decoder(model, args)
        x, far, loud = _output_data(args, inputs["seeds"][k])
        with torch.no_grad():
            decoded = model.decode(far)
            recorded = record.tensor(f"far_{k}")
            expect_consistent(
                recorded.shape == decoded.shape and torch.allclose(recorded, decoded, **SAME),
                f"decode(z) of {call} is not what its described layers compute with the template's decode",
            )
            x_hat = model(x)[0]
            want = tuple(x.shape)
            expect(tuple(x_hat.shape) == want, f"x_hat has shape {tuple(x_hat.shape)}, expected {want} (the input's)")
            outputs = {
                "x_hat": x_hat,
                "decode(z) for codes far from the data": decoded,
                "final_layer": model.final_layer(loud),
            }
        for name, y in outputs.items():
            expect(y.numel() > 0 and bool(torch.isfinite(y).all()), f"{name} is empty or not finite")
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


#: The ``MyVAE`` that a1_loss_drops trains, and Adam's learning rate.
TRAINING_ARGS, TRAINING_LR = (3, 8, list(SMALL_DIMS)), 2e-3
#: The most one Adam step moves a parameter, in learning rates: ``|m_hat| / sqrt(v_hat)`` stays below
#: ``(1 - beta1) / sqrt(1 - beta2) = 3.2`` with PyTorch's betas, whatever the gradients.
ADAM_STEP_BOUND = 3.2


def training_inputs(seed: int) -> Inputs:
    """Seeds of the frames and of the model's initialisation."""
    rng = _rng(seed)
    return {"frames_seed": _sub(rng) % 10_000, "init_seed": _sub(rng), "steps": 25}


def _training_model(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with the initial weights both sides know: every layer reset, in order, from ``seed``."""
    return layers.reset_parameters(model, seed).train()


@check("a1_loss_drops", inputs=training_inputs)
def a1_loss_drops(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """Adam steps as an autoencoder lower the reconstruction error on fixed CartPole frames."""
    from course_lib.frames import to_tensor
    from course_lib.losses import autoencoder_loss

    require_student_code(model_cls, "MyVAE")
    x = to_tensor(cartpole_frames(inputs["frames_seed"])).contiguous()  # (48, 3, 64, 64)
    with seeded(inputs["init_seed"]):
        model = _training_model(_build(model_cls, (*TRAINING_ARGS[:2], list(SMALL_DIMS))), inputs["init_seed"])
        optimizer = torch.optim.Adam(model.parameters(), lr=TRAINING_LR)
        with student_code("training MyVAE as an autoencoder"):
            for _ in range(inputs["steps"]):
                loss = autoencoder_loss(x, model(x)[0])["loss"]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                expect(math.isfinite(loss.item()), "the reconstruction loss became NaN or infinite while training")
    return model_values("trained", model)


@a1_loss_drops.judge
def _a1_loss_drops(inputs: Inputs, record: Record) -> None:
    """Rebuilds the model twice from its description: with the initial weights (its own reset from the
    seed, as the probe did before training) and with the trained weights the record carries, which
    must lie within the distance the Adam steps can go from the initial ones; computes the
    reconstruction loss of both on the frames itself, with the template's forward."""
    from course_lib.frames import to_tensor
    from course_lib.losses import autoencoder_loss

    trained = as_template(rebuilt_model(record, "trained")).train()
    expect_rebuildable(trained, PARTS, f"MyVAE{TRAINING_ARGS}")
    expect_template_decoder(trained, TRAINING_ARGS)
    initial = _training_model(as_template(rebuilt_model(record, "trained", state=False)), inputs["init_seed"])
    with torch.no_grad():
        moved = max(
            float((after - before).abs().max())
            for before, after in zip(initial.parameters(), trained.parameters(), strict=True)
        )
    expect_consistent(
        moved <= inputs["steps"] * TRAINING_LR * ADAM_STEP_BOUND,
        f"the trained weights are {moved:.3g} away from the initial weights the grader gave, farther than "
        f"{inputs['steps']} Adam steps of {TRAINING_LR} go",
    )
    x = to_tensor(cartpole_frames(inputs["frames_seed"])).contiguous()  # (48, 3, 64, 64)
    with torch.no_grad():
        first, last = (float(autoencoder_loss(x, m(x)[0])["loss"]) for m in (initial, trained))
    expect(math.isfinite(last), "the reconstruction loss became NaN or infinite while training")
    expect(
        last < 0.8 * first,
        f"the reconstruction loss went from {first:.1f} to {last:.1f} in {inputs['steps']} Adam steps; expected it to "
        "drop by at least 20% (can the output layer produce every colour of a frame?)",
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
    """Recomputes ``eps`` from the samples and its own ``mu`` and ``logvar``; judges its statistics
    and requires it to be the noise the generator seeded with the run's seed draws
    (:func:`~autograder.checks.sampling.expect_samples`)."""
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
    """Derives the gradients from the recorded ``z`` and its own ``mu`` and ``logvar``, and requires
    ``z``'s noise to be the seeded generator's (:func:`~autograder.checks.sampling.expect_gradients`)."""
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


def _encode_forward_x(inputs: Inputs) -> torch.Tensor:
    return torch.rand(64, 3, FRAME_SIZE, FRAME_SIZE, generator=_torch(inputs["x_seed"]))  # (64, 3, 64, 64)


#: Images of forward's ``x_hat`` that a2_encode_forward records (the judge decodes the same z);
#: rows of the batch whose VAE-loss gradients it recomputes.
ENCODE_FORWARD_RECORDED, GRADIENT_ROWS = 4, 8


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
    x = _encode_forward_x(inputs)
    model.eval()  # batch norm with running statistics: encode is deterministic
    values: dict[str, Any] = model_values("model", model)
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
    expect(0 < first < len(captured), "forward should decode z with the decoder (self.decode(z))")
    expect(isinstance(out1, (list, tuple)) and len(out1) == 4, "forward(x) should return [x_hat, x, mu, logvar]")
    second = out1[1]
    values |= {
        "x_hat": _tensor_out(out1[0], "forward(x)[0]")[:ENCODE_FORWARD_RECORDED],
        "x_hat_shape": np.array(out1[0].shape, dtype=np.int64),
        "x_out": np.frombuffer(digest(second.detach().numpy()), np.uint8)
        if torch.is_tensor(second)
        else np.zeros(0, np.uint8),
        "mu_f": _tensor_out(out1[2], "forward(x)[2]"),
        "logvar_f": _tensor_out(out1[3], "forward(x)[3]"),
        "z1": captured[0].float(),
        "z2": captured[first].float(),
    }
    # the VAE loss's gradients, in training mode
    model.train()
    model.zero_grad(set_to_none=True)
    with (
        layer_inputs(decoder_input) as captured,
        seeded(inputs["seed"] + 1),
        student_code("backpropagating the VAE loss through forward"),
    ):
        x_hat, _, mu, logvar = model(x[:GRADIENT_ROWS])
        (autoencoder_loss(x[:GRADIENT_ROWS], x_hat)["loss"] + gaussian_kl(mu, logvar).sum(1).mean()).backward()
    values["z_train"] = captured[0].float() if captured else torch.zeros(0)
    for name in ("z_mu", "z_var", "z_simple"):
        grad = getattr(model, name).weight.grad
        values[f"grad_{name}"] = torch.full((0,), 0.0) if grad is None else grad.float()
    return values


@a2_encode_forward.judge
def _a2_encode_forward(inputs: Inputs, record: Record) -> None:
    """Rebuilds the model from its description and weights; computes the flattened encoder output
    (the recorded one must agree) and ``mu``, ``logvar`` with its own latent weights; requires the
    z that forward decoded to be ``mu + exp(logvar / 2) * eps`` with the seeded generator's noise,
    the recorded ``x_hat`` to be the template's ``decode`` of that z, and recomputes the gradient the
    VAE loss sends to ``z_mu`` (through the recorded z) to compare with the recorded one."""
    from course_lib.losses import autoencoder_loss, gaussian_kl

    latent = inputs["latent_dim"]
    x = _encode_forward_x(inputs)
    model = as_template(rebuilt_model(record, "model"))
    expect_rebuildable(model, ("encoder",), "MyVAE")
    weights = _encode_forward_weights(inputs)
    for name, (weight, bias) in weights.items():
        layer = getattr(model, name)
        expect_consistent(
            torch.equal(layer.weight, weight) and torch.equal(layer.bias, bias),
            f"MyVAE.{name} does not hold the weights the grader gave it",
        )
    with torch.no_grad():
        h = torch.flatten(model.encoder(x), start_dim=1)  # (64, h[-1] * 4)
    recorded_h = record.tensor("h")
    expect_consistent(
        recorded_h.shape == h.shape and torch.allclose(recorded_h, h, **SAME),
        "flatten(encoder(x)) is not what the described encoder computes",
    )
    h = h.double()
    by_layer = {name: h @ w.double().T + b.double() for name, (w, b) in weights.items()}  # (64, latent) each
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
    expect(
        bytes(record.array("x_out", "uint8")) == digest(x.numpy()),
        "forward should return the reconstruction first and the input x second",
    )
    mu_f, logvar_f = record.tensor("mu_f"), record.tensor("logvar_f")
    expect(
        same(mu_f.double(), mu) and same(logvar_f.double(), logvar),
        "forward should return mu and logvar from encode, third and fourth",
    )
    z1, z2 = record.tensor("z1"), record.tensor("z2")
    expect(
        tuple(z1.shape) == tuple(z2.shape) == (64, latent),
        f"forward decoded a z of shape {tuple(z1.shape)}, expected (B, latent_dim)",
    )
    expect(not same(z1.double(), mu), "forward should decode a sampled z (reparameterize), not mu")
    expect(not torch.equal(z1, z2), "two calls of forward decoded the same z; it should sample z each time")
    eps, tolerance = sampling.noise_of_calls([z1, z2], mu_f, logvar_f)
    expect(
        sampling.noise_is_drawn(eps, tolerance, inputs["seed"], 2 * z1.numel()),
        "the z that forward decodes is not mu + exp(logvar / 2) * eps with the random generator's noise: pass mu and "
        "logvar to reparameterize",
    )
    if layers.runnable(model):  # the template's decode on the student's decoder and output layer
        with torch.no_grad():
            decoded = model.eval().decode(z1[:ENCODE_FORWARD_RECORDED])
        x_hat = record.tensor("x_hat")
        expect(
            x_hat.shape == decoded.shape and torch.allclose(x_hat, decoded, **SAME),
            "forward's first output should be decode(z) of the sampled z",
        )
    _expect_vae_gradients(model, x[:GRADIENT_ROWS], record, autoencoder_loss, gaussian_kl)


def _expect_vae_gradients(model: MyVAETemplate, x: torch.Tensor, record: Record, recon: Any, kl: Any) -> None:
    """The VAE loss's gradient reaches ``z_mu`` as the judge computes it through the recorded ``z``
    (``dz/dmu = 1`` for any ``z = mu + f(logvar) * eps``), reaches ``z_var``, and not ``z_simple``."""
    grads = {name: record.tensor(f"grad_{name}") for name in ("z_mu", "z_var", "z_simple")}
    for name in ("z_mu", "z_var"):
        expect(
            grads[name].numel() > 0 and float(grads[name].abs().sum()) > 0,
            f"no gradient reached {name}: the VAE's forward pass must use it",
        )
    expect(
        grads["z_simple"].numel() == 0 or float(grads["z_simple"].abs().sum()) == 0,
        "the VAE's forward pass should not use z_simple (that is the autoencoder's layer)",
    )
    z = record.tensor("z_train")
    if not layers.runnable(model) or z.shape != (len(x), model.z_mu.out_features):
        return  # the judge cannot recompute the loss: the grad of z_mu above is all it has
    model.train()
    model.zero_grad(set_to_none=True)
    h = torch.flatten(model.encoder(x), start_dim=1)
    mu, logvar = model.z_mu(h), model.z_var(h)
    sampled = mu + (z - mu).detach()  # the recorded z, with dz/dmu = 1
    (recon(x, model.decode(sampled))["loss"] + kl(mu, logvar).sum(1).mean()).backward()
    want = model.z_mu.weight.grad
    expect(
        grads["z_mu"].shape == want.shape and torch.allclose(grads["z_mu"], want, rtol=1e-3, atol=1e-5),
        "the VAE loss's gradient does not reach z_mu as forward's mu should pass it: decode "
        "reparameterize(mu, logvar) of encode's mu",
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
        for i, key in enumerate(digests):
            # identical images can show slightly different states: the most upright one counts
            theta = min(abs(float(played.renders[j].state[2])) for j in played.digests[bytes(key)])
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
def other_frames_inputs(seed: int) -> Inputs:
    """Two different call seeds of ``collect_other_frames``."""
    rng = _rng(seed)
    first, second = (int(s) for s in rng.choice(2**31 - 1, size=2, replace=False))
    return {"seeds": [first, first, second], "n": 64}


def _collected(collect_other_frames: Any, env_id: str, n: int, seed: int, prefix: str) -> dict[str, Any]:
    """One call of the collector inside :func:`course_lib.recording.recording`, as
    :func:`~autograder.checks.episodes.recording_values` records it (kernel side)."""
    with recording() as log, student_code(f"collect_other_frames(ENV_ID, {n}, seed=...)"):
        frames = collect_other_frames(env_id, n, seed=seed)
    return recording_values(prefix, frames, log)


def _replayed_frames(
    record: Record, prefix: str, env_id: str, n: int, seed: int
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The frames of one recorded collector call, as the judge's replay of its environments makes
    them (``uint8 (n, 64, 64, 3)``), and the pixel box each was cropped with. The collector must have
    seeded its environment with ``seed``.

    Raises:
        CheckFailed: if the frames are not ``n`` renders of ``env_id``, each cropped and resized
            with ``preprocess_frame``.
    """
    what = f"collect_other_frames(ENV_ID, {n}, seed=...)"
    digests = expect_frames(record, prefix, n, what)
    played, built = replay_recording(record, prefix, (*OTHER_ENVS, "CartPole-v1"), what, seed)
    expect(built == {env_id}, f"the frames of {what} are renders of {', '.join(sorted(built))}, not {env_id}")
    played.match(digests, what, preprocessed="preprocess_frame(frame, crop)")
    return played.frames(digests), [played.crops[bytes(key)] for key in digests]


def _expect_variety(frames: np.ndarray, what: str, unique: int) -> None:
    distinct = len({f.tobytes() for f in frames})
    expect(distinct > unique, f"{what} returned mostly identical frames ({distinct} different in {len(frames)})")


@check("a5_frames", inputs=other_frames_inputs)
def a5_frames(inputs: Inputs, collect_other_frames: Any, env_id: str) -> dict[str, Any]:
    """The frames are renders of ``ENV_ID`` (one of Pendulum-v1, Acrobot-v1, MountainCar-v0),
    cropped and resized with ``preprocess_frame``; the same seed gives the same frames, another seed
    others."""
    require_student_code(collect_other_frames, "collect_other_frames")
    values: dict[str, Any] = {"env_id": str(env_id)}
    for k, seed in enumerate(inputs["seeds"]):
        values |= _collected(collect_other_frames, env_id, inputs["n"], seed, f"run{k}")
    return values


@a5_frames.judge
def _a5_frames(inputs: Inputs, record: Record) -> None:
    """Replays every environment the collector built (resets, actions, renders), crops its own renders
    with the boxes the collector gave ``preprocess_frame`` and matches every returned frame to one of
    them (:func:`~autograder.checks.episodes.replay_recording`): the environment, the frames and
    their variety come from the judge's replay, not from the kernel."""
    env_id = record.text("env_id")
    expect(env_id in OTHER_ENVS, f"ENV_ID is {env_id!r}; choose one of {OTHER_ENVS}")
    n = inputs["n"]
    frames = [_replayed_frames(record, f"run{k}", env_id, n, seed)[0] for k, seed in enumerate(inputs["seeds"])]
    _expect_variety(frames[0], f"collect_other_frames(ENV_ID, {n}, seed=...)", 16)
    expect(
        np.array_equal(frames[0], frames[1]),
        "collect_other_frames with the same seed returned different frames: seed env.reset and env.action_space",
    )
    expect(
        not np.array_equal(frames[0], frames[2]), "collect_other_frames with different seeds returned the same frames"
    )


def baseline_inputs(seed: int) -> Inputs:
    """Seeds of the collector call that shows the crop, and of the judge's training and validation frames."""
    rng = _rng(seed)
    crop, first, second = (int(s) for s in rng.choice(2**31 - 1, size=3, replace=False))
    return {"crop_seed": crop, "train_seed": first, "val_seed": second, "n": 96, "shown": 8}


@check("a5_beats_baseline", inputs=baseline_inputs)
def a5_beats_baseline(inputs: Inputs, model: nn.Module, collect_other_frames: Any, env_id: str) -> dict[str, Any]:
    """On fresh frames of the chosen environment, cropped as the collector crops them, the trained VAE
    reconstructs better than the mean image of other fresh frames."""
    require_student_code(collect_other_frames, "collect_other_frames")
    expect(isinstance(model, nn.Module), f"model should be the notebook's SmallVAE, got {type(model).__name__}")
    values: dict[str, Any] = {"env_id": str(env_id), "model": type(model).__name__}
    values |= _collected(collect_other_frames, env_id, inputs["shown"], inputs["crop_seed"], "crop")
    state = model.state_dict()
    n_params = sum(t.numel() for t in state.values())
    expect(n_params <= 4_000_000, f"the model has {n_params:,} parameters, too many to grade; keep WIDTH at 64 or less")
    values |= {f"param.{name}": t.detach().float() for name, t in state.items() if t.is_floating_point()}
    values["z_size"] = int(getattr(model, "z_size", 0))
    values["width"] = int(getattr(model, "width", 0))
    return values


@a5_beats_baseline.judge
def _a5_beats_baseline(inputs: Inputs, record: Record) -> None:
    """Replays a call of the collector, made with this run's seed, to learn its crop (every frame
    matched to the judge's own renders); renders fresh random-action frames of the environment
    itself with that crop, for seeds it draws; rebuilds the notebook's ``SmallVAE`` from the recorded
    weights and measures it on the judge's validation frames against the mean image of the judge's
    training frames."""
    from course_lib.data import sample_frames
    from course_lib.models import SmallVAE
    from course_lib.pretrained import is_shipped
    from course_lib.train import evaluate, mean_image_baseline

    env_id = record.text("env_id")
    expect(env_id in OTHER_ENVS, f"ENV_ID is {env_id!r}; choose one of {OTHER_ENVS}")
    # seeded with this run's seed: a call made now, not one recorded before grading
    _, boxes = _replayed_frames(record, "crop", env_id, inputs["shown"], inputs["crop_seed"])
    box = boxes[0]  # a box the judge itself cropped one of its renders with
    frames = {
        part: sample_frames(env_id, inputs["n"], seed=inputs[f"{part}_seed"], crop=box, progress=False)
        for part in ("train", "val")
    }
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
