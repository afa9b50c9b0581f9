"""Homework 1's known submissions (``hw1_vae``): its mutants with the bugs of the course's sources
(the CMPE 260 homework template), their bugs written other ways, and correct answers written
differently from the reference."""

from __future__ import annotations

from autograder.submissions import Mutant, variant

NB1, NB3, NB5 = "01_autoencoder_and_vae.ipynb", "03_curating_cartpole.ipynb", "05_other_environment.ipynb"

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


# ---------------------------------------------------------------- the same bugs, written another way
def _variant(of: str, code: str) -> Mutant:
    """A variant of the mutant named ``of``: other code, the same bug (so the same cells to fail)."""
    return variant(of, HW1_MUTANTS[of], code)


#: The bugs of :data:`HW1_MUTANTS` written a second or third way, for the feedback hints
#: (:mod:`autograder.hints`): held out one at a time, they measure how often a hint names the right
#: bug. Judged in-process only (the nbgrader self-tests grade the mutants above).
HW1_VARIANTS: dict[str, Mutant] = {
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
    # the notebook's own seed constant in place of the argument (the visible test passes seed=0 too)
    "a3_seed_ignored_constant": _variant("a3_seed_ignored", "SEED = 0\n" + _collect_frames(seed="SEED")),
    "a4_actions_unseeded_fresh": _variant(
        "a4_actions_unseeded", _collect_upright(seed_actions="env.action_space.seed(None)")
    ),
    "a5_seed_ignored_fixed": _variant("a5_seed_ignored", _collect_other(seed="7")),
    "a1_softmax_output_after_sigmoid": _variant("a1_softmax_output", _myvae(output="nn.Sigmoid(), nn.Softmax(dim=1)")),
    "a1_softmax_output_channels": _variant("a1_softmax_output", _myvae(output="nn.Softmax(dim=-3)")),
    "a3_template_reset_bug_loop_index": _variant("a3_template_reset_bug", LOOP_INDEX_RESET_BUG),
    "a3_template_reset_bug_counter_in_loop": _variant("a3_template_reset_bug", COUNTER_IN_LOOP_RESET_BUG),
    "a4_angle_of_the_previous_state_flag": _variant("a4_angle_of_the_previous_state", PREVIOUS_STATE_FLAG_BUG),
    "a4_template_black_frames_list": _variant("a4_template_black_frames", BLACK_FRAMES_LIST_BUG),
    "a5_wrong_environment_acrobot": _variant("a5_wrong_environment", _collect_other(env='"Acrobot-v1"')),
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
