"""Validate, as a student runs it: nbgrader runs the notebook in the student's own folder.

It must leave that folder exactly as it was: the files a notebook makes (homework 2's rollouts,
checkpoint and RNN data set) go to a temporary folder while nbgrader validates
(:mod:`course_lib.workspace`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.course import source_dir
from course_lib import workspace

pytestmark = pytest.mark.slow(seconds=20)


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_data_goes_to_a_temporary_folder_only_while_validating(monkeypatch):
    """Is data/ next to the notebook normally, and somewhere outside it while nbgrader validates?"""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert workspace.data_dir("rollouts") == Path("data", "rollouts")
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    path = workspace.data_dir("rollouts")
    assert path.is_absolute() and path.parts[-2:] == ("data", "rollouts") and Path.cwd() not in path.parents
    assert workspace.data_dir("x").parent == path.parent  # one temporary folder per process


def test_validate_leaves_the_students_folder_as_it_was(tmp_path):
    """Does `nbgrader validate` on homework 2's first notebook, which records rollouts, pass and leave
    no new or changed file in the student's folder?"""
    folder = tmp_path / "hw2_world_models"
    folder.mkdir()
    notebook = folder / "01_data_and_conv_vae.ipynb"
    notebook.write_bytes((source_dir("hw2_world_models") / notebook.name).read_bytes())
    before = _snapshot(folder)
    env = {**os.environ, "JUPYTER_PLATFORM_DIRS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("COURSE_QUICK", None)
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", "validate", notebook.name],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "Success! Your notebook passes all the tests." in result.stdout, (
        result.stdout[-3000:] + result.stderr[-3000:]
    )
    assert _snapshot(folder) == before
