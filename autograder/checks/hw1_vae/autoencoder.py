"""Activity 1, the autoencoder (``MyVAE.__init__``): its structure, its output range, a loss that drops."""

from __future__ import annotations

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
    layers,
    require_student_code,
    seeded,
    student_code,
)
from autograder.checks.hw1_vae.rebuild import (
    PARTS,
    SAME,
    SMALL_DIMS,
    TINY_DIMS,
    as_template,
    build_model,
    encoder_parameter_count,
    encoder_weights,
    expect_rebuildable,
    expect_template_decoder,
    hidden_dims_of,
    kind_of,
    latent_weights,
    load_encoder,
    load_latent,
    model_values,
    rebuilt_model,
    rng_of,
    sub_seed,
    tensor_out,
    torch_generator,
)
from course_lib.frames import FRAME_SIZE


def structure_inputs(seed: int) -> Inputs:
    """Three ``MyVAE`` argument tuples (latent sizes drawn), and seeds for weights and inputs."""
    rng = rng_of(seed)
    cases = [
        (3, int(rng.integers(6, 13))),
        (3, int(rng.integers(4, 9)), list(SMALL_DIMS)),
        (1, int(rng.integers(3, 6)), list(TINY_DIMS)),
    ]
    return {"cases": cases, "seeds": [sub_seed(rng) for _ in cases]}


def _structure_x(args: tuple, seed: int) -> torch.Tensor:
    return torch.rand(2, args[0], FRAME_SIZE, FRAME_SIZE, generator=torch_generator(seed + 1))  # (2, C, 64, 64)


def _latent_of(args: tuple, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return latent_weights(hidden_dims_of(args)[-1] * 4, args[1], seed + 2)


@check("a1_structure", inputs=structure_inputs)
def a1_structure(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """The encoder has one Conv2d(k3, s2, p1) + BatchNorm2d + LeakyReLU block per hidden dim, and
    ``z_simple``, ``z_mu``, ``z_var`` map ``hidden_dims[-1] * 4`` features to ``latent_dim``."""
    require_student_code(model_cls, "MyVAE")
    values: dict[str, Any] = {}
    for k, (args, seed) in enumerate(zip(inputs["cases"], inputs["seeds"], strict=True)):
        args = tuple(args)
        model = build_model(model_cls, args)
        values |= model_values(f"model_{k}", model, state=False)  # the weights are the judge's
        model.eval()  # batch norm with the running statistics loaded below
        h, z = torch.zeros(0), torch.zeros(0)
        if load_encoder(model, encoder_weights(args[0], hidden_dims_of(args), seed)):
            with torch.no_grad(), student_code(f"the encoder of MyVAE{args}"):
                h = tensor_out(model.encoder(_structure_x(args, seed)), "encoder(x)")
            try:
                load_latent(model, _latent_of(args, seed))
                with torch.no_grad(), student_code(f"the z layers of MyVAE{args}"):
                    flat = torch.flatten(h, start_dim=1)
                    z = torch.stack([tensor_out(getattr(model, n)(flat), n) for n in ("z_simple", "z_mu", "z_var")])
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
        in_channels, latent_dim, dims = args[0], args[1], hidden_dims_of(args)
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
            kinds = [kind_of(m) for m in block.children()] if isinstance(block, nn.Sequential) else [kind_of(block)]
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
    rng = rng_of(seed)
    cases = [(3, int(rng.integers(6, 11)), list(SMALL_DIMS)), (1, int(rng.integers(3, 6)), list(TINY_DIMS))]
    return {"cases": cases, "seeds": [sub_seed(rng) for _ in cases]}


def _output_data(args: tuple, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` ``(4, C, 64, 64)``, codes far from the data ``(4, latent_dim)``, and large activations
    ``(4, h[0], 32, 32)`` for the output layer."""
    g = torch_generator(seed)
    x = torch.rand(4, args[0], FRAME_SIZE, FRAME_SIZE, generator=g)
    far = 30.0 * torch.randn(4, args[1], generator=g)  # far from the prior's bulk
    loud = 10.0 * torch.randn(4, hidden_dims_of(args)[0], FRAME_SIZE // 2, FRAME_SIZE // 2, generator=g)
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
            model = build_model(model_cls, args)
        model.train()
        values |= model_values(f"model_{k}", model)
        with torch.no_grad(), student_code(f"MyVAE{args}.forward"):
            out = model(x)
            expect(isinstance(out, (list, tuple)) and len(out) >= 1, "forward(x) should return [x_hat, x, mu, logvar]")
            tensor_out(out[0], "forward(x)[0]")
            values[f"far_{k}"] = tensor_out(model.decode(far), "decode(z)")
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
    rng = rng_of(seed)
    return {"frames_seed": sub_seed(rng) % 10_000, "init_seed": sub_seed(rng), "steps": 25}


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
        model = _training_model(build_model(model_cls, (*TRAINING_ARGS[:2], list(SMALL_DIMS))), inputs["init_seed"])
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
