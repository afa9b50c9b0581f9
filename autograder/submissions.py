"""Known submissions for the self-test and the demo: the source, the blank release, and mutants.

A mutant is the source notebook with one answer cell (found by its ``grade_id``) replaced by code
with a classic bug, most of them the bugs of seed 004.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat

#: The seed's reset loop (activity 3): ``frame_idx`` is never set back, so the environment is
#: reset once, and never on termination.
SEED_RESET_BUG = """
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

#: The seed's angle filter (activity 4): kept frames are written at the step index, so rejected
#: steps leave black frames in the array.
SEED_FILTER_BUG = """
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

#: Activity 1: the template's Tanh output layer, whose values leave [0, 1].
TANH_OUTPUT_BUG = """
class MyVAE(MyVAETemplate):
    def __init__(self, in_channels, latent_dim, hidden_dims=None):
        super().__init__()
        self.latent_dim = latent_dim
        self.hidden_dims = list(hidden_dims) if hidden_dims is not None else [32, 64, 128, 256, 512]
        modules, in_dim = [], in_channels
        for h_dim in self.hidden_dims:
            modules.append(nn.Sequential(nn.Conv2d(in_dim, h_dim, 3, 2, 1), nn.BatchNorm2d(h_dim), nn.LeakyReLU()))
            in_dim = h_dim
        self.encoder = nn.Sequential(*modules)
        self.z_simple = nn.Linear(self.hidden_dims[-1] * 4, latent_dim)
        self.z_mu = nn.Linear(self.hidden_dims[-1] * 4, latent_dim)
        self.z_var = nn.Linear(self.hidden_dims[-1] * 4, latent_dim)
        h0 = self.hidden_dims[0]
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(h0, h0, 3, 2, 1, output_padding=1), nn.BatchNorm2d(h0), nn.LeakyReLU(),
            nn.Conv2d(h0, in_channels, 3, padding=1), nn.Tanh())
        self.build_decoder()
"""

#: Activity 2: logvar used as the log of the standard deviation.
LOGSIGMA_BUG = """
@add_to_class(MyVAE)
def reparameterize(self, mu, logvar):
    return mu + torch.exp(logvar) * torch.randn_like(mu)
"""

#: Activity 5: frames of CartPole instead of the chosen environment.
WRONG_ENV_BUG = """
def collect_other_frames(env_id, n_frames, seed=None):
    env = make_env("CartPole-v1", seed=seed)
    observation, info = env.reset(seed=seed)
    frames = np.zeros((n_frames, 64, 64, 3), dtype=np.uint8)
    for i in range(n_frames):
        frames[i] = preprocess_frame(frame_of(env, observation), "CartPole-v1")
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, info = env.reset()
    return frames
"""

#: One mutant per activity of hw1: (notebook, grade_id of the answer cell, replacement source).
HW1_MUTANTS: dict[str, tuple[str, str, str]] = {
    "a1_tanh_output": ("01_autoencoder_and_vae.ipynb", "a1_myvae", TANH_OUTPUT_BUG),
    "a2_logvar_as_logsigma": ("01_autoencoder_and_vae.ipynb", "a2_reparameterize", LOGSIGMA_BUG),
    "a3_seed_reset_bug": ("03_curating_cartpole.ipynb", "a3_collect_frames", SEED_RESET_BUG),
    "a4_seed_black_frames": ("03_curating_cartpole.ipynb", "a4_collect_upright_frames", SEED_FILTER_BUG),
    "a5_wrong_environment": ("05_other_environment.ipynb", "a5_collect_other_frames", WRONG_ENV_BUG),
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


def make_mutant(source: Path, dest: Path, mutant: tuple[str, str, str]) -> Path:
    """A submission folder ``dest``: the notebooks of ``source`` with one answer replaced."""
    copy_notebooks(source, dest)
    notebook, grade_id, code = mutant
    replace_answer(dest / notebook, grade_id, code)
    return dest


# ---------------------------------------------------------------- homework 2 (hw2_world_models)
_HW2_CONV_VAE = """
class ConvVAE(nn.Module):
    def __init__(self, z_size=32):
        super().__init__()
        self.z_size = z_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2), nn.ReLU(), nn.Conv2d(128, 256, 4, 2), nn.ReLU(), nn.Flatten())
        self.fc_mu = nn.Linear(1024, z_size)
        self.fc_logvar = nn.Linear(1024, z_size)
        self.fc_decode = nn.Linear(z_size, 1024)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(1024, 128, 5, 2), nn.ReLU(), nn.ConvTranspose2d(128, 64, 5, 2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 6, 2), nn.ReLU(), nn.ConvTranspose2d(32, 3, 6, 2), nn.Sigmoid())

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

#: w1: logvar used as the log of the standard deviation (sigma = exp(logvar), not exp(logvar / 2)).
HW2_LOGSIGMA_BUG = _HW2_CONV_VAE.replace("{sigma}", "torch.exp(logvar)")

#: w1: the decoder's output clamped to [0, 1] (Hardtanh) instead of squashed by a sigmoid: in range,
#: so the visible tests pass, but not the paper's decoder (only a comparison with the reference sees it).
HW2_CLAMPED_OUTPUT_BUG = _HW2_CONV_VAE.replace("{sigma}", "torch.exp(0.5 * logvar)").replace(
    "nn.Sigmoid()", "nn.Hardtanh(0.0, 1.0)"
)

#: w2: the KL floor applied to the batch mean instead of to each sample.
FLOOR_AFTER_MEAN_BUG = """
def vae_loss(x, x_hat, mu, logvar, kl_tolerance=0.5):
    recon = (x - x_hat).pow(2).sum(dim=(1, 2, 3)).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
    kl = torch.clamp(kl, min=kl_tolerance * mu.shape[1])
    return {"loss": recon + kl, "recon": recon, "kl": kl}
"""

#: w2: the squared error averaged over the pixels (F.mse_loss) instead of summed over them.
MEAN_OVER_PIXELS_BUG = """
def vae_loss(x, x_hat, mu, logvar, kl_tolerance=0.5):
    recon = torch.nn.functional.mse_loss(x_hat, x)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
    kl = torch.clamp(kl, min=kl_tolerance * mu.shape[1]).mean()
    return {"loss": recon + kl, "recon": recon, "kl": kl}
"""

#: w3: seed 000's encoder returned a sampled z, stored in place of mu.
SAMPLED_Z_BUG = """
def encode_rollouts(model, frames, actions, batch_size=256):
    sequences = []
    for rollout_frames, rollout_actions in zip(frames, actions):
        with torch.no_grad():
            mu, logvar = model.encode(to_tensor(np.array(rollout_frames)))
            z = model.reparameterize(mu, logvar)
        sequences.append({"mu": z.numpy(), "logvar": logvar.numpy(),
                          "actions": np.asarray(rollout_actions, dtype=np.float32)})
    return sequences
"""

#: w3: each code paired with the next step's action (actions shifted by one).
SHIFTED_ACTIONS_BUG = """
def encode_rollouts(model, frames, actions, batch_size=256):
    sequences = []
    for rollout_frames, rollout_actions in zip(frames, actions):
        with torch.no_grad():
            mu, logvar = model.encode(to_tensor(np.array(rollout_frames)))
        a = np.asarray(rollout_actions, dtype=np.float32)
        sequences.append({"mu": mu.numpy(), "logvar": logvar.numpy(), "actions": np.concatenate([a[1:], a[-1:]])})
    return sequences
"""

#: One or two mutants per activity of hw2: (notebook, grade_id of the answer cell, replacement source).
HW2_MUTANTS: dict[str, tuple[str, str, str]] = {
    "w1_logvar_as_logsigma": ("01_data_and_conv_vae.ipynb", "w1_conv_vae", HW2_LOGSIGMA_BUG),
    "w2_floor_after_batch_mean": ("02_vae_loss.ipynb", "w2_vae_loss", FLOOR_AFTER_MEAN_BUG),
    "w2_mean_over_pixels": ("02_vae_loss.ipynb", "w2_vae_loss", MEAN_OVER_PIXELS_BUG),
    "w3_sampled_z": ("03_train_and_rnn_dataset.ipynb", "w3_encode_rollouts", SAMPLED_Z_BUG),
    "w3_shifted_actions": ("03_train_and_rnn_dataset.ipynb", "w3_encode_rollouts", SHIFTED_ACTIONS_BUG),
}
