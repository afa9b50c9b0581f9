"""Activity 5, another environment (``collect_other_frames``): the collected frames replayed and
cropped again by the judge; the notebook's ``SmallVAE`` measured on frames the judge renders.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

from autograder.checks import (
    Inputs,
    Record,
    check,
    expect,
    require_student_code,
    student_code,
)
from autograder.checks.episodes import expect_frames, recording_values, replay_recording
from autograder.checks.hw1_vae.rebuild import OTHER_ENVS, rng_of
from course_lib.recording import recording


def other_frames_inputs(seed: int) -> Inputs:
    """Two different call seeds of ``collect_other_frames``."""
    rng = rng_of(seed)
    first, second = (int(s) for s in rng.choice(2**31 - 1, size=2, replace=False))
    return {"seeds": [first, first, second], "n": 64}


def _collected(collect_other_frames: Any, env_id: str, n: int, seed: int, prefix: str) -> dict[str, Any]:
    """One call of the collector inside :func:`course_lib.recording.recording`, as
    :func:`~autograder.checks.episodes.recording_values` records it (kernel side)."""
    with recording() as log, student_code(f"collect_other_frames(ENV_ID, {n}, seed=...)"):
        frames = collect_other_frames(env_id, n, seed=seed)
    return recording_values(prefix, frames, log)


def _replayed_frames(
    record: Record, prefix: str, env_id: str, n: int, seed: int
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """The frames of one recorded collector call, as the judge's replay of its environments makes
    them (``uint8 (n, 64, 64, 3)``), and the pixel box each was cropped with. The collector must have
    seeded its environment with ``seed``.

    Raises:
        CheckFailed: if the frames are not ``n`` renders of ``env_id``, each cropped and resized
            with ``preprocess_frame``.
    """
    what = f"collect_other_frames(ENV_ID, {n}, seed=...)"
    digests = expect_frames(record, prefix, n, what)
    played, built = replay_recording(record, prefix, (*OTHER_ENVS, "CartPole-v1"), what, seed)
    expect(built == {env_id}, f"the frames of {what} are renders of {', '.join(sorted(built))}, not {env_id}")
    played.match(digests, what, preprocessed="preprocess_frame(frame, crop)")
    return played.frames(digests), [played.crops[bytes(key)] for key in digests]


def _expect_variety(frames: np.ndarray, what: str, unique: int) -> None:
    distinct = len({f.tobytes() for f in frames})
    expect(distinct > unique, f"{what} returned mostly identical frames ({distinct} different in {len(frames)})")


@check("a5_frames", inputs=other_frames_inputs)
def a5_frames(inputs: Inputs, collect_other_frames: Any, env_id: str) -> dict[str, Any]:
    """The frames are renders of ``ENV_ID`` (one of Pendulum-v1, Acrobot-v1, MountainCar-v0),
    cropped and resized with ``preprocess_frame``; the same seed gives the same frames, another seed
    others."""
    require_student_code(collect_other_frames, "collect_other_frames")
    values: dict[str, Any] = {"env_id": str(env_id)}
    for k, seed in enumerate(inputs["seeds"]):
        values |= _collected(collect_other_frames, env_id, inputs["n"], seed, f"run{k}")
    return values


@a5_frames.judge
def _a5_frames(inputs: Inputs, record: Record) -> None:
    """Replays every environment the collector built (resets, actions, renders), crops its own renders
    with the boxes the collector gave ``preprocess_frame`` and matches every returned frame to one of
    them (:func:`~autograder.checks.episodes.replay_recording`): the environment, the frames and
    their variety come from the judge's replay, not from the kernel."""
    env_id = record.text("env_id")
    expect(env_id in OTHER_ENVS, f"ENV_ID is {env_id!r}; choose one of {OTHER_ENVS}")
    n = inputs["n"]
    frames = [_replayed_frames(record, f"run{k}", env_id, n, seed)[0] for k, seed in enumerate(inputs["seeds"])]
    _expect_variety(frames[0], f"collect_other_frames(ENV_ID, {n}, seed=...)", 16)
    expect(
        np.array_equal(frames[0], frames[1]),
        "collect_other_frames with the same seed returned different frames: seed env.reset and env.action_space",
    )
    expect(
        not np.array_equal(frames[0], frames[2]), "collect_other_frames with different seeds returned the same frames"
    )


def baseline_inputs(seed: int) -> Inputs:
    """Seeds of the collector call that shows the crop, and of the judge's training and validation frames."""
    rng = rng_of(seed)
    crop, first, second = (int(s) for s in rng.choice(2**31 - 1, size=3, replace=False))
    return {"crop_seed": crop, "train_seed": first, "val_seed": second, "n": 96, "shown": 8}


@check("a5_beats_baseline", inputs=baseline_inputs)
def a5_beats_baseline(inputs: Inputs, model: nn.Module, collect_other_frames: Any, env_id: str) -> dict[str, Any]:
    """On fresh frames of the chosen environment, cropped as the collector crops them, the trained VAE
    reconstructs better than the mean image of other fresh frames."""
    require_student_code(collect_other_frames, "collect_other_frames")
    expect(isinstance(model, nn.Module), f"model should be the notebook's SmallVAE, got {type(model).__name__}")
    values: dict[str, Any] = {"env_id": str(env_id), "model": type(model).__name__}
    values |= _collected(collect_other_frames, env_id, inputs["shown"], inputs["crop_seed"], "crop")
    state = model.state_dict()
    n_params = sum(t.numel() for t in state.values())
    expect(n_params <= 4_000_000, f"the model has {n_params:,} parameters, too many to grade; keep WIDTH at 64 or less")
    values |= {f"param.{name}": t.detach().float() for name, t in state.items() if t.is_floating_point()}
    values["z_size"] = int(getattr(model, "z_size", 0))
    values["width"] = int(getattr(model, "width", 0))
    return values


@a5_beats_baseline.judge
def _a5_beats_baseline(inputs: Inputs, record: Record) -> None:
    """Replays a call of the collector, made with this run's seed, to learn its crop (every frame
    matched to the judge's own renders); renders fresh random-action frames of the environment
    itself with that crop, for seeds it draws; rebuilds the notebook's ``SmallVAE`` from the recorded
    weights and measures it on the judge's validation frames against the mean image of the judge's
    training frames."""
    from course_lib.data import sample_frames
    from course_lib.models import SmallVAE
    from course_lib.pretrained import is_shipped
    from course_lib.train import evaluate, mean_image_baseline

    env_id = record.text("env_id")
    expect(env_id in OTHER_ENVS, f"ENV_ID is {env_id!r}; choose one of {OTHER_ENVS}")
    # seeded with this run's seed: a call made now, not one recorded before grading
    _, boxes = _replayed_frames(record, "crop", env_id, inputs["shown"], inputs["crop_seed"])
    box = boxes[0]  # a box the judge itself cropped one of its renders with
    frames = {
        part: sample_frames(env_id, inputs["n"], seed=inputs[f"{part}_seed"], crop=box, progress=False)
        for part in ("train", "val")
    }
    expect(record.text("model") == "SmallVAE", f"model should be the notebook's SmallVAE, got {record.text('model')}")
    z_size, width = int(record.number("z_size")), int(record.number("width"))
    expect(1 <= z_size <= 512 and 1 <= width <= 64, f"SmallVAE(z_size={z_size}, width={width}) is not one to grade")
    model = SmallVAE(z_size=z_size, width=width)
    state = {name[len("param.") :]: record.tensor(name) for name in record.values if name.startswith("param.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        expect(False, f"the model's weights do not fit SmallVAE(z_size={z_size}, width={width}) ({str(err)[:200]})")
    shipped = is_shipped(state)
    expect(
        shipped is None,
        f"the model holds the weights of the pretrained checkpoint {shipped!r}; this activity grades a VAE you train",
    )
    mse = evaluate(model, frames["val"])["mse"]
    baseline = mean_image_baseline(frames["train"], frames["val"])
    expect(math.isfinite(mse), "the model's reconstructions are not finite")
    expect(
        mse < baseline,
        f"on held-out frames, the validation MSE {mse:.5f} is not below the mean-image baseline {baseline:.5f}; "
        "train longer, lower BETA or choose a tighter crop",
    )
