"""Linear probes: how much of the true environment state a VAE's latent means hold.

A *linear probe* fits ``state ~ mu @ W + b`` by least squares on the latent means ``mu`` of
training frames and reports the coefficient of determination ``R^2`` on held-out frames. ``R^2``
near 1 means the state variable is (linearly) readable from the code; near 0, that the code
ignores it. The method is that of Alain & Bengio 2016, "Understanding intermediate layers using
linear classifier probes", https://arxiv.org/abs/1610.01644, applied to a VAE's posterior mean.

The states come with the frames: :func:`course_lib.data.record_rollouts` returns
``Rollout.observations``; CartPole's observation is ``[x, x_dot, theta, theta_dot]`` (cart position
in metres, pole angle in radians), Pendulum's ``[cos theta, sin theta, theta_dot]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from course_lib.data import Rollout, record_rollouts
from course_lib.frames import to_tensor
from course_lib.models import SmallVAE
from course_lib.train import evaluate, fit, mean_image_baseline, seed_everything

#: Probe targets per environment: name -> column of the observation.
PROBE_TARGETS: dict[str, dict[str, int]] = {
    "CartPole-v1": {"cart_position": 0, "pole_angle": 2},
    "Pendulum-v1": {"cos_theta": 0, "sin_theta": 1},
}


def probe_targets(env_id: str, observations: np.ndarray) -> dict[str, np.ndarray]:
    """The state variables to probe for, read from ``observations``.

    Args:
        env_id: a key of :data:`PROBE_TARGETS`.
        observations: ``float (N, D)`` environment observations, one per frame.

    Returns:
        ``{name: float64 (N,)}``, e.g. ``cart_position`` and ``pole_angle`` (radians) for CartPole.

    Raises:
        KeyError: for an environment without probe targets.
        ValueError: if ``observations`` is not ``(N, D)`` with enough columns.
    """
    if env_id not in PROBE_TARGETS:
        raise KeyError(f"no probe targets for {env_id!r}; known: {sorted(PROBE_TARGETS)}")
    observations = np.asarray(observations, dtype=np.float64)
    columns = PROBE_TARGETS[env_id]
    if observations.ndim != 2 or observations.shape[1] <= max(columns.values()):
        raise ValueError(f"{env_id} observations must be (N, >{max(columns.values())}), got {observations.shape}")
    return {name: observations[:, col] for name, col in columns.items()}


@torch.no_grad()
def encode_mu(model: nn.Module, frames: Any, batch_size: int = 256) -> np.ndarray:
    """Posterior means of ``frames`` under ``model`` (eval mode, no sampling).

    Args:
        model: a VAE with ``encode(x) -> (mu, logvar)``.
        frames: ``uint8 (N, 64, 64, 3)`` or anything sliceable into such arrays.
        batch_size: frames per forward pass.

    Returns:
        ``float64 (N, Z)``.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        mus = [
            model.encode(to_tensor(np.asarray(frames[i : i + batch_size])).to(device))[0].double().cpu().numpy()
            for i in range(0, len(frames), batch_size)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(mus)


def r2_score(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of predictions ``y_hat`` of ``y`` (both ``(N,)``).

    1 is a perfect fit, 0 no better than predicting the mean of ``y``, negative worse than that.
    A constant ``y`` gives ``nan`` (nothing to explain).
    """
    y, y_hat = np.asarray(y, dtype=np.float64), np.asarray(y_hat, dtype=np.float64)
    if y.shape != y_hat.shape or y.ndim != 1:
        raise ValueError(f"y and y_hat must both be (N,), got {y.shape} and {y_hat.shape}")
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(((y - y_hat) ** 2).sum()) / ss_tot


def linear_probe(
    train_features: np.ndarray,
    train_targets: dict[str, np.ndarray],
    val_features: np.ndarray,
    val_targets: dict[str, np.ndarray],
) -> dict[str, float]:
    """Least squares ``target ~ features @ w + b`` on the training set; ``R^2`` on the validation set.

    Args:
        train_features: ``(N, Z)`` (e.g. latent means of training frames).
        train_targets: ``{name: (N,)}``.
        val_features: ``(M, Z)``.
        val_targets: ``{name: (M,)}`` with the same names.

    Returns:
        ``{name: R^2 on the validation set}``.

    Raises:
        ValueError: on mismatched shapes or names.
    """
    train_features = np.asarray(train_features, dtype=np.float64)
    val_features = np.asarray(val_features, dtype=np.float64)
    if train_features.ndim != 2 or val_features.ndim != 2 or train_features.shape[1] != val_features.shape[1]:
        raise ValueError(f"features must be (N, Z) and (M, Z), got {train_features.shape} and {val_features.shape}")
    if set(train_targets) != set(val_targets):
        raise ValueError(f"train and validation targets differ: {sorted(train_targets)} vs {sorted(val_targets)}")
    design = np.hstack([train_features, np.ones((len(train_features), 1))])  # (N, Z + 1): bias column
    val_design = np.hstack([val_features, np.ones((len(val_features), 1))])  # (M, Z + 1)
    scores = {}
    for name, y in train_targets.items():
        y = np.asarray(y, dtype=np.float64)
        if y.shape != (len(design),) or np.shape(val_targets[name]) != (len(val_design),):
            raise ValueError(f"target {name!r} does not match the features' lengths")
        w, *_ = np.linalg.lstsq(design, y, rcond=None)  # (Z + 1,)
        scores[name] = r2_score(val_targets[name], val_design @ w)
    return scores


def split_rollouts(rollouts: list[Rollout], val_fraction: float = 0.2) -> tuple[list[Rollout], list[Rollout]]:
    """Whole episodes for validation (the last ``val_fraction`` of them, at least one): no frame of a
    validation episode is a near-copy of a training frame."""
    if len(rollouts) < 2:
        raise ValueError(f"need at least two rollouts to split by episode, got {len(rollouts)}")
    n_val = min(len(rollouts) - 1, max(1, round(len(rollouts) * val_fraction)))
    return rollouts[:-n_val], rollouts[-n_val:]


@dataclass
class ProbeResult:
    """What :func:`probe_vae` measured.

    Attributes:
        env_id: the environment.
        n_train, n_val: frames used for training and validation.
        val_mse: the VAE's per-pixel validation MSE (eval mode).
        baseline_mse: the mean-image baseline's per-pixel validation MSE.
        r2: ``{target: validation R^2 of the linear probe on mu}``.
        seconds: wall time of the training.
        settings: the training settings used.
    """

    env_id: str
    n_train: int
    n_val: int
    val_mse: float
    baseline_mse: float
    r2: dict[str, float]
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """How many times smaller the VAE's error is than the baseline's."""
        return self.baseline_mse / self.val_mse


def collect_probe_data(
    env_id: str, n_frames: int, seed: int = 0, max_steps: int = 500, val_fraction: float = 0.2
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Frames with their probe targets, split by whole episodes.

    Episodes are recorded (``record_rollouts``, random policy, episode ``i`` reset with
    ``seed + i``) until at least ``n_frames`` frames are collected.

    Returns:
        ``(train_frames uint8 (N, 64, 64, 3), train_targets {name: (N,)}, val_frames, val_targets)``.
    """
    rollouts: list[Rollout] = []
    count = 0
    while count < n_frames or len(rollouts) < 2:
        # as many episodes as the mean length so far says are missing (8 to start with)
        mean_length = count / len(rollouts) if rollouts else None
        n_more = max(2, -(-(n_frames - count) // round(mean_length))) if mean_length else 8
        rollouts += record_rollouts(env_id, n_more, max_steps=max_steps, seed=seed + len(rollouts), progress=False)
        count = sum(len(r) for r in rollouts)
    train, val = split_rollouts(rollouts, val_fraction)

    def stack(part: list[Rollout]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        frames = np.concatenate([r.frames for r in part])
        return frames, probe_targets(env_id, np.concatenate([r.observations for r in part]))

    return (*stack(train), *stack(val))


def probe_vae(
    env_id: str,
    n_frames: int = 3000,
    seed: int = 0,
    z_size: int = 16,
    width: int = 8,
    num_epochs: int = 13,
    batch_size: int = 32,
    lr: float = 3e-3,
    beta: float = 0.1,
    kl_tolerance: float = 0.0,
    max_steps: int = 500,
    model_fn: Callable[[], nn.Module] | None = None,
) -> ProbeResult:
    """Train a VAE on ``env_id`` frames as companion notebook 02 does, then probe its latent means.

    The defaults are notebook 02's (``SmallVAE(z_size=16, width=8)`` started at the mean frame,
    13 epochs, batch 32, lr 3e-3, beta 0.1); the split is by episode (:func:`split_rollouts`).

    Args:
        env_id: a key of :data:`PROBE_TARGETS`.
        n_frames: frames to collect (train + validation).
        seed: seeds collection and training.
        z_size, width: of the :class:`course_lib.models.SmallVAE`.
        num_epochs, batch_size, lr, beta, kl_tolerance: passed to :func:`course_lib.train.fit`.
        max_steps: longest episode.
        model_fn: builds the model instead of ``SmallVAE(z_size, width)`` (then
            ``init_background`` is called only if the model has it).

    Returns:
        A :class:`ProbeResult`.
    """
    train, train_targets, val, val_targets = collect_probe_data(env_id, n_frames, seed=seed, max_steps=max_steps)
    seed_everything(seed)
    model = model_fn() if model_fn is not None else SmallVAE(z_size=z_size, width=width)
    if hasattr(model, "init_background"):
        model.init_background(train)
    history = fit(
        model, train, val, num_epochs=num_epochs, batch_size=batch_size, lr=lr, beta=beta,
        kl_tolerance=kl_tolerance, seed=seed, progress=False,
    )
    r2 = linear_probe(encode_mu(model, train), train_targets, encode_mu(model, val), val_targets)
    settings = {"z_size": z_size, "width": width, "num_epochs": num_epochs, "batch_size": batch_size, "lr": lr,
                "beta": beta, "kl_tolerance": kl_tolerance, "seed": seed}
    return ProbeResult(
        env_id=env_id,
        n_train=len(train),
        n_val=len(val),
        val_mse=evaluate(model, val)["mse"],
        baseline_mse=mean_image_baseline(train, val),
        r2=r2,
        seconds=history.seconds,
        settings=settings,
    )


# --- CarRacing: state variables read from the Box2D world -----------------------------------

#: CarRacing's probe targets. Its observation is the image itself, so they are read from the
#: simulator by :func:`car_racing_states`: ``speed`` (world units per second), ``heading_sin`` and
#: ``heading_cos`` (of the car's heading minus the direction of the nearest track point, radians),
#: ``lateral_offset`` (signed distance of the car from the centre line, world units; the road's
#: half-width is ``40 / 6 ~ 6.7``).
CAR_RACING_TARGETS: tuple[str, ...] = ("speed", "heading_sin", "heading_cos", "lateral_offset")


def car_racing_state(env: Any) -> dict[str, float]:
    """The :data:`CAR_RACING_TARGETS` of a CarRacing environment in its current state.

    The car faces along its local ``+y`` axis, and the track point ``(alpha, beta, x, y)`` faces
    the same way when the car's angle equals ``beta`` (the car starts at ``track[0]`` with angle
    ``beta``); the road's edges are at ``(x, y) +- TRACK_WIDTH * (cos beta, sin beta)``, so that
    vector is the track's normal. Source: gymnasium's ``box2d/car_racing.py``.

    Args:
        env: a ``CarRacing-v3`` environment (wrapped or not) after ``reset``.

    Returns:
        ``{name: value}`` for each of :data:`CAR_RACING_TARGETS`.
    """
    base = env.unwrapped
    hull = base.car.hull
    track = np.asarray(base.track, dtype=np.float64)  # (L, 4): alpha, beta, x, y
    position = np.array([hull.position[0], hull.position[1]], dtype=np.float64)
    nearest = int(np.argmin(((track[:, 2:4] - position) ** 2).sum(axis=1)))
    beta = track[nearest, 1]
    heading = float(hull.angle) - beta
    normal = np.array([np.cos(beta), np.sin(beta)])
    return {
        "speed": float(np.hypot(hull.linearVelocity[0], hull.linearVelocity[1])),
        "heading_sin": float(np.sin(heading)),
        "heading_cos": float(np.cos(heading)),
        "lateral_offset": float((position - track[nearest, 2:4]) @ normal),
    }


def car_racing_states(seed: int, actions: np.ndarray, env_seed: int | None = None) -> dict[str, np.ndarray]:
    """Replay one recorded CarRacing rollout without rendering and read its state at every frame.

    :func:`course_lib.data.record_rollouts` keeps the frame of the state *before* each action, so
    state ``t`` is the one after the reset and ``t`` actions. The simulation depends only on the
    reset seed and the actions (the frames are recorded by such a replay), so the states are those
    the frames show.

    Args:
        seed: the episode's reset seed (``seed + i`` for episode ``i`` of ``record_rollouts(..., seed=seed)``).
        actions: ``float32 (T, 3)`` actions as saved with the rollout (:meth:`course_lib.data.ShardDataset.actions`).
        env_seed: the seed the environment was made with (``record_rollouts``' ``seed``; it does not
            change the episode, which the reset seed decides).

    Returns:
        ``{name: float64 (T,)}`` for each of :data:`CAR_RACING_TARGETS`.

    Raises:
        ValueError: if ``actions`` is not ``(T, 3)``.
    """
    from course_lib.data import _without_rendering
    from course_lib.envs import make_env

    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2 or actions.shape[1] != 3:
        raise ValueError(f"CarRacing actions must be (T, 3), got {actions.shape}")
    env = make_env("CarRacing-v3", seed=seed if env_seed is None else env_seed)
    rows: list[dict[str, float]] = []
    try:
        with _without_rendering(env):
            env.reset(seed=seed)
            for t, action in enumerate(actions):
                rows.append(car_racing_state(env))
                if t < len(actions) - 1:
                    env.step(action)
    finally:
        env.close()
    return {name: np.array([row[name] for row in rows], dtype=np.float64) for name in CAR_RACING_TARGETS}
