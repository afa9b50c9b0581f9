"""Pretrained VAEs that ship with the course, each with a model card: ``load(name)`` and go.

Each checkpoint lies in this folder beside its JSON card (``<name>.json``: the data, the training, the scores,
the command that rebuilds it), which ``docs/pretrained.md`` renders. ``conv_vae_carracing`` ships as TorchScript:
its class is homework 2's graded answer, so the package holds no Python class of it.

- :mod:`course_lib.pretrained.build`: rebuilds the checkpoints and their cards (instructors only)
- :mod:`course_lib.pretrained.cards`: the cards as Markdown, for ``docs/pretrained.md``
- :mod:`course_lib.pretrained.scripted`: a TorchScript VAE behind a plain ``nn.Module``
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from course_lib.pretrained.scripted import ScriptedVAE

#: The folder holding the checkpoints and their cards.
DIRECTORY = Path(__file__).resolve().parent

#: ``card["checkpoint"]["format"]`` values: a TorchScript archive, or a ``torch.save``'d state dict.
FORMATS = ("torchscript", "state_dict")


class PretrainedError(RuntimeError):
    """A shipped checkpoint cannot be used as its card describes it."""


class UnknownCheckpointError(PretrainedError, KeyError):
    """No card of that name."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class ChecksumError(PretrainedError):
    """The checkpoint file's SHA-256 is not the card's: the file is corrupt or was replaced."""


class ArchitectureError(PretrainedError):
    """The checkpoint's parameter names or shapes are not the card's."""


def _directory(directory: str | os.PathLike | None) -> Path:
    return DIRECTORY if directory is None else Path(directory)


def available(directory: str | os.PathLike | None = None) -> list[str]:
    """The names of the shipped checkpoints (those with a card), sorted.

    Args:
        directory: where to look (default: this package's folder).
    """
    return sorted(p.stem for p in _directory(directory).glob("*.json"))


def card(name: str, directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """The model card of checkpoint ``name``: a dict as stored in ``<name>.json``.

    Keys: ``name``, ``title``, ``summary``, ``checkpoint`` (``file``, ``format``, ``dtype``, ``bytes``,
    ``sha256``), ``architecture`` (``class``, ``kwargs``, ``parameters``: ``{name: shape}``,
    ``n_parameters``), ``data``, ``training``, ``evaluation``, ``probe``, ``reproduce``, ``notes``.

    Raises:
        UnknownCheckpointError: if there is no card ``name`` (the message lists those there are).
    """
    path = _directory(directory) / f"{name}.json"
    if not path.exists():
        raise UnknownCheckpointError(f"no pretrained checkpoint {name!r}; available: {available(directory)}")
    return json.loads(path.read_text())


def checkpoint_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """The file of checkpoint ``name`` (it is not checked: see :func:`verify`)."""
    return _directory(directory) / card(name, directory)["checkpoint"]["file"]


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Check that checkpoint ``name``'s file exists and has the SHA-256 of its card; return its path.

    Raises:
        ChecksumError: naming the file, if it is missing or its hash differs from the card's.
    """
    info = card(name, directory)["checkpoint"]
    path = _directory(directory) / info["file"]
    if not path.exists():
        raise ChecksumError(f"{path}: the checkpoint file of {name!r} is missing; reinstall course_lib")
    actual = sha256(path)
    if actual != info["sha256"]:
        raise ChecksumError(
            f"{path}: SHA-256 {actual} differs from its card's {info['sha256']}; the checkpoint is corrupt or was "
            "replaced. Reinstall course_lib (pip install --force-reinstall the course wheel) to get the shipped file."
        )
    return path


def check_architecture(parameters: Mapping[str, torch.Tensor], expected: Mapping[str, list[int]], what: str) -> None:
    """Compare parameter names and shapes with a card's ``architecture.parameters``.

    Args:
        parameters: ``{name: tensor}`` (a state dict or ``dict(module.named_parameters())``).
        expected: ``{name: shape}`` from the card.
        what: names the checkpoint in the message (e.g. its path).

    Raises:
        ArchitectureError: listing the missing, unexpected and reshaped parameters.
    """
    shapes = {key: list(value.shape) for key, value in parameters.items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    reshaped = [
        f"{key} {shapes[key]} (card: {list(expected[key])})"
        for key in expected
        if key in shapes and shapes[key] != list(expected[key])
    ]
    if missing or unexpected or reshaped:
        parts = [
            f"missing {missing}" if missing else "",
            f"unexpected {unexpected}" if unexpected else "",
            f"shapes differ: {reshaped}" if reshaped else "",
        ]
        raise ArchitectureError(
            f"{what}: its parameters are not the architecture of its card: " + "; ".join(p for p in parts if p)
        )


def load(name: str, device: str | torch.device = "cpu", directory: str | os.PathLike | None = None) -> nn.Module:
    """Load shipped checkpoint ``name``, checked against its card, in eval mode and float32.

    The file's SHA-256 must be the card's (else it is corrupt or was replaced), and its parameters' names
    and shapes the card's architecture. Checkpoints are stored in float16 and converted when loaded.

    Args:
        name: one of :func:`available`, e.g. ``"conv_vae_carracing"`` or ``"small_vae_cartpole"``.
        device: where to put the model.
        directory: where the checkpoints are (default: this package's folder).

    Returns:
        For a ``torchscript`` checkpoint, a :class:`~course_lib.pretrained.scripted.ScriptedVAE` (the
        TorchScript module behind a plain ``nn.Module``) with ``encode(x) -> (mu, logvar)``,
        ``decode(z) -> x_hat``, ``reparameterize(mu, logvar) -> z``, ``forward(x) -> (x_hat, mu, logvar)``
        and ``z_size``; its parameters are named as in the card, prefixed ``scripted.``. For a
        ``state_dict`` checkpoint, the :class:`course_lib.models.SmallVAE` of the card's
        ``architecture.kwargs``. Inputs are ``float32 (B, 3, 64, 64)`` in [0, 1].

    Raises:
        UnknownCheckpointError: for a name without a card.
        ChecksumError: if the file is missing, corrupt or replaced (the message names it).
        ArchitectureError: if its parameters' names or shapes are not the card's.
    """
    info = card(name, directory)
    path = verify(name, directory)
    fmt = info["checkpoint"]["format"]
    expected = info["architecture"]["parameters"]
    if fmt == "torchscript":
        scripted = torch.jit.load(str(path), map_location="cpu")
        check_architecture(dict(scripted.named_parameters()), expected, str(path))
        model = ScriptedVAE(scripted.float())
    elif fmt == "state_dict":
        state = torch.load(path, map_location="cpu", weights_only=True)
        check_architecture(state, expected, str(path))
        model = _build(info["architecture"])
        model.load_state_dict({key: value.float() for key, value in state.items()})
    else:
        raise PretrainedError(f"{path}: unknown checkpoint format {fmt!r} in its card; expected one of {FORMATS}")
    return model.to(device).eval()


def _build(architecture: Mapping[str, Any]) -> nn.Module:
    """The untrained module a ``state_dict`` card describes (only ``SmallVAE`` is shipped so)."""
    from course_lib.models import SmallVAE

    if architecture["class"] != "course_lib.models.SmallVAE":
        raise PretrainedError(f"state-dict checkpoints of {architecture['class']} are not supported")
    return SmallVAE(**architecture["kwargs"])


def is_shipped(
    state_dict: Mapping[str, torch.Tensor], rtol: float = 0.01, directory: str | os.PathLike | None = None
) -> str | None:
    """The name of the shipped ``SmallVAE`` checkpoint whose weights ``state_dict`` holds, or None.

    For graders: a model submitted as the student's own training must not be a shipped checkpoint
    loaded as it is (or barely changed). Weights match a checkpoint when their parameter names and
    shapes are its card's and, for every parameter tensor, the relative distance
    ``||w - w_shipped|| / ||w_shipped||`` is at most ``rtol`` (float16 storage alone gives about 3e-4;
    another initialisation or training gives about 1 for the convolutions). Tensor by tensor, so that
    the large background logits, alike in every model of a white-background environment, cannot hide
    different weights elsewhere. The shipped models are trained from seeds and data no notebook
    uses, so a student's own run does not land on them.

    Args:
        state_dict: ``{name: tensor}`` of a model (any floating dtype and device).
        rtol: the largest relative distance that counts as the same weights.
        directory: where the checkpoints are (default: this package's folder).

    Returns:
        The checkpoint's name (e.g. ``"small_vae_pendulum"``), or None if it is none of them.
    """
    shapes = {key: list(value.shape) for key, value in state_dict.items()}
    for name in available(directory):
        info = card(name, directory)
        if info["checkpoint"]["format"] != "state_dict" or shapes != info["architecture"]["parameters"]:
            continue
        shipped = _shipped_state(name, str(_directory(directory)))
        if all(_relative_distance(state_dict[key], value) <= rtol for key, value in shipped.items()):
            return name
    return None


@functools.cache
def _shipped_state(name: str, directory: str) -> dict[str, torch.Tensor]:
    """The float32 weights of shipped checkpoint ``name``, loaded (hash and architecture checked) once
    per process: a grader judging a class asks :func:`is_shipped` once per student."""
    return load(name, directory=directory).state_dict()


def _relative_distance(weights: torch.Tensor, reference: torch.Tensor) -> float:
    """``||weights - reference|| / ||reference||`` in float64 (``inf`` for non-finite weights; the absolute
    distance when the reference is all zeros)."""
    difference = float((weights.detach().cpu().double() - reference.double()).norm())
    if not math.isfinite(difference):
        return math.inf
    return difference / max(float(reference.double().norm()), 1e-12) if reference.any() else difference
