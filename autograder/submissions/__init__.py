"""Known submissions for the self-tests, the hints and the demo: mutants with classic bugs, and correct
answers written differently from the reference.

A mutant is the source notebook with one answer cell (found by its ``grade_id``) replaced by code
with a bug; :class:`Mutant` names the graded cells it must fail (every other cell of its notebook
must pass). Every graded cell has at least one bug that its visible tests let through and its
hidden check catches (``tests/test_checks.py``).

- :mod:`autograder.submissions.hw1_vae`: homework 1's mutants, their variants and alternatives
- :mod:`autograder.submissions.hw2_world_models`: homework 2's mutants, their variants and alternatives
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass(frozen=True)
class Mutant:
    """An answer with a bug: the notebook, the ``grade_id`` of the answer cell it replaces, the code,
    and the graded cells it must fail.

    Attributes:
        hint: for a mutant of :data:`HW1_MUTANTS` or :data:`HW2_MUTANTS`, the sentence the feedback
            shows when a student's failures match this bug (:mod:`autograder.hints`): what looks
            wrong, never the checks' inputs or expected values. Empty for a variant.
        bug: for a variant (:data:`HINT_VARIANTS`), the name of the mutant whose bug it writes
            another way (its hint is that mutant's); ``None`` for the mutant that states the bug.
    """

    notebook: str
    answer: str
    code: str
    fails: frozenset[str]
    hint: str = ""
    bug: str | None = None


def variant(of: str, original: Mutant, code: str) -> Mutant:
    """A variant of mutant ``original`` (named ``of``): other code, the same bug, so the same cells to fail."""
    return Mutant(original.notebook, original.answer, code, original.fails, bug=of)


def replace_answer(notebook: Path, grade_id: str, source: str) -> None:
    """Replace the source of the cell whose nbgrader ``grade_id`` is ``grade_id``, in place.

    Raises:
        KeyError: if the notebook has no such cell.
    """
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source.strip("\n")
            nbformat.write(nb, notebook)
            return
    raise KeyError(f"{notebook.name} has no cell with grade_id {grade_id!r}")


def copy_notebooks(src: Path, dest: Path) -> Path:
    """Copy the ``*.ipynb`` of ``src`` into a fresh folder ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for nb in sorted(Path(src).glob("*.ipynb")):
        shutil.copy(nb, dest / nb.name)
    return dest


def mutant_students(mutants: dict[str, Mutant]) -> dict[str, list[str]]:
    """Mutants grouped into as few student folders as possible, at most one per answer cell.

    The answer cells of a notebook are graded by different checks, so one student can carry a bug
    in each; the student must then fail exactly the union of its mutants' cells. This saves
    nbgrader's per-student start-up in the self-tests.

    Returns:
        ``{"mutants_1": [mutant names], ...}`` in the order of ``mutants``.
    """
    students: list[list[str]] = []
    for name, mutant in mutants.items():
        for group in students:
            if all(
                (mutants[other].notebook, mutants[other].answer) != (mutant.notebook, mutant.answer) for other in group
            ):
                group.append(name)
                break
        else:
            students.append([name])
    return {f"mutants_{k + 1}": group for k, group in enumerate(students)}


def make_mutant_student(source: Path, dest: Path, mutants: list[Mutant]) -> Path:
    """A submission folder ``dest`` with the notebooks of ``source`` that ``mutants`` change, changed."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for mutant in mutants:
        if not (dest / mutant.notebook).exists():
            shutil.copy(Path(source) / mutant.notebook, dest / mutant.notebook)
        replace_answer(dest / mutant.notebook, mutant.answer, mutant.code)
    return dest
