"""Does Validate show every rule the grader enforces besides the answer, with the grader's message?

The rules are declared once (:data:`course_lib.rules.RULES`). Here the judges' sources are read for
the rules they enforce, and for each an answer that is correct but breaks that one rule (a frame
collector, or a ``MyVAE`` whose output layer is a class of its own) is run through the hidden check
(its judge, in this process) and through the visible check the released notebook calls: both fail,
with the rule's message.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from browser_helpers import answers
from PIL import Image
from torch import nn

from autograder.checks import CheckFailed, find
from course_lib import rules
from course_lib.envs import EpisodeRecorder, frame_of, make_env
from course_lib.frames import Crop, preprocess_frame
from course_lib.template import MyVAETemplate

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ROOT / "autograder" / "checks"
HW1 = ROOT / "assignments" / "source" / "hw1_vae"


def _rules_enforced() -> set[str]:
    """The rule names the judges pass to ``rules.message``, read from their source."""
    found = set()
    for path in CHECKS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "message"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "rules"
            ):
                found.add(node.args[0].value)
    return found


def _pattern(rule: str) -> re.Pattern:
    """The rule's message with its fields as wildcards."""
    parts = re.split(r"\{\w+\}", rules.RULES[rule])
    return re.compile(".+".join(map(re.escape, parts)))


CROP = Crop(top=0.22, bottom=0.78, left=0.22, right=0.78)


def plain_gymnasium(env_id, n_frames, seed=None):
    """A correct Pendulum collector written with gym.make and Pillow: right frames, no make_env."""
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    frames = []
    for _ in range(n_frames):
        image = Image.fromarray(env.render())
        h, w = image.height, image.width
        image = image.crop((int(0.22 * w), int(0.22 * h), int(0.78 * w), int(0.78 * h))).resize((64, 64))
        frames.append(np.asarray(image))
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return np.stack(frames).astype(np.uint8)


def unseeded(env_id, n_frames, seed=None):
    """make_env and preprocess_frame, but the environment seeded with another seed than the one given."""
    env = make_env(env_id, seed=12345)
    observation, _ = env.reset(seed=12345)
    frames = []
    for _ in range(n_frames):
        frames.append(preprocess_frame(frame_of(env, observation), CROP))
        observation, *_ = env.step(env.action_space.sample())
    return np.stack(frames)


def own_crop(env_id, n_frames, seed=None):
    """make_env with the seed, but frames resized with Pillow instead of preprocess_frame."""
    env = make_env(env_id, seed=seed)
    observation, _ = env.reset(seed=seed)
    frames = []
    for _ in range(n_frames):
        frames.append(np.asarray(Image.fromarray(frame_of(env, observation)).resize((64, 64))))
        observation, *_ = env.step(env.action_space.sample())
    return np.stack(frames).astype(np.uint8)


def cartpole_own_crop(env, n_frames, episode_length=20, seed=None):
    """A correct reset loop whose frames are resized with Pillow instead of preprocess_frame."""
    observation, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    frames, t = [], 0
    for _ in range(n_frames):
        frames.append(np.asarray(Image.fromarray(frame_of(env, observation)).resize((64, 64))))
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        t += 1
        if terminated or truncated or t == episode_length:
            observation, _ = env.reset()
            t = 0
    return np.stack(frames).astype(np.uint8)


def cartpole_unseeded(env, n_frames, episode_length=20, seed=None):
    """A correct reset loop that never seeds the environment it is given."""
    return _loop(env, n_frames, episode_length, None)


def cartpole_other_seed(env, n_frames, episode_length=20, seed=None):
    """A correct reset loop that seeds the environment with another seed than the one given."""
    return _loop(env, n_frames, episode_length, 777)


def _loop(env, n_frames, episode_length, reset_seed):
    observation, _ = env.reset(seed=reset_seed)
    frames, t = [], 0
    for _ in range(n_frames):
        frames.append(preprocess_frame(frame_of(env, observation), "CartPole-v1"))
        observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
        t += 1
        if terminated or truncated or t == episode_length:
            observation, _ = env.reset()
            t = 0
    return np.stack(frames)


class OwnOutputLayer(nn.Module):
    """A correct output layer (64x64, in [0, 1]) written as a class of the notebook's own: its forward is
    code the grader cannot run."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1)
        self.out = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(nn.functional.leaky_relu(self.up(x))))  # (B, C, 64, 64)


def own_output_layer() -> type:
    """The notebook's reference ``MyVAE`` with an :class:`OwnOutputLayer`: right outputs, no torch.nn layers."""
    namespace = {"__name__": "__main__", "nn": nn, "torch": torch, "MyVAETemplate": MyVAETemplate}
    exec(answers(HW1 / "01_autoencoder_and_vae.ipynb")["a1_myvae"], namespace)  # the reference answer

    class MyVAE(namespace["MyVAE"]):
        def __init__(self, in_channels: int, latent_dim: int, hidden_dims: list[int] | None = None):
            super().__init__(in_channels, latent_dim, hidden_dims)
            self.final_layer = OwnOutputLayer(self.hidden_dims[0], in_channels)

    MyVAE.__module__ = "__main__"
    return MyVAE


# The hidden checks take only code defined in the student's notebook (``__main__``).
for _code in (plain_gymnasium, unseeded, own_crop, cartpole_own_crop, cartpole_unseeded, cartpole_other_seed,
              OwnOutputLayer):
    _code.__module__ = "__main__"

#: One collector per rule, breaking that rule only: ``rule: (grade_id, collector)``.
CASES = {
    "make_env": ("a5_frames", plain_gymnasium),
    "seed_given": ("a5_frames", unseeded),
    "preprocess": ("a5_frames", own_crop),
    "seed_before_use": ("a3_reset_pattern", cartpole_unseeded),
    "seed_first": ("a3_reset_pattern", cartpole_other_seed),
    "torch_nn": ("a1_output_range", own_output_layer()),
}


def _fail_hidden(grade_id, collector) -> str:
    objects = (collector, "Pendulum-v1") if grade_id == "a5_frames" else (collector,)
    with pytest.raises(CheckFailed) as failed:
        find(grade_id)(*objects)
    return str(failed.value)


def _fail_visible(grade_id, collector) -> str:
    with pytest.raises(rules.RuleBroken) as failed:
        if grade_id == "a1_output_range":
            rules.check_torch_layers(collector(3, 10), "MyVAE(3, 10)")
        elif grade_id == "a5_frames":
            rules.check_own_environment(collector, "Pendulum-v1", n=16, seed=0)
        else:
            env = EpisodeRecorder(make_env("CartPole-v1", seed=0))
            frames = collector(env, 100, episode_length=20, seed=0)
            rules.check_given_environment(frames, env, rules.call("collect_frames", 100, episode_length=20), seed=0)
    return str(failed.value)


def test_every_rule_the_judges_enforce_is_declared_and_tried_here():
    """Do the judges enforce exactly the declared rules, and does this module break each of them?"""
    assert _rules_enforced() == set(rules.RULES) == set(CASES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_the_judge_and_validate_fail_with_the_rules_message(rule):
    """Does a collector that breaks only ``rule`` fail the hidden check and the visible check, both
    with the rule's message?"""
    grade_id, collector = CASES[rule]
    hidden, visible = _fail_hidden(grade_id, collector), _fail_visible(grade_id, collector)
    assert _pattern(rule).fullmatch(hidden), hidden
    assert _pattern(rule).fullmatch(visible), visible


def test_the_preprocess_rule_for_a_given_environment():
    """Does a CartPole reset loop with its own resize fail both checks with the preprocess rule?"""
    hidden, visible = _fail_hidden("a3_reset_pattern", cartpole_own_crop), _fail_visible("a3", cartpole_own_crop)
    assert _pattern("preprocess").fullmatch(hidden), hidden
    assert _pattern("preprocess").fullmatch(visible), visible


def test_the_released_notebooks_call_the_visible_checks():
    """Do the visible tests of the collectors' graded cells call course_lib.rules (so Validate runs them)?"""
    import nbformat

    calls = {}
    for path in (ROOT / "assignments" / "source" / "hw1_vae").glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            visible = cell.source.split("### BEGIN HIDDEN TESTS")[0]
            if grade_id:
                calls[grade_id] = "rules.check_" in visible
    assert calls["a5_frames"] and calls["a3_reset_pattern"] and calls["a4_angles"] and calls["a1_output_range"], calls


def test_the_reference_answers_pass_the_visible_checks():
    """Do the reference answers pass every visible check (so the rules ask nothing a correct answer lacks)?"""
    from course_lib.envs import wide_cartpole
    from course_lib.solutions import hw1

    for model_cls in (hw1.MyVAE, own_output_layer().__mro__[1]):  # the library's and the notebook's
        rules.check_torch_layers(model_cls(3, 10), "MyVAE(3, 10)")
    source = HW1 / "05_other_environment.ipynb"
    namespace = {"__name__": "__main__", "np": np, "make_env": make_env, "frame_of": frame_of, "Crop": Crop}
    namespace["preprocess_frame"] = preprocess_frame
    exec(answers(source)["a5_collect_other_frames"], namespace)  # the notebook's reference answer
    rules.check_own_environment(namespace["collect_other_frames"], "Pendulum-v1", n=16, seed=0)
    for collect, make, kwargs in (
        (hw1.collect_frames, lambda: make_env("CartPole-v1", seed=0), {"episode_length": 20}),
        (hw1.collect_upright_frames, lambda: wide_cartpole(seed=0), {"max_angle": 0.3}),
    ):
        env = EpisodeRecorder(make())
        frames = collect(env, 50, seed=0, **kwargs)
        rules.check_given_environment(frames, env, rules.call(collect.__name__, 50, **kwargs), seed=0)


def test_the_allowed_layers_are_what_the_grader_rebuilds():
    """Does the visible check accept exactly the trees the judges can run: torch.nn layers in
    nn.Sequential, and not a subclass of one, a ModuleList or a class of the notebook's own?"""
    from autograder.checks import layers

    class Conv(nn.Conv2d):  # a subclass of a torch.nn layer is code of the notebook's own
        pass

    for module, runs in (
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(), nn.Sigmoid()), True),
        (nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(3, 3, 3)), True),
        (nn.Sequential(Conv(3, 4, 3)), False),
        (nn.ModuleList([nn.Conv2d(3, 4, 3)]), False),
        (nn.Sequential(nn.Conv1d(3, 4, 3)), False),
        (OwnOutputLayer(4, 3), False),
    ):
        rebuilt = layers.rebuild(layers.describe(module))
        assert layers.runnable(rebuilt) == runs and (not rules.unrunnable(module)) == runs, module
