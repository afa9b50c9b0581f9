"""Known submissions for the self-tests and the demo: mutants with classic bugs, and correct answers
written differently from the reference.

A mutant is the source notebook with one answer cell (found by its ``grade_id``) replaced by code
with a bug; :class:`Mutant` names the graded cells it must fail (every other cell of its notebook
must pass). Between them, the mutants give every graded cell of both homeworks at least one bug
that its visible tests let through and its hidden check catches (``tests/test_checks.py``). Many are
the bugs of the course's sources (the CMPE 260 homework template, the World Models TensorFlow
code); each says which.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass(frozen=True)
class Mutant:
    """An answer with a bug: the notebook, the ``grade_id`` of the answer cell it replaces, the code,
    and the graded cells it must fail.

    Attributes:
        hint: for a mutant of :data:`HW1_MUTANTS` or :data:`HW2_MUTANTS`, the sentence the feedback
            shows when a student's failures match this bug (:mod:`autograder.hints`): what looks
            wrong, never the checks' inputs or expected values. Empty for a variant.
        bug: for a variant (:data:`HINT_VARIANTS`), the name of the mutant whose bug it writes
            another way (its hint is that mutant's); ``None`` for the mutant that states the bug.
    """

    notebook: str
    answer: str
    code: str
    fails: frozenset[str]
    hint: str = ""
    bug: str | None = None


NB1, NB3, NB5 = "01_autoencoder_and_vae.ipynb", "03_curating_cartpole.ipynb", "05_other_environment.ipynb"
W1, W2, W3 = "01_data_and_conv_vae.ipynb", "02_vae_loss.ipynb", "03_train_and_rnn_dataset.ipynb"

# ---------------------------------------------------------------- homework 1 (hw1_vae)
_MYVAE = """
class MyVAE(MyVAETemplate):
    def __init__(self, in_channels, latent_dim, hidden_dims=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.hidden_dims = list(hidden_dims) if hidden_dims is not None else [32, 64, 128, 256, 512]
        modules, in_dim = [], in_channels
        for h_dim in self.hidden_dims:
            modules.append(nn.Sequential({block}))
            in_dim = h_dim
        self.encoder = nn.Sequential(*modules)
        self.z_simple = nn.Linear(self.hidden_dims[-1] * 4, latent_dim)
        self.z_mu = nn.Linear(self.hidden_dims[-1] * 4, latent_dim)
        self.z_var = nn.Linear(self.hidden_dims[-1] * 4, latent_dim)
        h0 = self.hidden_dims[0]
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(h0, h0, 3, 2, 1, output_padding=1), nn.BatchNorm2d(h0), nn.LeakyReLU(),
            nn.Conv2d(h0, in_channels, 3, padding=1), {output})
        self.build_decoder()
"""
_BLOCK = "nn.Conv2d(in_dim, h_dim, 3, 2, 1), nn.BatchNorm2d(h_dim), nn.LeakyReLU()"


def _myvae(block: str = _BLOCK, output: str = "nn.Sigmoid()") -> str:
    return _MYVAE.replace("{block}", block).replace("{output}", output)


#: Activity 1, the template's Tanh output layer, whose values leave [0, 1].
TANH_OUTPUT_BUG = _myvae(output="nn.Tanh()")

_REPARAMETERIZE = """
@add_to_class(MyVAE)
def reparameterize(self, mu, logvar):
    return {z}
"""


def _reparameterize(z: str) -> str:
    return _REPARAMETERIZE.replace("{z}", z)


#: Activity 2, logvar used as the log of the standard deviation.
LOGSIGMA_BUG = _reparameterize("mu + torch.exp(logvar) * torch.randn_like(mu)")

#: Activity 3, the homework template's reset loop: ``frame_idx`` is never set back, so the
#: environment is reset once, and never on termination.
TEMPLATE_RESET_BUG = """
def collect_frames(env, n_frames, episode_length=20, seed=None):
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    observation, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    frame_idx = 0
    for i in range(n_frames):
        frame_idx += 1
        if frame_idx == episode_length:
            observation, info = env.reset()
        frames[i] = preprocess_frame(frame_of(env, observation), "CartPole-v1")
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
    return frames
"""

#: Activity 3, the template's bug written with the loop index: ``i == episode_length`` holds once, so
#: the environment is reset once, and never on termination.
LOOP_INDEX_RESET_BUG = """
def collect_frames(env, n_frames, episode_length=20, seed=None):
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    observation, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    for i in range(n_frames):
        if i > 0 and i == episode_length:
            observation, info = env.reset()
        frames[i] = preprocess_frame(frame_of(env, observation), "CartPole-v1")
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
    return frames
"""

#: Activity 3, the template's bug written with the counter set to zero inside the loop: it never
#: reaches ``episode_length``, so the environment is never reset, not even on termination.
COUNTER_IN_LOOP_RESET_BUG = """
def collect_frames(env, n_frames, episode_length=20, seed=None):
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    frames = []
    for _ in range(n_frames):
        steps = 0
        frames.append(preprocess_frame(frame_of(env, observation), "CartPole-v1"))
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        if steps > episode_length:
            observation, _ = env.reset()
    return np.array(frames, dtype=np.uint8)
"""

_COLLECT_FRAMES = """
def collect_frames(env, n_frames, episode_length=20, seed=None):
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    observation, info = env.reset(seed={seed})
    env.action_space.seed({seed})
    frame_idx = 0
    for i in range(n_frames):
        frames[i] = preprocess_frame(frame_of(env, observation), "CartPole-v1")
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        frame_idx += 1
        if {reset} or terminated or truncated:
            observation, info = env.reset()
            frame_idx = 0
    return frames
"""


def _collect_frames(reset: str = "frame_idx == episode_length", seed: str = "seed") -> str:
    return _COLLECT_FRAMES.replace("{reset}", reset).replace("{seed}", seed)


#: Activity 4, the homework template's angle filter: kept frames are written at the step index, so
#: rejected steps leave black frames in the array.
TEMPLATE_FILTER_BUG = """
def collect_upright_frames(env, n_frames, max_angle=0.3, seed=None):
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    observation, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    for i in range(n_frames):
        if -max_angle <= observation[2] <= max_angle:
            frames[i] = preprocess_frame(frame_of(env, observation), "CartPole-v1")
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, info = env.reset()
    return frames
"""

#: Activity 4, the template's bug written with a list of placeholders: rejected steps leave their
#: black placeholder in the result.
BLACK_FRAMES_LIST_BUG = """
def collect_upright_frames(env, n_frames, max_angle=0.3, seed=None):
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    frames = [np.zeros((64, 64, 3), dtype=np.uint8) for _ in range(n_frames)]
    for step in range(n_frames):
        if abs(observation[2]) <= max_angle:
            frames[step] = preprocess_frame(frame_of(env, observation), "CartPole-v1")
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, _ = env.reset()
    return np.stack(frames)
"""

#: Activity 4, the angle of the state before the step tested, the frame after it kept (a flag
#: computed before stepping).
PREVIOUS_STATE_FLAG_BUG = """
def collect_upright_frames(env, n_frames, max_angle=0.3, seed=None):
    env.action_space.seed(seed)
    observation, _ = env.reset(seed=seed)
    kept = []
    while len(kept) < n_frames:
        upright = -max_angle <= observation[2] <= max_angle
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if upright:
            kept.append(preprocess_frame(frame_of(env, observation), "CartPole-v1"))
        if terminated or truncated:
            observation, _ = env.reset()
    return np.array(kept, dtype=np.uint8)
"""

_COLLECT_UPRIGHT = """
def collect_upright_frames(env, n_frames, max_angle=0.3, seed=None):
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    observation, info = env.reset(seed=seed)
    {seed_actions}
    kept = 0
    while kept < n_frames:
        {body}
        if terminated or truncated:
            observation, info = env.reset()
    return frames
"""
_UPRIGHT_BODY = """angle = observation[2]
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if abs({angle}) <= max_angle:
            frames[kept] = preprocess_frame(frame_of(env, observation), "CartPole-v1")
            kept += 1"""


def _collect_upright(angle: str = "observation[2]", seed_actions: str = "env.action_space.seed(seed)") -> str:
    body = _UPRIGHT_BODY.replace("{angle}", angle)
    return _COLLECT_UPRIGHT.replace("{body}", body).replace("{seed_actions}", seed_actions)


_COLLECT_OTHER = """
def collect_other_frames(env_id, n_frames, seed=None):
    crop = Crop(top=0.22, bottom=0.78, left=0.22, right=0.78) if env_id == "Pendulum-v1" else Crop()
    env = make_env({env}, seed={seed})
    observation, info = env.reset(seed={seed})
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    for i in range(n_frames):
        frames[i] = preprocess_frame(frame_of(env, observation), {crop})
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, info = env.reset()
    return frames
"""


def _collect_other(env: str = "env_id", crop: str = "crop", seed: str = "seed") -> str:
    return _COLLECT_OTHER.replace("{env}", env).replace("{crop}", crop).replace("{seed}", seed)


#: Activity 5, frames of CartPole instead of the chosen environment.
WRONG_ENV_BUG = _collect_other(env='"CartPole-v1"', crop='"CartPole-v1"')

HW1_MUTANTS: dict[str, Mutant] = {
    # a1: the autoencoder
    "a1_activation_before_batchnorm": Mutant(
        NB1,
        "a1_myvae",
        _myvae(block=_BLOCK.replace("nn.BatchNorm2d(h_dim), nn.LeakyReLU()", "nn.LeakyReLU(), nn.BatchNorm2d(h_dim)")),
        frozenset({"a1_structure"}),
        hint=(
            "The encoder's blocks look like they apply the activation before the "
            "batch normalisation instead of after it."
        ),
    ),
    "a1_relu_output": Mutant(
        NB1,
        "a1_myvae",
        _myvae(output="nn.ReLU()"),
        frozenset({"a1_output_range"}),
        hint=(
            "The decoder's last activation looks like it lets values leave [0, 1] "
            "(a ReLU, or no squashing, where a sigmoid is expected)."
        ),
    ),
    "a1_softmax_output": Mutant(
        NB1,
        "a1_myvae",
        _myvae(output="nn.Softmax(dim=1)"),
        frozenset({"a1_loss_drops"}),
        hint=(
            "The decoder's output looks normalised across the colour channels (a "
            "softmax) instead of squashed pixel by pixel with a sigmoid."
        ),
    ),
    # a2: the VAE
    "a2_noise_shared_by_dimensions": Mutant(
        NB1,
        "a2_reparameterize",
        _reparameterize("mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape[0], 1)"),
        frozenset({"a2_reparameterize_stats"}),
        hint=(
            "The reparameterisation looks like it draws one noise value per sample "
            "and shares it across the latent dimensions, instead of independent "
            "noise for each dimension."
        ),
    ),
    "a2_logvar_as_logsigma": Mutant(
        NB1,
        "a2_reparameterize",
        LOGSIGMA_BUG,
        frozenset({"a2_reparameterize_stats", "a2_gradients", "a2_encode_forward"}),
        hint=(
            "logvar looks used as the log of the standard deviation: the standard "
            "deviation is exp(logvar / 2), not exp(logvar)."
        ),
    ),
    "a2_sigma_detached": Mutant(
        NB1,
        "a2_reparameterize",
        _reparameterize("mu + torch.exp(0.5 * logvar).detach() * torch.randn_like(mu)"),
        frozenset({"a2_gradients"}),
        hint=(
            "The standard deviation looks detached from the graph, so no gradient reaches logvar through the sampled z."
        ),
    ),
    "a2_mu_and_logvar_swapped": Mutant(
        NB1,
        "a2_encode",
        "@add_to_class(MyVAE)\ndef encode(self, x):\n    h = torch.flatten(self.encoder(x), start_dim=1)\n"
        "    return [self.z_var(h), self.z_mu(h)]",
        frozenset({"a2_encode_forward"}),
        hint="encode looks like it returns mu and logvar the other way round.",
    ),
    "a2_decodes_mu": Mutant(
        NB1,
        "a2_forward",
        "@add_to_class(MyVAE)\ndef forward(self, x):\n    mu, logvar = self.encode(x)\n"
        "    return [self.decode(mu), x, mu, logvar]",
        frozenset({"a2_encode_forward"}),
        hint="forward looks like it decodes mu instead of the sampled z.",
    ),
    # a3: episode resets
    "a3_template_reset_bug": Mutant(
        NB3,
        "a3_collect_frames",
        TEMPLATE_RESET_BUG,
        frozenset({"a3_reset_pattern"}),
        hint=(
            "The step counter looks never set back after a reset, so the "
            "environment is not reset every episode_length frames (nor when an "
            "episode ends)."
        ),
    ),
    "a3_reset_one_frame_early": Mutant(
        NB3,
        "a3_collect_frames",
        _collect_frames(reset="frame_idx == episode_length - 1"),
        frozenset({"a3_reset_pattern"}),
        hint="The episodes look one frame shorter than episode_length: the reset condition fires a step early.",
    ),
    "a3_seed_ignored": Mutant(
        NB3,
        "a3_collect_frames",
        _collect_frames(seed="0"),
        frozenset({"a3_frames", "a3_reset_pattern"}),
        hint=(
            "The frames look like they do not depend on the seed argument: it "
            "should reach env.reset and the action space."
        ),
    ),
    # a4: the angle filter
    "a4_template_black_frames": Mutant(
        NB3,
        "a4_collect_upright_frames",
        TEMPLATE_FILTER_BUG,
        frozenset({"a4_angles", "a4_count"}),
        hint="Kept frames look written at the step's index, so the rejected steps leave black frames in the array.",
    ),
    "a4_angle_of_the_previous_state": Mutant(
        NB3,
        "a4_collect_upright_frames",
        _collect_upright(angle="angle"),
        frozenset({"a4_angles"}),
        hint="The angle test looks applied to the state before the step, while the frame kept is the one after it.",
    ),
    "a4_actions_unseeded": Mutant(
        NB3,
        "a4_collect_upright_frames",
        _collect_upright(seed_actions="pass"),
        frozenset({"a4_count"}),
        hint="The random actions look unseeded: the action space should be seeded with the seed argument too.",
    ),
    # a5: another environment
    "a5_wrong_environment": Mutant(
        NB5,
        "a5_collect_other_frames",
        WRONG_ENV_BUG,
        frozenset({"a5_frames", "a5_beats_baseline"}),
        hint="The frames look like they come from another environment than the env_id asked for.",
    ),
    # unseeded frames cannot be told from frames recorded before grading, so the baseline check
    # (which needs a call made now) fails too
    "a5_seed_ignored": Mutant(
        NB5,
        "a5_collect_other_frames",
        _collect_other(seed="None"),
        frozenset({"a5_frames", "a5_beats_baseline"}),
        hint="The frames look like they do not depend on the seed argument: it should reach make_env and env.reset.",
    ),
}

# ---------------------------------------------------------------- homework 2 (hw2_world_models)
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
    original = {**HW1_MUTANTS, **HW2_MUTANTS}[of]
    return Mutant(original.notebook, original.answer, code, original.fails, bug=of)


#: The bugs of :data:`HW1_MUTANTS` and :data:`HW2_MUTANTS` written a second or third way, for the
#: feedback hints (:mod:`autograder.hints`): held out one at a time, they measure how often a hint
#: names the right bug. Judged in-process only (the nbgrader self-tests grade the mutants above).
HINT_VARIANTS: dict[str, Mutant] = {
    "a1_relu_output_identity": _variant("a1_relu_output", _myvae(output="nn.Identity()")),
    "a1_relu_output_leaky": _variant("a1_relu_output", _myvae(output="nn.LeakyReLU()")),
    "a1_activation_before_batchnorm_relu": _variant(
        "a1_activation_before_batchnorm",
        _myvae(block="nn.Conv2d(in_dim, h_dim, 3, stride=2, padding=1), nn.LeakyReLU(0.01), nn.BatchNorm2d(h_dim)"),
    ),
    "a2_noise_shared_by_dimensions_column": _variant(
        "a2_noise_shared_by_dimensions",
        _reparameterize("mu + (0.5 * logvar).exp() * torch.randn_like(mu[:, :1])"),
    ),
    "a2_noise_shared_by_dimensions_expand": _variant(
        "a2_noise_shared_by_dimensions",
        _reparameterize("mu + torch.exp(logvar / 2) * torch.randn(len(mu), 1).expand_as(mu)"),
    ),
    "a2_logvar_as_logsigma_normal": _variant(
        "a2_logvar_as_logsigma", _reparameterize("torch.distributions.Normal(mu, logvar.exp()).rsample()")
    ),
    "a2_logvar_as_logsigma_std": _variant(
        "a2_logvar_as_logsigma", _reparameterize("mu + torch.randn_like(mu) * torch.exp(logvar)")
    ),
    "a2_sigma_detached_logvar": _variant(
        "a2_sigma_detached", _reparameterize("mu + torch.exp(0.5 * logvar.detach()) * torch.randn_like(mu)")
    ),
    "a2_sigma_detached_data": _variant(
        "a2_sigma_detached", _reparameterize("mu + (logvar / 2).exp().data * torch.randn_like(mu)")
    ),
    "a2_mu_and_logvar_swapped_view": _variant(
        "a2_mu_and_logvar_swapped",
        "@add_to_class(MyVAE)\ndef encode(self, x):\n    h = self.encoder(x).view(x.size(0), -1)\n"
        "    mu, logvar = self.z_var(h), self.z_mu(h)\n    return mu, logvar",
    ),
    "a2_decodes_mu_named": _variant(
        "a2_decodes_mu",
        "@add_to_class(MyVAE)\ndef forward(self, x):\n    mu, logvar = self.encode(x)\n    z = mu\n"
        "    x_hat = self.decode(z)\n    return x_hat, x, mu, logvar",
    ),
    "a3_reset_one_frame_early_plus_one": _variant(
        "a3_reset_one_frame_early", _collect_frames(reset="frame_idx + 1 >= episode_length")
    ),
    "a3_seed_ignored_fixed": _variant("a3_seed_ignored", _collect_frames(seed="123")),
    "a4_actions_unseeded_fresh": _variant(
        "a4_actions_unseeded", _collect_upright(seed_actions="env.action_space.seed(None)")
    ),
    "a5_seed_ignored_fixed": _variant("a5_seed_ignored", _collect_other(seed="7")),
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
    # the bugs below were written one way only until their precision was measured (issue: a hint for
    # every known bug that can have one)
    "a1_softmax_output_after_sigmoid": _variant("a1_softmax_output", _myvae(output="nn.Sigmoid(), nn.Softmax(dim=1)")),
    "a1_softmax_output_channels": _variant("a1_softmax_output", _myvae(output="nn.Softmax(dim=-3)")),
    "a3_template_reset_bug_loop_index": _variant("a3_template_reset_bug", LOOP_INDEX_RESET_BUG),
    "a3_template_reset_bug_counter_in_loop": _variant("a3_template_reset_bug", COUNTER_IN_LOOP_RESET_BUG),
    "a4_angle_of_the_previous_state_flag": _variant("a4_angle_of_the_previous_state", PREVIOUS_STATE_FLAG_BUG),
    "a4_template_black_frames_list": _variant("a4_template_black_frames", BLACK_FRAMES_LIST_BUG),
    "a5_wrong_environment_acrobot": _variant("a5_wrong_environment", _collect_other(env='"Acrobot-v1"')),
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

#: Correct answers written differently from the reference and from the source's solutions, by
#: (notebook, grade_id of the answer cell): other layer names and nesting, other libraries' idioms
#: (torch.distributions, nn.functional, torch.maximum), other reductions, ``.view`` flattening.
HW1_ALTERNATIVES: dict[tuple[str, str], str] = {
    (NB1, "a1_myvae"): """
class MyVAE(MyVAETemplate):
    def __init__(self, in_channels, latent_dim, hidden_dims=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.hidden_dims = list(hidden_dims) if hidden_dims is not None else [32, 64, 128, 256, 512]
        self.encoder = nn.Sequential()
        for i, (a, b) in enumerate(zip([in_channels] + self.hidden_dims[:-1], self.hidden_dims)):
            block = nn.Sequential()
            block.add_module("conv", nn.Conv2d(a, b, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1)))
            block.add_module("bn", nn.BatchNorm2d(b))
            block.add_module("act", nn.LeakyReLU(0.01))
            self.encoder.add_module(f"block{i}", block)
        features = 4 * self.hidden_dims[-1]
        self.z_simple, self.z_mu, self.z_var = (nn.Linear(features, latent_dim) for _ in range(3))
        h0 = self.hidden_dims[0]
        self.final_layer = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(h0, in_channels, 3, padding=1), nn.Sigmoid())
        self.build_decoder()
""",
    (NB1, "a2_reparameterize"): """
@add_to_class(MyVAE)
def reparameterize(self, mu, logvar):
    return torch.distributions.Normal(mu, (logvar / 2).exp()).rsample()
""",
    (NB1, "a2_encode"): """
@add_to_class(MyVAE)
def encode(self, x):
    features = self.encoder(x).view(x.size(0), -1)
    return self.z_mu(features), self.z_var(features)
""",
    (NB1, "a2_forward"): """
@add_to_class(MyVAE)
def forward(self, x):
    mu, logvar = self.encode(x)
    x_hat = self.decode(self.reparameterize(mu, logvar))
    return x_hat, x, mu, logvar
""",
    (NB3, "a3_collect_frames"): """
def collect_frames(env, n_frames, episode_length=20, seed=None):
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out, t = [], 0
    while len(out) < n_frames:
        out.append(preprocess_frame(env.render(), "CartPole-v1"))
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        t += 1
        if t >= episode_length or term or trunc:
            obs, _ = env.reset()
            t = 0
    return np.stack(out).astype(np.uint8)
""",
    (NB3, "a4_collect_upright_frames"): """
def collect_upright_frames(env, n_frames, max_angle=0.3, seed=None):
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    kept = []
    while len(kept) < n_frames:
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
        if abs(obs[2]) <= max_angle:
            kept.append(preprocess_frame(env.render(), "CartPole-v1"))
    return np.array(kept, dtype=np.uint8)
""",
    (NB5, "a5_collect_other_frames"): """
def collect_other_frames(env_id, n_frames, seed=None):
    env = make_env(env_id, seed=seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    frames = []
    for _ in range(n_frames):
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        frames.append(preprocess_frame(env.render(), Crop(top=0.2, bottom=0.8, left=0.2, right=0.8)))
        if term or trunc:
            obs, _ = env.reset()
    return np.stack(frames)
""",
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


def replace_answer(notebook: Path, grade_id: str, source: str) -> None:
    """Replace the source of the cell whose nbgrader ``grade_id`` is ``grade_id``, in place.

    Raises:
        KeyError: if the notebook has no such cell.
    """
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source.strip("\n")
            nbformat.write(nb, notebook)
            return
    raise KeyError(f"{notebook.name} has no cell with grade_id {grade_id!r}")


def copy_notebooks(src: Path, dest: Path) -> Path:
    """Copy the ``*.ipynb`` of ``src`` into a fresh folder ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for nb in sorted(Path(src).glob("*.ipynb")):
        shutil.copy(nb, dest / nb.name)
    return dest


def mutant_students(mutants: dict[str, Mutant]) -> dict[str, list[str]]:
    """Mutants grouped into as few student folders as possible, at most one per answer cell.

    The answer cells of a notebook are graded by different checks, so one student can carry a bug
    in each; the student must then fail exactly the union of its mutants' cells. This saves
    nbgrader's per-student start-up in the self-tests.

    Returns:
        ``{"mutants_1": [mutant names], ...}`` in the order of ``mutants``.
    """
    students: list[list[str]] = []
    for name, mutant in mutants.items():
        for group in students:
            if all(
                (mutants[other].notebook, mutants[other].answer) != (mutant.notebook, mutant.answer) for other in group
            ):
                group.append(name)
                break
        else:
            students.append([name])
    return {f"mutants_{k + 1}": group for k, group in enumerate(students)}


def make_mutant_student(source: Path, dest: Path, mutants: list[Mutant]) -> Path:
    """A submission folder ``dest`` with the notebooks of ``source`` that ``mutants`` change, changed."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for mutant in mutants:
        if not (dest / mutant.notebook).exists():
            shutil.copy(Path(source) / mutant.notebook, dest / mutant.notebook)
        replace_answer(dest / mutant.notebook, mutant.answer, mutant.code)
    return dest
