"""A source notebook's answers run as a student's kernel runs them, for in-process tests of the checks.

The answer cells of a notebook (``solution`` cells that are not tests), with some replaced, are
executed in a namespace named ``__main__`` after the imports the notebooks use; a hidden check is
then probed and judged on the objects its test cell passes, as nbgrader would, with a nonce.
"""

from __future__ import annotations

import ast
import os
import secrets
from typing import Any
from unittest import mock

import matplotlib.pyplot as plt
import nbformat

from autograder import records
from autograder.checks import CheckFailed, find, seed_of
from autograder.course import source_dir
from autograder.submissions.hw1_vae import NB5

PRELUDE = """
import numpy as np
import torch
from torch import nn
from pathlib import Path
import gymnasium as gym
from course_lib.template import MyVAETemplate, add_to_class
from course_lib.envs import EpisodeRecorder, frame_of, make_env, wide_cartpole
from course_lib.frames import Crop, preprocess_frame, to_tensor
from course_lib.train import budget
"""


def _autograding() -> Any:
    """The environment nbgrader's autograde gives a kernel: ``course_lib.train.budget`` picks its
    small values."""
    return mock.patch.dict(os.environ, {"NBGRADER_EXECUTION": "autograde"})


def _cells(assignment: str, notebook: str) -> list[nbformat.NotebookNode]:
    return nbformat.read(source_dir(assignment) / notebook, as_version=4).cells


def namespace(assignment: str, notebook: str, replace: dict[str, str] | None = None) -> dict[str, Any]:
    """The notebook's answers (``grade_id -> source`` in ``replace`` instead of the solution's) and
    ``ENV_ID``, defined in a fresh ``__main__`` namespace."""
    replace = replace or {}
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(PRELUDE, ns)
    for cell in _cells(assignment, notebook):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if meta.get("solution") and not meta.get("grade"):
            exec(replace.get(meta["grade_id"], cell.source), ns)
        elif not meta:  # an unlocked cell: keep its settings (ENV_ID, LR, NUM_EPOCHS = budget(...))
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and _is_setting(node.value):
                    with _autograding():
                        exec(ast.unparse(node), ns)
    return ns


def _is_setting(value: ast.expr) -> bool:
    """A constant, or a ``budget(default, quick_value)`` of two constants."""
    if isinstance(value, ast.Call):
        return getattr(value.func, "id", "") == "budget" and all(isinstance(a, ast.Constant) for a in value.args)
    return isinstance(value, ast.Constant)


def hidden_calls(assignment: str, notebook: str) -> dict[str, list[str]]:
    """``grade_id -> names the hidden test cell passes to its check`` for the notebook's test cells."""
    calls = {}
    for cell in _cells(assignment, notebook):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            tree = ast.parse(cell.source)
            (call,) = (
                n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == meta["grade_id"]
            )
            calls[meta["grade_id"]] = [arg.id for arg in call.args]
    return calls


def graded(grade_id: str, *objects: Any, nonce: str | None = None, seed: int | None = None) -> str | None:
    """Probe in "the kernel", encode and decode the record, judge it: the failure message, or ``None``.

    The inputs are drawn from ``seed`` if given, else from the nonce's seed, as in a grading run. A
    failure of the probe itself (the student's code raised) counts as a failure too.
    """
    check = find(grade_id)
    assert check is not None, grade_id
    nonce = nonce or secrets.token_hex(8)
    inputs = check.inputs(seed_of(nonce) if seed is None else seed)
    try:
        values = check.probe(inputs, *objects)
        _, _, decoded, _ = records.decode(records.encode(grade_id, nonce, values))
        check.verdict(inputs, decoded)
    except CheckFailed as err:
        return str(err)
    return None


def record_of(grade_id: str, *objects: Any, nonce: str) -> dict:
    """The record the probe of ``grade_id`` leaves for ``objects`` while nbgrader autogrades."""
    check = find(grade_id)
    assert check is not None, grade_id
    return records.encode(grade_id, nonce, check.probe(check.inputs(seed_of(nonce)), *objects))


def training_cell(ns: dict[str, Any], seeds: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    """Notebook 05's setup and training cell (``a5_train``) run as nbgrader's autograde runs them (its
    small budget), on ``ns``'s answers: the cell's variables (``model``, ``train_frames``,
    ``val_frames``, ``baseline``, ``val_mse``, ...).

    ``seeds`` replace the seeds 0 and 1 the cell collects its training and validation frames with,
    for frames a collector written another way would draw.
    """
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in _cells("hw1_vae", NB5)}
    collect = ns["collect_other_frames"]
    other_seed = dict(zip((0, 1), seeds, strict=True))
    run = {**ns, "collect_other_frames": lambda env_id, n, seed=None: collect(env_id, n, seed=other_seed[seed])}
    with _autograding():
        exec(cells["setup"], run)
        exec(cells["a5_train"], run)
    plt.close("all")
    return run
