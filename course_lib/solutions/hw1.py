"""Reference answers of homework 1 (the CMPE 260 homework, Spring 2023), with its bugs fixed.

- ``MyVAE``: activity 1 (``__init__``) and activity 2 (``reparameterize``, ``encode``,
  ``forward``). The output layer ends in a sigmoid (the template's Tanh cannot produce
  frames in [0, 1] correctly).
- ``collect_frames``: activity 3. The homework template reset once (``if frame_idx == 20: env.reset()``
  never set the counter back) and never on termination; here every episode contributes at
  most ``episode_length`` frames.
- ``collect_upright_frames``: activity 4. The template wrote ``imgs[i] = img`` only for kept frames
  and so left black images in the data; here exactly ``n_frames`` kept frames are returned.
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from course_lib.envs import frame_of
from course_lib.frames import FRAME_SIZE, preprocess_frame
from course_lib.template import MyVAETemplate

DEFAULT_HIDDEN_DIMS = (32, 64, 128, 256, 512)


class MyVAE(MyVAETemplate):
    """Homework 1's VAE for ``(B, C, 64, 64)`` inputs in [0, 1] (the CMPE 260 template).

    Encoder: per hidden dim, ``Conv2d(k=3, s=2, p=1)`` + ``BatchNorm2d`` + ``LeakyReLU``;
    five of them take 64x64 to 2x2, so the flattened code has ``hidden_dims[-1] * 4`` features.
    ``z_simple`` (autoencoder), ``z_mu`` and ``z_var`` (VAE; ``z_var`` outputs the log-variance)
    map it to ``latent_dim``. The decoder mirrors the encoder; ``final_layer`` takes
    ``(B, hidden_dims[0], 32, 32)`` to ``(B, C, 64, 64)`` and ends in a sigmoid.
    """

    def __init__(self, in_channels: int, latent_dim: int, hidden_dims: list[int] | None = None):
        super().__init__()
        self.latent_dim = latent_dim
        self.hidden_dims = list(DEFAULT_HIDDEN_DIMS if hidden_dims is None else hidden_dims)
        channels = [in_channels, *self.hidden_dims]
        self.encoder = nn.Sequential(
            *(
                nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU())
                for c_in, c_out in itertools.pairwise(channels)
            )
        )
        flat = self.hidden_dims[-1] * 4  # 2x2 spatial positions
        self.z_simple = nn.Linear(flat, latent_dim)
        self.z_mu = nn.Linear(flat, latent_dim)
        self.z_var = nn.Linear(flat, latent_dim)
        self.build_decoder()
        h0 = self.hidden_dims[0]
        self.final_layer = nn.Sequential(
            nn.ConvTranspose2d(h0, h0, 3, stride=2, padding=1, output_padding=1),  # (B, h0, 64, 64)
            nn.BatchNorm2d(h0),
            nn.LeakyReLU(),
            nn.Conv2d(h0, in_channels, 3, padding=1),  # (B, C, 64, 64)
            nn.Sigmoid(),
        )

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``; ``(B, latent_dim)``."""
        return torch.randn_like(mu).mul(torch.exp(0.5 * logvar)).add(mu)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C, 64, 64)`` -> ``[mu, logvar]``, each ``(B, latent_dim)``."""
        h = self.encoder(x).flatten(1)  # (B, hidden_dims[-1] * 4)
        return [self.z_mu(h), self.z_var(h)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` -> ``[x_hat, x, mu, logvar]``."""
        mu, logvar = self.encode(x)
        return [self.decode(self.reparameterize(mu, logvar)), x, mu, logvar]


def _crop_of(env: gym.Env) -> str | None:
    return env.spec.id if env.spec is not None else None


def collect_frames(env: gym.Env, n_frames: int, episode_length: int = 20, seed: int | None = None) -> np.ndarray:
    """Random-action frames where every episode contributes at most ``episode_length`` frames.

    The frame of each state is kept, then a random action is taken; the environment is reset
    after ``episode_length`` frames and whenever the episode terminates or is truncated.

    Returns:
        ``uint8 (n_frames, 64, 64, 3)``.
    """
    frames = np.zeros((n_frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    in_episode = 0
    for i in range(n_frames):
        frames[i] = preprocess_frame(frame_of(env, observation), _crop_of(env))
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        in_episode += 1
        if terminated or truncated or in_episode == episode_length:
            observation, _ = env.reset()
            in_episode = 0
    return frames


def collect_upright_frames(env: gym.Env, n_frames: int, max_angle: float = 0.3, seed: int | None = None) -> np.ndarray:
    """Random-action CartPole frames whose pole angle satisfies ``abs(theta) <= max_angle``.

    The angle (radians, ``observation[2]``) is read from the same state that is rendered.

    Returns:
        ``uint8 (n_frames, 64, 64, 3)``, every frame a kept one (no placeholders).
    """
    frames = np.zeros((n_frames, FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    kept = 0
    while kept < n_frames:
        if abs(float(observation[2])) <= max_angle:
            frames[kept] = preprocess_frame(frame_of(env, observation), _crop_of(env))
            kept += 1
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            observation, _ = env.reset()
    return frames
