"""``fit(precision="auto")``: does the trial drop slow paths, time the rest after an untimed step,
pick the fastest, remember its choice for short runs, and save it with the checkpoint?"""

from __future__ import annotations

import pytest
import torch

from course_lib import precision
from course_lib.models import SmallVAE
from course_lib.precision import PRECISIONS, TRIAL_MIN_STEPS, choose_precision
from course_lib.train import fit, load_checkpoint

FIT = {"batch_size": 16, "seed": 0, "device": "cpu", "progress": False}


def small_model(seed: int = 0) -> SmallVAE:
    torch.manual_seed(seed)
    return SmallVAE(z_size=4, width=8)


@pytest.fixture
def fake_steps(monkeypatch):
    """Replace the trial's timed steps by fixed seconds: ``costs[(path, stage)]`` per pass.

    Stages: ``"screen"`` (forward and backward of a few frames) and ``"step"`` (a full training
    step); a cost that is an exception is raised. Returns the costs to fill in and the list of
    ``(path, stage, threads)`` run, in order.
    """
    names = {path: name for name, path in precision.PRECISIONS.items()}
    costs: dict[tuple[str, str], float | Exception] = {}
    calls: list[tuple[str, str]] = []

    def fake(model, optimizer, frames, path, loss_fn, device):
        key = (names[path], "step" if optimizer is not None else "screen")
        calls.append((*key, torch.get_num_threads()))
        cost = costs[key]
        if isinstance(cost, Exception):
            raise cost
        return cost

    monkeypatch.setattr(precision, "_timed_step", fake)
    monkeypatch.setattr(precision, "_PRECISION_CHOICES", {})
    monkeypatch.setattr(precision.cpu, "fast_bfloat16", lambda cpuinfo=None: True)  # try bfloat16 on any CPU
    monkeypatch.setattr(precision.cpu, "native_bfloat16", lambda cpuinfo=None: False)  # a CPU that cannot say: screen
    return costs, calls


def _costs(screen: dict[str, float | Exception], step: dict[str, float | Exception]) -> dict:
    return {**{(k, "screen"): v for k, v in screen.items()}, **{(k, "step"): v for k, v in step.items()}}


def test_auto_precision_picks_the_fastest_full_step(fake_steps, small_frames):
    """Are paths 2x slower than the fastest screening pass dropped there, and of the rest is the one
    with the fastest full training steps chosen, with every rate reported?"""
    costs, calls = fake_steps
    costs.update(
        _costs(
            {"float32": 0.01, "bfloat16": 0.05, "bfloat16-channels-last": 0.008},
            {"float32": 0.5, "bfloat16-channels-last": 0.4},
        )
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trial = choose_precision(small_model(), small_frames, batch_size=16)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert trial.chosen == "bfloat16-channels-last" and trial.reason == "measured"
    assert trial.dropped == {"bfloat16": "screen"}
    assert trial.screen_images_per_s == {"float32": 400.0, "bfloat16": 80.0, "bfloat16-channels-last": 500.0}
    assert trial.images_per_s == {"float32": 32.0, "bfloat16-channels-last": 40.0}  # 16 frames per step
    # warm-up, then two interleaved screening rounds of every path, on one thread; then steps, on
    # the run's threads: warm-up and two rounds
    screen = ["float32", "bfloat16", "bfloat16-channels-last"]
    steps = ["float32", "bfloat16-channels-last"]
    assert calls == [(p, "screen", 1) for p in screen * 3] + [(p, "step", 2) for p in steps * 3]


def test_auto_precision_times_after_an_untimed_step_and_records_a_failing_path(fake_steps, small_frames):
    """Is a path slow at full steps timed and not chosen (its untimed first step never decides),
    and one that raises recorded as an error and not run again?"""
    costs, calls = fake_steps
    costs.update(
        _costs(
            {"float32": 0.01, "bfloat16": RuntimeError("no bf16 here"), "bfloat16-channels-last": 0.01},
            {"float32": 0.5, "bfloat16-channels-last": 1.5},
        )
    )
    trial = choose_precision(small_model(), small_frames, batch_size=16)
    assert trial.chosen == "float32"
    assert trial.dropped == {"bfloat16": "error"}
    assert trial.errors == {"bfloat16": "RuntimeError: no bf16 here"}
    assert trial.images_per_s == {"float32": 32.0, "bfloat16-channels-last": 10.7}  # medians of the timed steps
    assert [c[:2] for c in calls].count(("bfloat16", "screen")) == 1  # failed at its warm-up: not run again
    assert [c[:2] for c in calls].count(("bfloat16-channels-last", "step")) == 3  # untimed, then two timed


def test_auto_precision_skips_the_screening_on_a_cpu_with_native_bfloat16(fake_steps, small_frames, monkeypatch):
    """Where the CPU's flags list native bfloat16, are the paths timed at full steps only (no screening)?"""
    costs, calls = fake_steps
    monkeypatch.setattr(precision.cpu, "native_bfloat16", lambda cpuinfo=None: True)
    costs.update(_costs({}, {"float32": 0.5, "bfloat16": 0.25, "bfloat16-channels-last": 0.4}))
    trial = choose_precision(small_model(), small_frames, batch_size=16)
    assert trial.chosen == "bfloat16" and trial.screen_images_per_s == {} and trial.dropped == {}
    assert trial.images_per_s == {"float32": 32.0, "bfloat16": 64.0, "bfloat16-channels-last": 40.0}
    assert [c[:2] for c in calls] == [(p, "step") for p in PRECISIONS] * 3


def test_short_auto_run_uses_a_remembered_choice(fake_steps, small_frames):
    """Does a run shorter than TRIAL_MIN_STEPS skip the trial: float32 at first, then the choice of the
    last trial for the same model class and batch size?"""
    costs, calls = fake_steps
    first = fit(small_model(), small_frames, max_steps=3, precision="auto", **FIT)
    assert first.precision == "float32" and calls == []
    assert first.precision_trial["reason"] == f"not measured: a run of 3 steps is shorter than {TRIAL_MIN_STEPS}"
    costs.update(
        _costs(
            dict.fromkeys(["float32", "bfloat16", "bfloat16-channels-last"], 0.01),
            {"float32": 0.5, "bfloat16": 0.3, "bfloat16-channels-last": 0.4},
        )
    )
    choose_precision(small_model(), small_frames, batch_size=16)
    second = fit(small_model(), small_frames, max_steps=3, precision="auto", **FIT)
    assert second.precision == "bfloat16" and second.precision_trial["reason"] == "remembered"
    assert second.precision_trial["images_per_s"]["bfloat16"] == pytest.approx(16 / 0.3, abs=0.1)
    other_batch = fit(small_model(), small_frames, max_steps=3, precision="auto", **{**FIT, "batch_size": 32})
    assert other_batch.precision == "float32"


def test_auto_precision_is_saved_in_the_checkpoint(fake_steps, small_frames, tmp_path, monkeypatch):
    """Does a measured run's History, saved and loaded, say which path it trained with and why?"""
    costs, _ = fake_steps
    monkeypatch.setattr(precision, "TRIAL_MIN_STEPS", 2)
    costs.update(_costs(dict.fromkeys(PRECISIONS, 0.01), dict.fromkeys(PRECISIONS, 0.5)))
    history = fit(small_model(), small_frames, max_steps=2, precision="auto", checkpoint_path=tmp_path / "c.pt", **FIT)
    loaded = load_checkpoint(tmp_path / "c.pt", small_model())["history"]
    assert loaded.precision == history.precision == "float32"  # a tie: the first path
    assert loaded.precision_trial == history.precision_trial and loaded.precision_trial["reason"] == "measured"
