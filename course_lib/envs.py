"""Gymnasium environments that render frames, and the policies that drive them.

``make_env`` follows cleanrl's habit: one function that builds the environment, seeded through
``env.reset(seed=...)`` and ``env.action_space.seed(...)``. The brown-noise policy for
CarRacing is the one of ctallec/world-models (``sample_continuous_policy``):
``a_{t+1} = clip(a_t + sqrt(dt) * N(0, I), low, high)`` with ``dt = 1/50``.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from course_lib import recording

# pygame (used by the classic-control and Box2D renderers) needs no screen for rgb_array.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

#: Environments the course uses, with what a frame is for each.
ENV_IDS: tuple[str, ...] = ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "CarRacing-v3")

#: Environments whose observation is already the image (the others are rendered).
PIXEL_OBSERVATION_ENVS: frozenset[str] = frozenset({"CarRacing-v3"})

Policy = Callable[[Any], Any]


def make_env(env_id: str, seed: int | None = None, **kwargs: Any) -> gym.Env:
    """Create a gymnasium environment that renders ``uint8`` RGB frames.

    The environment is reset once with ``seed`` so that a fresh environment is ready to step,
    and its action space is seeded too, so ``env.action_space.sample()`` is reproducible.

    Args:
        env_id: one of :data:`ENV_IDS` (other registered ids work but have no crop preset).
        seed: seed for ``env.reset`` and the action space; ``None`` for fresh randomness.
        **kwargs: passed to ``gymnasium.make`` (e.g. ``max_episode_steps``).

    Returns:
        The environment, created with ``render_mode="rgb_array"`` and already reset. Inside
        :func:`course_lib.recording.recording` it is wrapped in an :class:`EpisodeRecorder` (before
        that first reset), and the recording lists it.

    Raises:
        gymnasium.error.Error: if ``env_id`` is not registered.
    """
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    log = recording.active()
    if log is not None:
        env = EpisodeRecorder(env, index_frames=False)
        log.envs.append((env_id, dict(kwargs), env))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def frame_of(env: gym.Env, observation: Any) -> np.ndarray:
    """The RGB frame of the state the environment is in now.

    CarRacing's observation is the 96x96 image itself; the classic-control environments are
    rendered (400x600 or 500x500).

    Returns:
        ``uint8`` array ``(H, W, 3)``.
    """
    if env.spec is not None and env.spec.id in PIXEL_OBSERVATION_ENVS:
        return np.asarray(observation, dtype=np.uint8)
    return np.asarray(env.render(), dtype=np.uint8)


def wide_cartpole(seed: int | None = None, theta_threshold_radians: float = 0.8) -> gym.Env:
    """CartPole-v1 whose episodes run past the usual 0.2094 rad (12 degree) termination angle.

    CartPole-v1 terminates when ``abs(theta) > 12 * 2 * pi / 360 = 0.2094`` rad, so in ordinary episodes every
    state already satisfies ``abs(theta) <= 0.3``. Raising the threshold lets the pole fall
    further, which is where an angle filter matters.
    """
    env = make_env("CartPole-v1", seed=seed)
    env.unwrapped.theta_threshold_radians = theta_threshold_radians
    return env


def random_policy(env: gym.Env) -> Policy:
    """A policy that ignores the observation and samples the env's (seeded) action space."""

    def act(observation: Any) -> Any:
        return env.action_space.sample()

    return act


class BrownNoisePolicy:
    """Temporally correlated random actions for continuous control (CarRacing).

    ``a_{t+1} = clip(a_t + sqrt(dt) * eps, low, high)`` with ``eps ~ N(0, I)``, starting from a
    uniform sample of the box. Source: ctallec/world-models, ``utils/misc.py``
    ``sample_continuous_policy`` (``dt = 1/50``).

    Args:
        action_space: a ``gymnasium.spaces.Box``.
        dt: the step of the Brownian motion; the noise std per step is ``sqrt(dt)``.
        seed: seed of the policy's own generator.
    """

    def __init__(self, action_space: gym.spaces.Box, dt: float = 1.0 / 50.0, seed: int | None = None):
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"brown noise needs a continuous Box action space, got {action_space}")
        self.low = action_space.low.astype(np.float32)
        self.high = action_space.high.astype(np.float32)
        self.dt = dt
        self.rng = np.random.default_rng(seed)
        self.action = self.rng.uniform(self.low, self.high).astype(np.float32)

    def __call__(self, observation: Any = None) -> np.ndarray:
        """Return the next action, ``float32`` of the action space's shape."""
        step = math.sqrt(self.dt) * self.rng.standard_normal(self.low.shape)
        self.action = np.clip(self.action + step, self.low, self.high).astype(np.float32)
        return self.action.copy()


#: Kinds of call in :meth:`EpisodeRecorder.call_log`.
CALL_RESET, CALL_STEP, CALL_RENDER = 0, 1, 2


class RenderRecord(NamedTuple):
    """One call to ``render``: which episode and step it happened in, and the state it showed."""

    episode: int
    t: int
    state: np.ndarray


class EpisodeRecorder(gym.Wrapper):
    """Record what a collection loop does with an environment: resets, steps and renders.

    - ``steps``: one ``(episode, t)`` pair per call to ``step`` (``episode`` counts resets).
    - ``ends``: for each step, whether it terminated or truncated the episode.
    - ``states``: the state right after each step.
    - ``renders``: one :class:`RenderRecord` per call to ``render``, with the state shown (for
      CartPole ``[x, x_dot, theta, theta_dot]``, theta in radians).
    - :meth:`renders_of` finds the renders a preprocessed 64x64 frame came from, so a frame can
      be matched with the state it shows.
    - :meth:`call_log`: every ``reset``, ``step`` and ``render`` in order, with the reset seeds,
      the actions and the observations, as arrays; replaying the resets and actions on a fresh
      environment built like this one reproduces every state (the grader does exactly that).

    Args:
        env: the environment to wrap (usually from :func:`make_env`).
        crop: the crop used to match frames (default: the preset of the env id).
        index_frames: keep the preprocessed digest of every render for :meth:`renders_of` (off
            where the collector chooses its own crop).
    """

    def __init__(self, env: gym.Env, crop: Any = None, index_frames: bool = True):
        super().__init__(env)
        self.crop = crop if crop is not None else (env.spec.id if env.spec is not None else None)
        self.index_frames = index_frames
        self.resets = 0
        self.steps: list[tuple[int, int]] = []
        self.ends: list[bool] = []
        self.states: list[np.ndarray] = []
        self.renders: list[RenderRecord] = []
        self._frames: dict[bytes, list[int]] = {}
        self._calls: list[tuple[int, int, Any, Any]] = []  # (kind, seed, action, observation)
        self._t = 0

    def _state(self) -> np.ndarray:
        state = getattr(self.env.unwrapped, "state", None)
        return np.array(state if state is not None else [], dtype=np.float64)

    def reset(self, **kwargs: Any):
        self.resets += 1
        self._t = 0
        if kwargs.get("seed") is None and getattr(self.env.unwrapped, "_np_random", False) is None:
            # gymnasium would seed the new generator from entropy; drawing that seed here keeps the
            # reset as random, and loggable, so that a replay can redo it
            kwargs["seed"] = secrets.randbits(62)
        result = self.env.reset(**kwargs)
        seed = kwargs.get("seed")
        self._calls.append((CALL_RESET, -1 if seed is None else int(seed), None, result[0]))
        return result

    def step(self, action: Any):
        result = self.env.step(action)
        self.steps.append((self.resets, self._t))
        self.ends.append(bool(result[2] or result[3]))
        self.states.append(np.array(result[0], dtype=np.float64, copy=True))
        self._calls.append((CALL_STEP, -1, np.array(action, dtype=np.float64, copy=True), result[0]))
        self._t += 1
        return result

    def render(self):
        from course_lib.frames import crop_and_resize

        image = self.env.render()
        self._calls.append((CALL_RENDER, -1, None, None))
        self.renders.append(RenderRecord(self.resets, self._t, self._state()))
        if self.index_frames:
            key = recording.digest(crop_and_resize(np.asarray(image), self.crop))
            self._frames.setdefault(key, []).append(len(self.renders) - 1)
        return image

    def call_log(self) -> dict[str, np.ndarray]:
        """Every call made through this wrapper, in order, as arrays (one row per call).

        Returns:
            ``kind`` ``int8 (n,)``: :data:`CALL_RESET`, :data:`CALL_STEP` or :data:`CALL_RENDER`;
            ``seed`` ``int64 (n,)``: the seed a reset was given, or, for a reset without one that
            creates the environment's generator, the one the recorder drew from entropy for it
            (``-1`` for other resets without a seed, and for the other calls); ``action``
            ``float64 (n, A)``: the action of a step (zeros otherwise); ``observation``
            ``float64 (n, O)``: what a reset or step returned (zeros for renders).
        """
        actions = [np.ravel(a) for _, _, a, _ in self._calls if a is not None]
        observations = [np.ravel(np.asarray(o, dtype=np.float64)) for _, _, _, o in self._calls if o is not None]
        width_a = max((len(a) for a in actions), default=1)
        width_o = max((len(o) for o in observations), default=1)
        n = len(self._calls)
        log = {
            "kind": np.array([c[0] for c in self._calls], dtype=np.int8).reshape(n),
            "seed": np.array([c[1] for c in self._calls], dtype=np.int64).reshape(n),
            "action": np.zeros((n, width_a)),
            "observation": np.zeros((n, width_o)),
        }
        for i, (_, _, action, observation) in enumerate(self._calls):
            if action is not None:
                log["action"][i, : np.size(action)] = np.ravel(action)
            if observation is not None:
                flat = np.ravel(np.asarray(observation, dtype=np.float64))
                log["observation"][i, : flat.size] = flat
        return log

    def render_indices(self, frame: np.ndarray) -> list[int]:
        """Indices into ``renders`` of the renders whose preprocessed image equals ``frame``, in order."""
        key = recording.digest(np.asarray(frame, dtype=np.uint8))
        return list(self._frames.get(key, []))

    def renders_of(self, frame: np.ndarray) -> list[RenderRecord]:
        """The renders whose preprocessed 64x64 image equals ``frame`` (empty if none)."""
        return [self.renders[i] for i in self.render_indices(frame)]

    def episode_lengths(self) -> list[int]:
        """Number of steps taken in each episode, in order (episodes with no step are skipped)."""
        lengths: dict[int, int] = {}
        for episode, _ in self.steps:
            lengths[episode] = lengths.get(episode, 0) + 1
        return [lengths[k] for k in sorted(lengths)]

    def steps_after_end(self) -> int:
        """Steps taken in an episode after it had already terminated or been truncated."""
        count, ended, episode = 0, False, None
        for (ep, _), end in zip(self.steps, self.ends, strict=True):
            if ep != episode:
                episode, ended = ep, False
            elif ended:
                count += 1
            ended = ended or end
        return count
