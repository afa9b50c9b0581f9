"""The rules a frame collector must follow besides returning the right frames, checked at Validate.

The hidden judges replay a collector's environment to check its frames (``autograder.checks``), so
they enforce rules that are not the answer itself: build the environment with ``make_env``, seed it
with the seed given, make every frame with ``preprocess_frame``. Each rule's message is declared
once, here, in :data:`RULES`: the judges fail with it at grading, and the visible tests call
:func:`check_own_environment` and :func:`check_given_environment`, which fail with the same message
while the student validates, so that nobody learns a rule from the grade. These checks run in the
student's kernel and only catch honest mistakes; the verdict is the judges'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from course_lib.envs import CALL_RESET, EpisodeRecorder
from course_lib.recording import digest, recording

#: Every rule, by name: the message a broken rule gets, with ``{what}`` the call that broke it
#: (as :func:`call` writes it) and, for ``preprocess``, ``{i}`` the frame and ``{preprocessed}`` the
#: call that should have made it.
RULES: dict[str, str] = {
    "make_env": "{what} should build its environment with make_env(env_id, seed=seed) (the grader replays it)",
    "seed_given": "{what} should seed its environment with the seed it is given: make_env(env_id, seed=seed)",
    "seed_before_use": "{what} should seed the environment before using it: env.reset(seed=seed)",
    "seed_first": "{what} should start by seeding the environment it is given: env.reset(seed=seed)",
    "preprocess": (
        "frame {i} of {what} is not a render of the environment it made or was given, preprocessed with {preprocessed}"
    ),
}


class RuleBroken(AssertionError):  # noqa: N818 - reads as what happened, in Validate's output
    """A collector broke one of :data:`RULES`; the message is the rule's."""


def message(rule: str, **fields: Any) -> str:
    """The message of ``rule`` (a key of :data:`RULES`) with its fields filled in.

    Raises:
        KeyError: for an unknown rule, or a field the message needs and did not get.
    """
    return RULES[rule].format(**fields)


def call(fn_name: str, n: int, env: str = "env", **kwargs: Any) -> str:
    """How a collector call is named in the messages: ``collect_frames(env, 40, seed=...)``."""
    return f"{fn_name}({env}, {n}{''.join(f', {k}={v}' for k, v in kwargs.items())}, seed=...)"


def _expect(condition: object, rule: str, **fields: Any) -> None:
    if not condition:
        raise RuleBroken(message(rule, **fields))


def _check_seeding(recorder: EpisodeRecorder, seed: int, what: str, rule: str) -> None:
    """``seed_before_use``: a seeded reset comes before any other call (an unseeded reset leaves no
    trace); then ``rule``: the first seeded reset uses ``seed``."""
    log = recorder.call_log()
    seeded = [int(s) for k, s in zip(log["kind"], log["seed"], strict=True) if k == CALL_RESET and s >= 0]
    first_use = next((i for i, k in enumerate(log["kind"]) if k != CALL_RESET or log["seed"][i] >= 0), None)
    if first_use is not None:
        _expect(log["kind"][first_use] == CALL_RESET, "seed_before_use", what=what)
    _expect(seeded and seeded[0] == seed, rule, what=what)


def check_own_environment(collect: Callable[..., Any], env_id: str, n: int = 16, seed: int = 0) -> np.ndarray:
    """Run ``collect(env_id, n, seed=seed)`` (activity 5's collector, which builds its own environment)
    and check the rules ``make_env``, ``seed_given`` and ``preprocess``; return its frames.

    Raises:
        RuleBroken: with the rule's message (the judge's) for the first rule broken.
    """
    what = call("collect_other_frames", n, env="ENV_ID")
    with recording() as log:
        frames = np.asarray(collect(env_id, n, seed=seed))
    _expect(log.envs, "make_env", what=what)
    _check_seeding(log.envs[0][2], seed, what, "seed_given")
    made = {out for _, _, out in log.frames}
    for i, frame in enumerate(frames):
        _expect(digest(np.asarray(frame, dtype=np.uint8)) in made, "preprocess", i=i, what=what,
                preprocessed="preprocess_frame(frame, crop)")
    return frames


def check_given_environment(frames: Any, env: EpisodeRecorder, what: str, seed: int | None) -> None:
    """Check the rules ``seed_before_use``, ``seed_first`` and ``preprocess`` on the ``frames`` a
    collector returned for the recorded environment ``env`` it was given (activities 3 and 4);
    ``what`` names the call (:func:`call`), ``seed`` the seed it was given.

    Raises:
        RuleBroken: with the rule's message (the judge's) for the first rule broken.
    """
    if seed is not None:
        _check_seeding(env, seed, what, "seed_first")
    for i, frame in enumerate(np.asarray(frames)):
        _expect(env.renders_of(frame), "preprocess", i=i, what=what,
                preprocessed="preprocess_frame(frame, 'CartPole-v1')")
