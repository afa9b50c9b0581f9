"""Activity 3, episode resets (``collect_frames``): the judge replays the environments' logs
(:mod:`autograder.checks.episodes`) to see where each episode ended and how it was reset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autograder.checks import (
    Inputs,
    Record,
    check,
    expect,
    require_student_code,
    student_code,
)
from autograder.checks.episodes import collector_values, expect_frames, replay
from autograder.checks.hw1_vae.rebuild import rng_of, sub_seed
from course_lib.envs import EpisodeRecorder, make_env


def reset_inputs(seed: int) -> Inputs:
    """Two calls of ``collect_frames``: (environment seed, call seed, n_frames, episode_length)."""
    rng = rng_of(seed)
    return {
        "cases": [
            (sub_seed(rng), sub_seed(rng), 150, int(rng.integers(15, 26))),
            (sub_seed(rng), sub_seed(rng), 60, int(rng.integers(4, 8))),
        ]
    }


def _cartpole(seed: int) -> EpisodeRecorder:
    return EpisodeRecorder(make_env("CartPole-v1", seed=seed))


def collector_call(fn_name: str, n: int, **kwargs: Any) -> str:
    return f"{fn_name}(env, {n}{''.join(f', {k}={v}' for k, v in kwargs.items())}, seed=...)"


@check("a3_reset_pattern", inputs=reset_inputs)
def a3_reset_pattern(inputs: Inputs, collect_frames: Any) -> dict[str, Any]:
    """Every episode contributes at most ``episode_length`` frames; the env is reset then, and on
    termination or truncation (never stepped after the episode ended)."""
    require_student_code(collect_frames, "collect_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed, n_frames, episode_length) in enumerate(inputs["cases"]):
        env = _cartpole(env_seed)
        with student_code(collector_call("collect_frames", n_frames, episode_length=episode_length)):
            frames = collect_frames(env, n_frames, episode_length=episode_length, seed=seed)
        values |= collector_values(f"run{k}", frames, env)
    return values


@a3_reset_pattern.judge
def _a3_reset_pattern(inputs: Inputs, record: Record) -> None:
    for k, (env_seed, seed, n_frames, episode_length) in enumerate(inputs["cases"]):
        what = collector_call("collect_frames", n_frames, episode_length=episode_length)
        digests = expect_frames(record, f"run{k}", n_frames, what)
        played = replay(
            lambda s=env_seed: make_env("CartPole-v1", seed=s), record, f"run{k}", "CartPole-v1", what, seed
        )
        episodes = [played.renders[i].episode for i in played.match(digests, what)]
        counts = np.bincount(episodes)
        expect(
            int(counts.max()) <= episode_length,
            f"{what}: one episode contributed {int(counts.max())} frames, expected at most {episode_length} (reset the "
            "environment and the frame counter)",
        )
        after = played.steps_after_end()
        expect(
            after == 0,
            f"{what} stepped the environment {after} times after an episode had terminated; reset it on termination "
            "or truncation",
        )
        ended, last = played.episodes_ended, max(episodes)
        early = [e for e in set(episodes) if counts[e] < episode_length and e not in ended and e != last]
        expect(
            not early,
            f"{what}: {len(early)} episodes were reset after fewer than {episode_length} frames although they had not "
            "terminated; reset after episode_length frames, not earlier",
        )


def frames_inputs(seed: int) -> Inputs:
    """Environment seeds and two different call seeds."""
    rng = rng_of(seed)
    first, second = (int(s) for s in rng.choice(2**31 - 1, size=2, replace=False))
    return {"env_seeds": [sub_seed(rng) for _ in range(3)], "seeds": [first, first, second], "n": 40}


@check("a3_frames", inputs=frames_inputs)
def a3_frames(inputs: Inputs, collect_frames: Any) -> dict[str, Any]:
    """Frame count, dtype, no blank frames, real renders; the same seed gives the same frames, another
    seed others."""
    require_student_code(collect_frames, "collect_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed) in enumerate(zip(inputs["env_seeds"], inputs["seeds"], strict=True)):
        env = _cartpole(env_seed)
        with student_code(collector_call("collect_frames", inputs["n"])):
            values |= collector_values(f"run{k}", collect_frames(env, inputs["n"], seed=seed), env)
    return values


def expect_seeding(record: Record, inputs: Inputs, collector: str, make: Any, crop: str, unique: int) -> None:
    """Runs 0 and 1 share a seed, run 2 has another: same frames, other frames, each run real renders."""
    what = collector_call(collector, inputs["n"])
    digests = []
    for k, (env_seed, seed) in enumerate(zip(inputs["env_seeds"], inputs["seeds"], strict=True)):
        runs = expect_frames(record, f"run{k}", inputs["n"], what)
        replay(lambda s=env_seed: make(s), record, f"run{k}", crop, what, seed).match(runs, what)
        digests.append(runs)
    expect(
        np.array_equal(digests[0], digests[1]),
        f"{collector} with the same seed returned different frames: seed env.reset(seed=seed) and env.action_space",
    )
    expect(not np.array_equal(digests[0], digests[2]), f"{collector} with different seeds returned the same frames")
    distinct = len({bytes(d) for d in digests[0]})
    expect(distinct > unique, f"{collector} returned mostly identical frames ({distinct} different in {inputs['n']})")


@a3_frames.judge
def _a3_frames(inputs: Inputs, record: Record) -> None:
    expect_seeding(record, inputs, "collect_frames", lambda s: make_env("CartPole-v1", seed=s), "CartPole-v1", 10)
