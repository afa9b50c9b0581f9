"""Environments, frames of a state, the brown-noise policy and the episode recorder."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from course_lib.envs import (
    ENV_IDS,
    PIXEL_OBSERVATION_ENVS,
    BrownNoisePolicy,
    EpisodeRecorder,
    frame_of,
    make_env,
    random_policy,
)

CAR_RACING_ACTIONS = gym.spaces.Box(
    low=np.array([-1.0, 0.0, 0.0], dtype=np.float32),
    high=np.array([1.0, 1.0, 1.0], dtype=np.float32),
)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_make_env_renders(env_id):
    """Is each course environment created in rgb_array mode, ready to step, and rendering frames?"""
    env = make_env(env_id, seed=0)
    try:
        assert env.render_mode == "rgb_array"
        frame = env.render()
        assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
        assert frame.ndim == 3 and frame.shape[2] == 3
        observation, *_ = env.step(env.action_space.sample())  # already reset: stepping works
        own = frame_of(env, observation)
        assert own.dtype == np.uint8 and own.ndim == 3 and own.shape[2] == 3
        if env_id in PIXEL_OBSERVATION_ENVS:
            np.testing.assert_array_equal(own, observation)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeded_actions_reproducible(env_id):
    """Do two environments made with the same seed sample the same actions?"""
    runs = []
    for _ in range(2):
        env = make_env(env_id, seed=3)
        runs.append(np.array([env.action_space.sample() for _ in range(20)], dtype=np.float64))
        env.close()
    np.testing.assert_array_equal(runs[0], runs[1])


def test_seeded_states_reproducible():
    """Does the same seed give the same CartPole trajectory under the random policy?"""
    trajectories = []
    for _ in range(2):
        env = make_env("CartPole-v1", seed=5)
        observation, _ = env.reset(seed=5)
        act = random_policy(env)
        states = [observation]
        for _ in range(10):
            observation, *_ = env.step(act(observation))
            states.append(observation)
        trajectories.append(np.array(states))
        env.close()
    np.testing.assert_array_equal(trajectories[0], trajectories[1])


def test_make_env_unknown_id():
    """Is gymnasium's error raised for an unregistered environment id?"""
    with pytest.raises(gym.error.Error):
        make_env("NoSuchEnv-v0")


def test_brown_noise_within_car_racing_bounds():
    """Do brown-noise actions stay within CarRacing's action bounds over 1000 steps?"""
    env = make_env("CarRacing-v3", seed=0)
    space = env.action_space
    env.close()
    policy = BrownNoisePolicy(space, seed=0)
    actions = np.array([policy() for _ in range(1000)])
    assert actions.shape == (1000, 3) and actions.dtype == np.float32
    assert (actions >= space.low).all() and (actions <= space.high).all()
    # The walk explores the box: steering is not stuck at one value.
    assert actions[:, 0].max() - actions[:, 0].min() > 0.5


@pytest.mark.parametrize("dt", [1.0 / 50.0, 0.01, 0.25])
def test_brown_noise_increment_std(dt):
    """Do successive actions differ by N(0, dt) per dimension away from the bounds?"""
    space = gym.spaces.Box(low=-100.0, high=100.0, shape=(3,), dtype=np.float32)
    policy = BrownNoisePolicy(space, dt=dt, seed=1)
    actions = np.array([policy.action.copy()] + [policy() for _ in range(2000)], dtype=np.float64)
    assert (np.abs(actions) <= 100).all()
    increments = np.diff(actions, axis=0)  # (2000, 3)
    for d in range(3):
        free = np.abs(actions[1:, d]) < 100  # steps that were not clipped
        assert free.sum() > 1000
        steps = increments[free, d]
        assert steps.std() == pytest.approx(math.sqrt(dt), rel=0.15)
        assert abs(steps.mean()) < 5 * math.sqrt(dt / free.sum())
        # Increments are independent: no lag-1 correlation.
        assert abs(np.corrcoef(steps[:-1], steps[1:])[0, 1]) < 0.1


def test_brown_noise_default_dt():
    """Is the default step World Models' dt = 1/50?"""
    assert BrownNoisePolicy(CAR_RACING_ACTIONS, seed=0).dt == pytest.approx(1.0 / 50.0)


def test_brown_noise_reproducible():
    """Does the same seed give the same action sequence, and another seed a different one?"""

    def run(seed: int) -> np.ndarray:
        policy = BrownNoisePolicy(CAR_RACING_ACTIONS, seed=seed)
        return np.array([policy(None) for _ in range(50)])

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_brown_noise_returns_copies():
    """Is each returned action a fresh array, not the policy's internal state?"""
    policy = BrownNoisePolicy(CAR_RACING_ACTIONS, seed=0)
    first = policy()
    kept = first.copy()
    policy()
    np.testing.assert_array_equal(first, kept)


def test_brown_noise_needs_box():
    """Is a TypeError raised for a discrete action space?"""
    with pytest.raises(TypeError, match="Box"):
        BrownNoisePolicy(gym.spaces.Discrete(2))


def test_episode_recorder_counts():
    """Does EpisodeRecorder count resets and number steps within each episode on CartPole?"""
    env = EpisodeRecorder(make_env("CartPole-v1", seed=0))
    lengths, observations = [], []
    for episode in range(4):
        env.reset(seed=episode)
        t = 0
        while True:
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            observations.append(observation)
            t += 1
            if terminated or truncated or t == 15:
                break
        lengths.append(t)
    env.close()
    assert env.resets == 4
    assert env.episode_lengths() == lengths
    expected = [(episode + 1, t) for episode, n in enumerate(lengths) for t in range(n)]
    assert env.steps == expected
    assert len(env.states) == sum(lengths)
    np.testing.assert_allclose(np.array(env.states), np.array(observations, dtype=np.float64))


def test_episode_recorder_skips_empty_episodes():
    """Are episodes reset without a single step left out of ``episode_lengths``?"""
    env = EpisodeRecorder(make_env("CartPole-v1", seed=0))
    env.reset(seed=0)
    env.reset(seed=1)
    for _ in range(3):
        env.step(0)
    env.close()
    assert env.resets == 2
    assert env.steps == [(2, 0), (2, 1), (2, 2)]
    assert env.episode_lengths() == [3]
