"""Activity 2, the VAE: ``reparameterize`` (the noise the seeded generator draws, its statistics and
gradients) and ``encode``/``forward`` compared with the reference given the judge's weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from autograder.checks import (
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
from autograder.checks.hw1_vae.rebuild import (
    LOGVAR_SHIFT,
    SAME,
    SMALL_DIMS,
    as_template,
    build_model,
    expect_rebuildable,
    latent_weights,
    load_latent,
    model_values,
    rebuilt_model,
    rng_of,
    sub_seed,
    tensor_out,
    torch_generator,
)
from course_lib.frames import FRAME_SIZE
from course_lib.recording import digest
from course_lib.template import MyVAETemplate


def reparameterize_inputs(seed: int) -> Inputs:
    """Means and standard deviations of 4 latent dimensions, and the seed of the noise."""
    rng = rng_of(seed)
    return {**sampling.sample_inputs(rng), "seed": sub_seed(rng)}


@check("a2_reparameterize_stats", inputs=reparameterize_inputs)
def a2_reparameterize_stats(inputs: Inputs, model_cls: type) -> dict[str, Any]:
    """``reparameterize(mu, logvar)`` draws ``z ~ N(mu, exp(logvar))``: mean, spread, independence,
    Gaussian noise, and new noise at every call."""
    require_student_code(model_cls, "MyVAE")
    model = build_model(model_cls, (3, 4, list(SMALL_DIMS)))
    mu, logvar = sampling.mu_logvar(inputs)
    with seeded(inputs["seed"]), torch.no_grad(), student_code("reparameterize(mu, logvar)"):
        z1 = tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
        z2 = tensor_out(model.reparameterize(mu, logvar), "reparameterize(mu, logvar)")
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
    model = build_model(model_cls, (3, 4, list(SMALL_DIMS)))
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
    rng = rng_of(seed)
    return {
        "latent_dim": int(rng.integers(3, 8)),
        "weights_seed": sub_seed(rng),
        "x_seed": sub_seed(rng),
        "seed": sub_seed(rng),
    }


def _encode_forward_weights(inputs: Inputs) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    weights = latent_weights(SMALL_DIMS[-1] * 4, inputs["latent_dim"], inputs["weights_seed"])
    weight, bias = weights["z_var"]
    weights["z_var"] = (weight, bias + LOGVAR_SHIFT)  # sigma far from 1
    return weights


def _encode_forward_x(inputs: Inputs) -> torch.Tensor:
    return torch.rand(64, 3, FRAME_SIZE, FRAME_SIZE, generator=torch_generator(inputs["x_seed"]))  # (64, 3, 64, 64)


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
    model = build_model(model_cls, args)
    load_latent(model, _encode_forward_weights(inputs))
    decoder_input = getattr(model, "decoder_input", None)
    expect(isinstance(decoder_input, nn.Module), "MyVAE has no decoder_input: call self.build_decoder() in __init__")
    x = _encode_forward_x(inputs)
    model.eval()  # batch norm with running statistics: encode is deterministic
    values: dict[str, Any] = model_values("model", model)
    with layer_inputs(decoder_input) as captured, torch.no_grad(), seeded(inputs["seed"]):
        with student_code("the encoder of MyVAE"):
            values["h"] = tensor_out(torch.flatten(model.encoder(x), start_dim=1), "flatten(encoder(x))")
        with student_code("MyVAE.encode"):
            out = model.encode(x)
        expect(isinstance(out, (list, tuple)) and len(out) == 2, "encode(x) should return [mu, logvar]")
        values["mu"], values["logvar"] = tensor_out(out[0], "mu"), tensor_out(out[1], "logvar")
        with student_code("MyVAE.forward"):
            out1 = model(x)
            first = len(captured)  # the decoder inputs of the first call; the second call's follow
            model(x)
    expect(0 < first < len(captured), "forward should decode z with the decoder (self.decode(z))")
    expect(isinstance(out1, (list, tuple)) and len(out1) == 4, "forward(x) should return [x_hat, x, mu, logvar]")
    second = out1[1]
    values |= {
        "x_hat": tensor_out(out1[0], "forward(x)[0]")[:ENCODE_FORWARD_RECORDED],
        "x_hat_shape": np.array(out1[0].shape, dtype=np.int64),
        "x_out": np.frombuffer(digest(second.detach().numpy()), np.uint8)
        if torch.is_tensor(second)
        else np.zeros(0, np.uint8),
        "mu_f": tensor_out(out1[2], "forward(x)[2]"),
        "logvar_f": tensor_out(out1[3], "forward(x)[3]"),
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
