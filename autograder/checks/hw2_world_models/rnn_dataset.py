"""w3, the RNN data set: ``encode_rollouts`` with a stand-in VAE and ``save_rnn_dataset``'s files."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autograder.checks import (
    Inputs,
    Record,
    check,
    expect,
    require_student_code,
    seeded,
    student_code,
)
from autograder.checks.hw2_world_models.matching import LOGVAR_SHIFT, rng_of, sub_seed
from course_lib.frames import to_tensor
from course_lib.models import SmallVAE


class _StandInVAE(SmallVAE):
    """The VAE given to ``encode_rollouts``: ``SmallVAE``, sampling in eval mode too (as World Models'
    ``ConvVAE`` does), so that storing a sampled z instead of mu is seen whatever the mode."""

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def _stand_in(seed: int) -> _StandInVAE:
    """Any VAE with ``encode(x) -> (mu, logvar)`` will do, so not the reference (the answer of w1)."""
    with seeded(seed):
        model = _StandInVAE(z_size=32, width=4)
    with torch.no_grad():
        model.fc_logvar.bias += LOGVAR_SHIFT  # sigma far from 1: a sampled z is far from mu
    return model


def _rollouts(seed: int, lengths: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, size=(t, 64, 64, 3), dtype=np.uint8) for t in lengths]
    actions = [rng.uniform(-1, 1, size=(t, 3)).astype(np.float32) for t in lengths]
    return frames, actions


def rollout_inputs(seed: int) -> Inputs:
    """Three rollouts of different lengths: their seed, the stand-in VAE's and the noise's."""
    rng = rng_of(seed)
    lengths = [int(n) for n in rng.choice(np.arange(2, 15), size=3, replace=False)]
    return {"lengths": lengths, "rollouts_seed": sub_seed(rng), "model_seed": sub_seed(rng), "seed": sub_seed(rng)}


_SEQUENCE_KEYS = ("mu", "logvar", "actions")


@check("w3_encode", inputs=rollout_inputs)
def w3_encode(inputs: Inputs, encode_rollouts: Callable) -> dict[str, Any]:
    """One sequence per rollout (lengths differ) with ``mu``, ``logvar`` = ``encode(frames)`` and the
    actions taken in those frames, as float32 numpy arrays."""
    require_student_code(encode_rollouts, "encode_rollouts")
    frames, actions = _rollouts(inputs["rollouts_seed"], inputs["lengths"])
    model = _stand_in(inputs["model_seed"])
    model.train()
    with seeded(inputs["seed"]), student_code("encode_rollouts(model, frames, actions)"):
        sequences = encode_rollouts(model, frames, actions)
    expect(
        isinstance(sequences, (list, tuple)),
        f"encode_rollouts should return a list with one dict per rollout, got {type(sequences).__name__}",
    )
    values: dict[str, Any] = {"n": len(sequences)}
    for i, seq in enumerate(sequences):
        expect(
            isinstance(seq, dict) and set(_SEQUENCE_KEYS) <= set(seq),
            f"rollout {i}: expected a dict with keys 'mu', 'logvar' and 'actions', got "
            f"{sorted(seq) if isinstance(seq, dict) else type(seq).__name__}",
        )
        for key in _SEQUENCE_KEYS:
            value = seq[key]
            is_float32 = isinstance(value, np.ndarray) and value.dtype == np.float32
            values[f"{key}_{i}_type"] = f"{type(value).__name__} {getattr(value, 'dtype', '')}".strip()
            values[f"{key}_{i}"] = value if is_float32 else np.zeros(0, np.float32)
    return values


@w3_encode.judge
def _w3_encode(inputs: Inputs, record: Record) -> None:
    lengths = inputs["lengths"]
    n = int(record.number("n"))
    expect(n == len(lengths), f"encode_rollouts should return one sequence per rollout ({len(lengths)}), got {n}")
    frames, actions = _rollouts(inputs["rollouts_seed"], lengths)
    model = _stand_in(inputs["model_seed"]).eval()
    for i, t in enumerate(lengths):
        for key in _SEQUENCE_KEYS:
            kind = record.text(f"{key}_{i}_type")
            expect(
                kind == "ndarray float32",
                f"rollout {i}: {key!r} should be a float32 numpy array, got {kind} (use .detach().cpu().numpy())",
            )
        arrays = {key: record.array(f"{key}_{i}", "float32") for key in _SEQUENCE_KEYS}
        for key, width in (("mu", 32), ("logvar", 32), ("actions", 3)):
            expect(
                arrays[key].shape == (t, width),
                f"rollout {i} ({t} frames): {key!r} has shape {arrays[key].shape}, expected ({t}, {width})",
            )
        with torch.no_grad():
            ref_mu, ref_logvar = (v.numpy() for v in model.encode(to_tensor(frames[i])))
        sampled = np.abs(arrays["mu"] - ref_mu).mean() > 0.1
        expect(
            np.allclose(arrays["mu"], ref_mu, atol=1e-4),
            f"rollout {i}: 'mu' is not model.encode(frames)'s mean"
            + (
                " (it looks like a sampled z = mu + sigma * eps: store the deterministic mean, as the MDN-RNN models "
                "the posterior, not one noisy draw)"
                if sampled
                else ""
            ),
        )
        expect(
            np.allclose(arrays["logvar"], ref_logvar, atol=1e-4),
            f"rollout {i}: 'logvar' is not model.encode(frames)'s log-variance",
        )
        shifted = t > 1 and np.allclose(arrays["actions"][:-1], actions[i][1:])
        expect(
            np.allclose(arrays["actions"], actions[i]),
            f"rollout {i}: 'actions' should be the actions of that rollout, aligned with its frames "
            "(actions[t] was taken in frame t)" + (" - yours are shifted by one step" if shifted else ""),
        )


def _sequences(seed: int, lengths: list[int]) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "mu": rng.standard_normal((t, 32)).astype(np.float32),
            "logvar": rng.standard_normal((t, 32)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
        }
        for t in lengths
    ]


def files_inputs(seed: int) -> Inputs:
    """Three sequences' lengths and seed."""
    rng = rng_of(seed)
    return {"lengths": [int(n) for n in rng.integers(2, 10, size=3)], "seed": sub_seed(rng)}


@check("w3_files", inputs=files_inputs)
def w3_files(inputs: Inputs, save_rnn_dataset: Callable) -> dict[str, Any]:
    """One ``rollout_<i:04d>.npz`` per rollout with arrays ``mu``, ``logvar``, ``actions`` (no pickles),
    the paths returned, and saving into an existing folder works."""
    require_student_code(save_rnn_dataset, "save_rnn_dataset")
    sequences = _sequences(inputs["seed"], inputs["lengths"])
    values: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "rnn"
        with student_code("save_rnn_dataset(sequences, directory)"):
            returned = save_rnn_dataset(sequences, directory)
        files = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        values["files"] = json.dumps(files)
        paths = returned if isinstance(returned, list | tuple) else []
        values["returned"] = json.dumps([Path(p).name if isinstance(p, str | Path) else repr(p) for p in paths])
        for i, name in enumerate(f for f in files if f.endswith(".npz")):
            if i < 16:
                values[f"file_{i}"] = np.frombuffer((directory / name).read_bytes(), dtype=np.uint8)
        with student_code("save_rnn_dataset into an existing folder"):
            save_rnn_dataset(sequences[:1], directory)
    return values


@w3_files.judge
def _w3_files(inputs: Inputs, record: Record) -> None:
    sequences = _sequences(inputs["seed"], inputs["lengths"])
    files = [f for f in record.json("files") if f.endswith(".npz")]
    want = [f"rollout_{i:04d}.npz" for i in range(len(sequences))]
    expect(files == want, f"save_rnn_dataset wrote {files}, expected {want}")
    expect(
        record.json("returned") == want,
        "save_rnn_dataset should return the paths it wrote, one per rollout, in order",
    )
    for i, seq in enumerate(sequences):
        try:
            with np.load(io.BytesIO(record.array(f"file_{i}", "uint8").tobytes()), allow_pickle=False) as data:
                stored = {k: data[k] for k in data.files}
        except ValueError as err:
            expect(False, f"{want[i]} holds pickled objects or is not an .npz file ({err}); save plain float arrays")
        expect(
            set(_SEQUENCE_KEYS) <= set(stored),
            f"{want[i]} holds {sorted(stored)}, expected 'mu', 'logvar' and 'actions'",
        )
        for key, value in seq.items():
            expect(
                stored[key].shape == value.shape and np.allclose(stored[key], value),
                f"{want[i]}: {key!r} has shape {stored[key].shape}, expected {value.shape} with the rollout's values",
            )
