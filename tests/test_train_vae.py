"""The training command ``python -m course_lib.train_vae`` (and ``course train-vae``), end to end on tiny shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autograder import cli
from course_lib.data import save_shard
from course_lib.train import load_checkpoint
from course_lib.train_vae import TrainVAEError, load_model_class, main

TINY_MODEL = """
from course_lib.models import SmallVAE


class TinyVAE(SmallVAE):
    def __init__(self, z_size=32):
        super().__init__(z_size=z_size, width=4)
"""


@pytest.fixture
def shards(tmp_path: Path) -> Path:
    """Four rollouts of 12 frames: a light square moving on green, with actions."""
    rng = np.random.default_rng(0)
    for i in range(4):
        frames = np.full((12, 64, 64, 3), (40, 150, 40), dtype=np.uint8)
        for t, f in enumerate(frames):
            f[20:36, 4 * t : 4 * t + 16] = (180, 180, 180)
        save_shard(tmp_path / "shards" / f"rollout_{i:04d}.npy", frames, rng.uniform(-1, 1, (12, 3)))
    return tmp_path / "shards"


def _args(shards: Path, out: Path, *extra: str) -> list[str]:
    return ["--shards", str(shards), "--out", str(out), "--batch-size", "8", "--no-progress", "--lr", "1e-3", *extra]


def test_trains_saves_and_resumes(shards, tmp_path, capsys):
    """Does one epoch write a checkpoint with its scores, and --resume continue it to the second epoch?"""
    out = tmp_path / "runs" / "vae.pt"
    assert main(_args(shards, out, "--epochs", "1")) == 0
    printed = capsys.readouterr().out
    assert "4,348,547 parameters" in printed and "vs baseline" in printed
    state = torch.load(out, map_location="cpu", weights_only=False)
    assert state["history"]["epochs"] == 1 and state["optimizer"] is not None
    assert {"val_mse", "baseline_mse", "z_size", "model"} <= set(state["extra"])
    steps = state["history"]["steps"]
    assert main(_args(shards, out, "--epochs", "2", "--resume")) == 0
    state = torch.load(out, map_location="cpu", weights_only=False)
    assert state["history"]["epochs"] == 2 and state["history"]["steps"] == 2 * steps


def test_refuses_to_overwrite_without_resume(shards, tmp_path, capsys):
    """Is an existing checkpoint left alone, with a message, unless --resume is given?"""
    out = tmp_path / "vae.pt"
    out.write_bytes(b"not a checkpoint")
    assert main(_args(shards, out, "--epochs", "1")) == 2
    assert "--resume" in capsys.readouterr().err
    assert out.read_bytes() == b"not a checkpoint"


def test_trains_a_model_from_a_file(shards, tmp_path):
    """Does --model FILE.py:CLASS train a student's own class (the student kit has no solutions)?"""
    (tmp_path / "my_vae.py").write_text(TINY_MODEL)
    out, spec = tmp_path / "tiny.pt", f"{tmp_path / 'my_vae.py'}:TinyVAE"
    assert main(_args(shards, out, "--epochs", "1", "--z-size", "8", "--model", spec)) == 0
    model = load_model_class(spec)(z_size=8)
    load_checkpoint(out, model)
    assert model.z_size == 8


def test_bad_model_specs_are_explained(tmp_path):
    """Are a missing module, file or class reported by name, with a hint for the student kit?"""
    with pytest.raises(TrainVAEError, match="MODULE:CLASS"):
        load_model_class("ConvVAE")
    with pytest.raises(TrainVAEError, match="student kit"):
        load_model_class("course_lib.solutions.not_there:ConvVAE")
    with pytest.raises(TrainVAEError, match="no file"):
        load_model_class(f"{tmp_path / 'missing.py'}:ConvVAE")
    with pytest.raises(TrainVAEError, match=r"no nn\.Module class 'Nope'"):
        load_model_class("course_lib.models:Nope")


def test_one_shard_is_refused(shards, tmp_path, capsys):
    """Is a folder with a single rollout refused (nothing could be held out)?"""
    single = tmp_path / "single"
    single.mkdir()
    for name in ("rollout_0000.npy", "rollout_0000.actions.npy"):
        (single / name).write_bytes((shards / name).read_bytes())
    assert main(_args(single, tmp_path / "x.pt")) == 2
    assert "at least two" in capsys.readouterr().err


def test_course_train_vae_runs_the_command(shards, tmp_path):
    """Does `course train-vae ...` pass its arguments to the training command?"""
    out = tmp_path / "cli.pt"
    assert cli.main(["train-vae", *_args(shards, out, "--epochs", "1", "--max-steps", "1")]) == 0
    assert torch.load(out, map_location="cpu", weights_only=False)["history"]["steps"] == 1


def test_precision_auto_reports_its_choice(shards, tmp_path, capsys, monkeypatch):
    """Does --precision auto measure the paths, print the one it picked with the measured rates, and
    keep them in the checkpoint's history?"""
    from course_lib import precision

    monkeypatch.setattr(precision, "TRIAL_MIN_STEPS", 0)
    monkeypatch.setattr(precision, "_PRECISION_CHOICES", {})
    monkeypatch.setattr(precision.cpu, "fast_bfloat16", lambda cpuinfo=None: True)  # measure on any CPU
    monkeypatch.setattr(precision.cpu, "native_bfloat16", lambda cpuinfo=None: False)  # and screen first
    (tmp_path / "my_vae.py").write_text(TINY_MODEL)
    out, spec = tmp_path / "auto.pt", f"{tmp_path / 'my_vae.py'}:TinyVAE"
    assert main(_args(shards, out, "--epochs", "1", "--z-size", "8", "--model", spec, "--precision", "auto")) == 0
    history = torch.load(out, map_location="cpu", weights_only=False)["history"]
    assert history["precision"] in precision.PRECISIONS and history["precision_trial"]["reason"] == "measured"
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("precision auto"))
    assert line.startswith(f"precision auto: {history['precision']} (measured; screening, images/s: float32 ")
