"""Activity 4, the angle filter (``collect_upright_frames``): every kept frame's pole angle, replayed."""

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
from autograder.checks.hw1_vae.resets import collector_call, expect_seeding, frames_inputs
from course_lib.envs import EpisodeRecorder, wide_cartpole


def angle_inputs(seed: int) -> Inputs:
    """Two calls of ``collect_upright_frames``: (environment seed, call seed, n_frames, max_angle)."""
    rng = rng_of(seed)
    return {
        "cases": [
            (sub_seed(rng), sub_seed(rng), 120, round(float(rng.uniform(0.25, 0.35)), 3)),
            (sub_seed(rng), sub_seed(rng), 60, round(float(rng.uniform(0.08, 0.12)), 3)),
        ]
    }


@check("a4_angles", inputs=angle_inputs)
def a4_angles(inputs: Inputs, collect_upright_frames: Any) -> dict[str, Any]:
    """Every kept frame shows a state with ``abs(theta) <= max_angle`` (the state rendered)."""
    require_student_code(collect_upright_frames, "collect_upright_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed, n_frames, max_angle) in enumerate(inputs["cases"]):
        env = EpisodeRecorder(wide_cartpole(seed=env_seed))
        with student_code(collector_call("collect_upright_frames", n_frames, max_angle=max_angle)):
            frames = collect_upright_frames(env, n_frames, max_angle=max_angle, seed=seed)
        values |= collector_values(f"run{k}", frames, env)
    return values


@a4_angles.judge
def _a4_angles(inputs: Inputs, record: Record) -> None:
    for k, (env_seed, seed, n_frames, max_angle) in enumerate(inputs["cases"]):
        what = collector_call("collect_upright_frames", n_frames, max_angle=max_angle)
        digests = expect_frames(record, f"run{k}", n_frames, what)
        played = replay(lambda s=env_seed: wide_cartpole(seed=s), record, f"run{k}", "CartPole-v1", what, seed)
        seen = np.abs([state[2] for state in played.visited]) if played.visited else np.zeros(0)
        expect(
            (seen > max_angle).any(),
            f"{what} never met a state beyond max_angle; it should run the episodes of the environment it is given",
        )
        played.match(digests, what)  # every frame is a render of this environment
        for i, key in enumerate(digests):
            # identical images can show slightly different states: the most upright one counts
            theta = min(abs(float(played.renders[j].state[2])) for j in played.digests[bytes(key)])
            expect(
                theta <= max_angle + 1e-9,
                f"frame {i} of {what} shows a pole angle of {theta:.3f} rad, outside [-max_angle, max_angle] "
                "(filter on the state you render)",
            )


def count_inputs(seed: int) -> Inputs:
    """Environment seeds and call seeds of two runs with the same seed (and one with another)."""
    inputs = frames_inputs(seed)
    return {**inputs, "n": 50}


@check("a4_count", inputs=count_inputs)
def a4_count(inputs: Inputs, collect_upright_frames: Any) -> dict[str, Any]:
    """Exactly ``n_frames`` kept frames, none blank, real renders, and the same seed gives the same frames."""
    require_student_code(collect_upright_frames, "collect_upright_frames")
    values: dict[str, Any] = {}
    for k, (env_seed, seed) in enumerate(zip(inputs["env_seeds"], inputs["seeds"], strict=True)):
        env = EpisodeRecorder(wide_cartpole(seed=env_seed))
        with student_code(collector_call("collect_upright_frames", inputs["n"])):
            values |= collector_values(f"run{k}", collect_upright_frames(env, inputs["n"], seed=seed), env)
    return values


@a4_count.judge
def _a4_count(inputs: Inputs, record: Record) -> None:
    expect_seeding(record, inputs, "collect_upright_frames", lambda s: wide_cartpole(seed=s), "CartPole-v1", 10)
