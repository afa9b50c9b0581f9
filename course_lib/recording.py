"""A log of the environments ``make_env`` builds and of the frames ``preprocess_frame`` makes.

A frame collector that builds its own environment (``collect_other_frames(env_id, n, seed)`` of
homework 1, activity 5) can be replayed only if someone saw what it did. Inside :func:`recording`,
:func:`course_lib.envs.make_env` wraps every environment it builds in an
:class:`~course_lib.envs.EpisodeRecorder` (resets with their seeds, actions, renders) and
:func:`course_lib.frames.preprocess_frame` notes, for every frame it makes, the SHA-1 of the image
it was given, the pixel box it cropped and the SHA-1 of the frame it returned. The autograder's
judge replays the environments, crops its own renders with the noted boxes and so knows every frame
a correct collector can have returned (``autograder/checks/episodes.py``). Outside the block both
functions behave as always.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def digest(array: np.ndarray) -> bytes:
    """The SHA-1 (20 bytes) of an array's bytes in C order."""
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).digest()


@dataclass
class Recording:
    """What happened inside one :func:`recording` block.

    Attributes:
        envs: ``(env_id, kwargs, recorder)`` per environment ``make_env`` built, in order;
            ``kwargs`` are the keyword arguments it passed to ``gymnasium.make``.
        frames: ``(input digest, (row0, row1, col0, col1, size), output digest)`` per call of
            ``preprocess_frame``, in order.
    """

    envs: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)
    frames: list[tuple[bytes, tuple[int, int, int, int, int], bytes]] = field(default_factory=list)


_ACTIVE: list[Recording] = []


@contextmanager
def recording() -> Iterator[Recording]:
    """Log the environments built and the frames preprocessed inside the block (nested blocks log
    into the innermost)."""
    log = Recording()
    _ACTIVE.append(log)
    try:
        yield log
    finally:
        _ACTIVE.remove(log)


def active() -> Recording | None:
    """The innermost :func:`recording` in progress, or ``None``."""
    return _ACTIVE[-1] if _ACTIVE else None
