"""Where notebooks keep the files they make (rollouts, checkpoints, RNN data sets).

A notebook writes its data under ``data/`` next to itself, so that notebook 03 of homework 2 finds
the rollouts notebook 01 recorded. When nbgrader *validates* a notebook (the student's Validate
button, ``nbgrader validate``; nbgrader sets ``NBGRADER_EXECUTION=validate``), it runs the notebook
in the student's folder: there the files go to a temporary folder instead, so that Validate leaves
the student's folder exactly as it was. Where they go never changes what is graded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: The folder, next to the notebooks, where their data goes.
DATA = "data"
#: Under validation, all of a process's data goes to one temporary folder (removed by the system).
_VALIDATE_ROOT: Path | None = None


def validating() -> bool:
    """Whether nbgrader is validating the running notebook (``NBGRADER_EXECUTION=validate``)."""
    return os.environ.get("NBGRADER_EXECUTION") == "validate"


def data_dir(*parts: str) -> Path:
    """``data/<parts...>`` relative to the notebook; under validation, the same inside a temporary folder.

    Args:
        parts: sub-folders or a file name, e.g. ``data_dir("carracing_32x120")``,
            ``data_dir("conv_vae.pt")``.

    Returns:
        The path (not created).
    """
    global _VALIDATE_ROOT
    if not validating():
        return Path(DATA, *parts)
    if _VALIDATE_ROOT is None:
        _VALIDATE_ROOT = Path(tempfile.mkdtemp(prefix="course-validate-"))
    return _VALIDATE_ROOT.joinpath(DATA, *parts)
