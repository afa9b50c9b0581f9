"""The rules an answer must follow besides computing the right thing, checked at Validate.

The hidden judges recompute what the student's code does (``autograder.checks``), so they enforce
rules that are not the answer itself. A frame collector's environment is replayed: build it with
``make_env``, seed it with the seed given, make every frame with ``preprocess_frame``. A model is
rebuilt from its settings and weights: build it from the ``torch.nn`` layers of
:data:`TORCH_LAYERS` in ``nn.Sequential`` containers. Each rule's message is declared once, here, in
:data:`RULES`: the judges fail with it at grading, and the visible tests call
:func:`check_own_environment`, :func:`check_given_environment` and :func:`check_torch_layers`, which
fail with the same message while the student validates, so that nobody learns a rule from the grade.
These checks run in the student's kernel and only catch honest mistakes; the verdict is the judges'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

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
    "torch_nn": (
        "{what}.{part} holds a module the grader cannot rebuild ({kinds}): build it from torch.nn layers "
        "(nn.Conv2d, nn.BatchNorm2d, nn.LeakyReLU, nn.Sigmoid, ...) in an nn.Sequential, so that the grader can "
        "recompute what it computes"
    ),
}

#: The ``torch.nn`` classes the grader rebuilds from their settings and weights (exact classes: a
#: subclass, like any class of the notebook's own, has a ``forward`` the grader cannot run).
#: ``autograder.checks.layers`` rebuilds these; ``ModuleList`` and ``ModuleDict`` hold layers but have
#: no ``forward``, so a part built on them cannot be run either (:func:`runnable`).
TORCH_LAYERS: tuple[type[nn.Module], ...] = (
    # containers
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
    # layers with parameters
    nn.Linear,
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm2d,
    nn.PReLU,
    # shapes and resampling
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Upsample,
    nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d,
    nn.PixelShuffle,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.ZeroPad2d,
    nn.ReflectionPad2d,
    nn.Dropout,
    nn.Dropout2d,
    # activations
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Softplus,
    nn.Softsign,
    nn.Softmax,
    nn.LogSigmoid,
    nn.Tanhshrink,
)
#: The parts of homework 1's ``MyVAE`` that the grader rebuilds and runs.
MYVAE_PARTS = ("encoder", "z_simple", "z_mu", "z_var", "decoder_input", "decoder", "final_layer")


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


def unrunnable(module: nn.Module) -> list[str]:
    """The class names in ``module``'s tree that keep the grader from running it: classes outside
    :data:`TORCH_LAYERS` (or subclasses of them), and ``ModuleList``/``ModuleDict``, which have no
    ``forward``; empty when the grader can rebuild and run it."""
    allowed = set(TORCH_LAYERS) - {nn.ModuleList, nn.ModuleDict}
    return sorted({type(m).__name__ for m in module.modules() if type(m) not in allowed})


def check_torch_layers(model: nn.Module, what: str, parts: Sequence[str] = MYVAE_PARTS) -> None:
    """Check the rule ``torch_nn`` on the ``parts`` of ``model`` (``what`` names it, ``MyVAE(3, 10)``):
    each is made of :data:`TORCH_LAYERS` in ``nn.Sequential`` containers. A missing part is left to the
    other tests.

    Raises:
        RuleBroken: with the rule's message (the judge's) for the first part the grader cannot run.
    """
    for name in parts:
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            kinds = unrunnable(part)
            _expect(not kinds, "torch_nn", what=what, part=name, kinds=", ".join(kinds))
