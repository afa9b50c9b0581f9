"""Homework 2's known submissions (``hw2_world_models``): its mutants with the bugs of the World
Models code (Ha & Schmidhuber 2018's TensorFlow code), their bugs written other ways, and correct
answers written differently from the reference."""

from __future__ import annotations

from autograder.submissions import Mutant, variant

W1, W2, W3 = "01_data_and_conv_vae.ipynb", "02_vae_loss.ipynb", "03_train_and_rnn_dataset.ipynb"

_HW2_CONV_VAE = """
class ConvVAE(nn.Module):
    def __init__(self, z_size=32):
        super().__init__()
        self.z_size = z_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2), {relu1}, nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2), nn.ReLU(), nn.Conv2d(128, 256, 4, 2), nn.ReLU(), nn.Flatten())
        self.fc_mu = nn.Linear(1024, z_size)
        self.fc_logvar = nn.Linear(1024, z_size)
        self.fc_decode = nn.Linear({decode_in}, 1024){extra}
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, 2), nn.ReLU(), nn.ConvTranspose2d(128, 64, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, 2), nn.ReLU(), nn.ConvTranspose2d(32, 3, 6, 2), {output})

    def encode(self, x):
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def reparameterize(self, mu, logvar):
        return mu + {sigma} * torch.randn_like(mu)

    def decode(self, z):
        return self.decoder(self.fc_decode(z).view(-1, 1024, 1, 1))

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar
"""


def _conv_vae(
    relu1: str = "nn.ReLU()",
    extra: str = "",
    output: str = "nn.Sigmoid()",
    sigma: str = "torch.exp(0.5 * logvar)",
    decode_in: str = "z_size",
) -> str:
    code = _HW2_CONV_VAE
    values = {"relu1": relu1, "extra": extra, "output": output, "sigma": sigma, "decode_in": decode_in}
    for key, value in values.items():
        code = code.replace("{" + key + "}", value)
    return code


#: w1: logvar used as the log of the standard deviation (sigma = exp(logvar), not exp(logvar / 2)).
HW2_LOGSIGMA_BUG = _conv_vae(sigma="torch.exp(logvar)")
#: w1: the decoder's output clamped to [0, 1] (Hardtanh) instead of squashed by a sigmoid: in range,
#: so the visible tests pass, but not the paper's decoder.
HW2_CLAMPED_OUTPUT_BUG = _conv_vae(output="nn.Hardtanh(0.0, 1.0)")

_VAE_LOSS = """
def vae_loss(x, x_hat, mu, logvar, kl_tolerance=0.5):
    recon = {recon}
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    {floor}
    return {"loss": recon + kl, "recon": recon, "kl": kl}
"""
_RECON = "(x - x_hat).pow(2).sum(dim=(1, 2, 3)).mean()"
_FLOOR = "kl = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()"


def _vae_loss(recon: str = _RECON, floor: str = _FLOOR) -> str:
    return _VAE_LOSS.replace("{recon}", recon).replace("{floor}", floor)


#: w2: the KL floor applied to the batch mean instead of to each sample.
FLOOR_AFTER_MEAN_BUG = _vae_loss(floor="kl = torch.clamp(kl.mean(), min=kl_tolerance * mu.shape[1])")
#: w2: the squared error averaged over the pixels (F.mse_loss) instead of summed over them.
MEAN_OVER_PIXELS_BUG = _vae_loss(recon="torch.nn.functional.mse_loss(x_hat, x)")

_ENCODE_ROLLOUTS = """
def encode_rollouts(model, frames, actions, batch_size=256):
    sequences = []
    for rollout_frames, rollout_actions in zip(frames, actions):
        with torch.no_grad():
            mu, logvar = model.encode(to_tensor(np.array(rollout_frames)))
            z = model.reparameterize(mu, logvar)
        a = np.asarray(rollout_actions, dtype=np.float32)
        sequences.append({"mu": {mu}.numpy(), "logvar": logvar.numpy(), "actions": {actions}})
    return sequences
"""


def _encode_rollouts(mu: str = "mu", actions: str = "a") -> str:
    return _ENCODE_ROLLOUTS.replace("{mu}", mu).replace("{actions}", actions)


#: w3: the World Models TensorFlow code's encoder returned a sampled z, stored in place of mu.
SAMPLED_Z_BUG = _encode_rollouts(mu="z")
#: w3: each code paired with the next step's action (actions shifted by one).
SHIFTED_ACTIONS_BUG = _encode_rollouts(actions="np.concatenate([a[1:], a[-1:]])")

HW2_MUTANTS: dict[str, Mutant] = {
    "w1_no_relu_after_the_first_convolution": Mutant(
        W1,
        "w1_conv_vae",
        _conv_vae(relu1="nn.Identity()"),
        frozenset({"w1_architecture", "w1_encode_decode", "w1_sampling"}),
        hint="The encoder looks like it is missing the ReLU after its first convolution.",
    ),
    # the template's hard-coded 512 of homework 1, here 32: right for the default z_size only
    "w1_decoder_input_hard_coded": Mutant(
        W1,
        "w1_conv_vae",
        _conv_vae(decode_in="32"),
        frozenset({"w1_parameter_count", "w1_architecture", "w1_encode_decode"}),
        hint="The decoder's first linear layer looks like it has a hard-coded input size instead of z_size.",
    ),
    "w1_leftover_layer": Mutant(
        W1,
        "w1_conv_vae",
        _conv_vae(extra="\n        self.spare = nn.Linear(z_size, z_size)"),
        frozenset({"w1_parameter_count"}),
        hint="The model looks like it holds a layer that it never uses, which changes its parameter count.",
    ),
    "w1_clamped_output": Mutant(
        W1,
        "w1_conv_vae",
        HW2_CLAMPED_OUTPUT_BUG,
        frozenset({"w1_encode_decode", "w1_sampling"}),
        hint="The decoder's output looks clamped into [0, 1] instead of squashed by a sigmoid.",
    ),
    "w1_logvar_as_logsigma": Mutant(
        W1,
        "w1_conv_vae",
        HW2_LOGSIGMA_BUG,
        frozenset({"w1_sampling"}),
        hint=(
            "reparameterize looks like it uses logvar as the log of the standard "
            "deviation: the standard deviation is exp(logvar / 2), not exp(logvar)."
        ),
    ),
    "w2_floor_after_batch_mean": Mutant(
        W2,
        "w2_vae_loss",
        FLOOR_AFTER_MEAN_BUG,
        frozenset({"w2_kl_floor", "w2_gradients"}),
        hint="The KL floor looks applied to the batch mean instead of to each sample before averaging.",
    ),
    "w2_mean_over_pixels": Mutant(
        W2,
        "w2_vae_loss",
        MEAN_OVER_PIXELS_BUG,
        frozenset({"w2_recon", "w2_gradients"}),
        hint=(
            "The reconstruction error looks averaged over the pixels instead of "
            "summed over them (and then averaged over the batch)."
        ),
    ),
    "w2_kl_detached": Mutant(
        W2,
        "w2_vae_loss",
        _vae_loss(floor="kl = torch.clamp(kl.detach(), min=kl_tolerance * mu.shape[1]).mean()"),
        frozenset({"w2_gradients"}),
        hint="The KL term looks detached from the graph, so it sends no gradient to mu and logvar.",
    ),
    "w3_sampled_z": Mutant(
        W3,
        "w3_encode_rollouts",
        SAMPLED_Z_BUG,
        frozenset({"w3_encode"}),
        hint="The stored mu looks like a sampled z instead of the encoder's mean.",
    ),
    "w3_shifted_actions": Mutant(
        W3,
        "w3_encode_rollouts",
        SHIFTED_ACTIONS_BUG,
        frozenset({"w3_encode"}),
        hint="Each code looks paired with the next step's action instead of the action taken at its own step.",
    ),
    "w3_pickled_rollouts": Mutant(
        W3,
        "w3_save_rnn_dataset",
        "def save_rnn_dataset(sequences, directory):\n    directory = Path(directory)\n"
        "    directory.mkdir(parents=True, exist_ok=True)\n    paths = []\n"
        "    for i, seq in enumerate(sequences):\n        paths.append(directory / f'rollout_{i:04d}.npz')\n"
        "        actions = np.array(seq['actions'], dtype=object)\n"
        "        np.savez(paths[-1], mu=seq['mu'], logvar=seq['logvar'], actions=actions)\n"
        "    return paths",
        frozenset({"w3_files"}),
        hint=(
            "The saved actions look stored as an object array, which needs pickle "
            "to load (np.load refuses it by default)."
        ),
    ),
}


# ---------------------------------------------------------------- the same bugs, written another way
def _variant(of: str, code: str) -> Mutant:
    """A variant of the mutant named ``of``: other code, the same bug (so the same cells to fail)."""
    return variant(of, HW2_MUTANTS[of], code)


#: The bugs of :data:`HW2_MUTANTS` written a second or third way, for the feedback hints
#: (:mod:`autograder.hints`): held out one at a time, they measure how often a hint names the right
#: bug. Judged in-process only (the nbgrader self-tests grade the mutants above).
HW2_VARIANTS: dict[str, Mutant] = {
    "w1_clamped_output_hardsigmoid": _variant("w1_clamped_output", _conv_vae(output="nn.Hardsigmoid()")),
    "w1_logvar_as_logsigma_exp": _variant("w1_logvar_as_logsigma", _conv_vae(sigma="logvar.exp()")),
    "w1_leftover_layer_conv": _variant(
        "w1_leftover_layer", _conv_vae(extra="\n        self.unused = nn.Conv2d(3, 3, 1)")
    ),
    "w2_floor_after_batch_mean_maximum": _variant(
        "w2_floor_after_batch_mean",
        _vae_loss(floor="kl = torch.maximum(kl.sum() / x.shape[0], torch.tensor(kl_tolerance * mu.shape[1]))"),
    ),
    "w2_floor_after_batch_mean_two_steps": _variant(
        "w2_floor_after_batch_mean", _vae_loss(floor="kl = kl.mean()\n    kl = kl.clamp(min=kl_tolerance * mu.size(1))")
    ),
    "w2_mean_over_pixels_mean": _variant("w2_mean_over_pixels", _vae_loss(recon="((x - x_hat) ** 2).mean()")),
    "w2_mean_over_pixels_per_image": _variant(
        "w2_mean_over_pixels", _vae_loss(recon="(x - x_hat).pow(2).mean(dim=(1, 2, 3)).mean()")
    ),
    "w2_kl_detached_first": _variant(
        "w2_kl_detached", _vae_loss(floor="kl = kl.detach().clamp(min=kl_tolerance * mu.shape[1]).mean()")
    ),
    "w3_sampled_z_by_hand": _variant(
        "w3_sampled_z", _encode_rollouts(mu="(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))")
    ),
    "w3_shifted_actions_roll": _variant("w3_shifted_actions", _encode_rollouts(actions="np.roll(a, -1, axis=0)")),
    "w3_shifted_actions_append": _variant(
        "w3_shifted_actions", _encode_rollouts(actions="np.append(a[1:], a[-1:], axis=0)")
    ),
    "w1_decoder_input_hard_coded_product": _variant(
        "w1_decoder_input_hard_coded", _conv_vae(decode_in="32").replace("(32, 1024)", "(32, 2 * 2 * 256)")
    ),
    "w1_no_relu_after_the_first_convolution_omitted": _variant(
        "w1_no_relu_after_the_first_convolution",
        _conv_vae().replace("nn.Conv2d(3, 32, 4, 2), nn.ReLU(), ", "nn.Conv2d(3, 32, 4, 2), "),
    ),
    "w3_pickled_rollouts_list": _variant(
        "w3_pickled_rollouts",
        "def save_rnn_dataset(sequences, directory):\n    Path(directory).mkdir(parents=True, exist_ok=True)\n"
        "    paths = [Path(directory) / f'rollout_{i:04d}.npz' for i in range(len(sequences))]\n"
        "    for path, seq in zip(paths, sequences):\n"
        "        actions = np.asarray(seq['actions'], dtype='O')\n"
        "        np.savez_compressed(path, mu=seq['mu'], logvar=seq['logvar'], actions=actions)\n"
        "    return paths",
    ),
}

HW2_ALTERNATIVES: dict[tuple[str, str], str] = {
    (W1, "w1_conv_vae"): """
class ConvVAE(nn.Module):
    def __init__(self, z_size=32):
        super().__init__()
        self.z_size = z_size
        self.to_logvar = nn.Linear(1024, z_size)
        self.to_mu = nn.Linear(1024, z_size)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, stride=2) for a, b in [(3, 32), (32, 64), (64, 128), (128, 256)])
        self.expand = nn.Linear(z_size, 1024)
        specs = [(1024, 128, 5), (128, 64, 5), (64, 32, 6), (32, 3, 6)]
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(a, b, k, stride=2) for a, b, k in specs)

    def encode(self, x):
        for conv in self.convs:
            x = torch.relu(conv(x))
        h = x.flatten(start_dim=1)
        logvar = self.to_logvar(h)
        return self.to_mu(h), logvar

    def reparameterize(self, mu, logvar):
        return mu + torch.randn(mu.shape) * (logvar / 2).exp()

    def decode(self, z):
        h = self.expand(z)[:, :, None, None]
        for i, deconv in enumerate(self.deconvs):
            h = deconv(h)
            h = torch.sigmoid(h) if i == len(self.deconvs) - 1 else torch.relu(h)
        return h

    def forward(self, x):
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar
""",
    (W2, "w2_vae_loss"): """
def vae_loss(x, x_hat, mu, logvar, kl_tolerance=0.5):
    batch = x.shape[0]
    recon = torch.nn.functional.mse_loss(x_hat, x, reduction="sum") / batch
    kl_each = 0.5 * torch.sum(mu**2 + torch.exp(logvar) - 1 - logvar, dim=-1)
    floor = torch.full_like(kl_each, kl_tolerance * mu.size(1))
    kl = torch.maximum(kl_each, floor).sum() / batch
    return dict(loss=recon + kl, recon=recon, kl=kl)
""",
    (W3, "w3_encode_rollouts"): """
def encode_rollouts(model, frames, actions, batch_size=64):
    out = []
    model.eval()
    with torch.no_grad():
        for f, a in zip(frames, actions):
            parts = [model.encode(to_tensor(np.array(f[i:i + batch_size]))) for i in range(0, len(f), batch_size)]
            out.append(dict(
                mu=torch.cat([p[0] for p in parts]).numpy(),
                logvar=torch.cat([p[1] for p in parts]).numpy(),
                actions=np.array(a, dtype="float32"),
            ))
    return out
""",
    (W3, "w3_save_rnn_dataset"): """
def save_rnn_dataset(sequences, directory):
    import os
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, s in enumerate(sequences):
        paths.append(Path(directory, "rollout_%04d.npz" % i))
        np.savez_compressed(paths[-1], **{k: s[k] for k in ("mu", "logvar", "actions")})
    return paths
""",
}
