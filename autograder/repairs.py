"""Staging a submission for nbgrader: careless uploads are repaired and reported, not zeroed.

A student's folder holds the notebooks directly (an LMS download, a folder of submissions) or in an
``<assignment>/`` sub-folder (what nbgrader's ``collect`` writes from the exchange, with the
submission's ``timestamp.txt`` and ``submission_secret.txt``, which are kept so that nbgrader's
``release_feedback`` can hand the feedback back). Each notebook is copied into the course root's
``submitted/<student>/<assignment>/``, repaired where that keeps its answers: a notebook renamed by
a browser, one saved in nbformat 3, duplicate cell ids, megabytes of stored outputs, pasted copies
of a grade cell. Every repair is a :class:`~autograder.report.Problem` that names the file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import nbformat

from autograder.budgets import Budgets
from autograder.course import notebook_names, source_dir, step_dir
from autograder.report import StudentReport
from autograder.student_files import RefusedFileError, read_regular, real_folder, refusal, refused_in

#: A submitted notebook whose file is larger than this has its stored outputs dropped before
#: grading (autograding runs every cell again; stored outputs only cost time and memory).
MAX_STORED_BYTES = 5_000_000

#: Files of an exchange submission that nbgrader needs to hand the feedback back.
SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")


def read_submitted(
    path: Path, source_ids: dict[str, str] | None = None, owner: int | None = None, limit: int | None = None
) -> tuple[nbformat.NotebookNode | None, list[tuple[str, str]]]:
    """Read a submitted notebook and repair what can be repaired without changing its answers.

    Args:
        path: the submitted file, read as :func:`autograder.student_files.read_regular` reads (a
            link, a special file or a file over ``limit`` bytes is refused, unread).
        source_ids: ``grade_id -> cell id`` of the assignment's notebook, to tell a grade cell from
            its copies (:func:`drop_grade_cell_copies`).
        owner: the uid owning the submission (a hard link to another owner's file is refused).
        limit: the largest notebook read, bytes (:attr:`autograder.budgets.Budgets.notebook_bytes`).

    Returns:
        ``(notebook, notes)``: the notebook (nbformat 4, unique cell ids) or ``None`` when the file
        is not a notebook or is refused, and ``(kind, message)`` for what was done or went wrong,
        naming the file.
    """
    try:
        raw = read_regular(path, owner, limit)
    except RefusedFileError as err:
        return None, [("refused", f"{err}; it was refused, not read")]
    try:
        text = raw.decode("utf-8")
        raw_ids = [c.get("id") for c in json.loads(text).get("cells", []) if isinstance(c, dict) and c.get("id")]
        with warnings.catch_warnings():  # nbformat renames duplicate cell ids itself, with a warning
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
        version = int(nb.get("nbformat", 0))
        if version not in (3, 4):
            raise ValueError(f"nbformat {version}, expected 4")
        if version == 3:  # an old Jupyter: nbformat's own upgrade keeps cells and their nbgrader metadata
            nb = nbformat.convert(nb, 4)
    except Exception as err:
        return None, [
            ("unreadable", f"{path.name} is not a readable notebook ({type(err).__name__}: {str(err)[:200]})")
        ]
    notes = [("repaired", f"{path.name} was upgraded from nbformat 3 to 4")] if version == 3 else []
    duplicates = len(raw_ids) - len(set(raw_ids))
    if duplicates:
        notes.append(("repaired", f"{path.name} had {duplicates} duplicate cell id(s); nbformat renamed them"))
    size = len(raw)
    if size > MAX_STORED_BYTES:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        notes.append(
            ("repaired", f"{path.name} is {size / 1e6:.0f} MB with its outputs; stored outputs dropped before grading")
        )
    notes += [("repaired", note) for note in drop_grade_cell_copies(nb, source_ids or {}, path.name)]
    return nb, notes


def drop_grade_cell_copies(nb: nbformat.NotebookNode, source_ids: dict[str, str], filename: str) -> list[str]:
    """Make copies of a grade cell plain cells; nbgrader would reject the whole notebook otherwise.

    JupyterLab copies a cell's nbgrader metadata with the cell, so a pasted test cell carries the
    original's ``grade_id``. The cell whose id is the assignment's keeps the metadata (the first
    one when none is); the others lose it and run as ordinary cells. nbgrader then restores the
    kept cell from the gradebook as usual, so a copy can neither earn nor cost points.
    """
    by_grade_id: dict[str, list[nbformat.NotebookNode]] = {}
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id:
            by_grade_id.setdefault(grade_id, []).append(cell)
    notes = []
    for grade_id, cells in by_grade_id.items():
        if len(cells) < 2:
            continue
        keep = next((c for c in cells if c.get("id") == source_ids.get(grade_id)), cells[0])
        for cell in cells:
            if cell is not keep:
                del cell.metadata["nbgrader"]
        notes.append(
            f"{filename} had {len(cells) - 1} copy(ies) of grade cell {grade_id}; they were graded as plain cells"
        )
    return notes


def find_submitted(name: str, folder: Path, expected: list[str]) -> Path | None:
    """The file of notebook ``name`` in ``folder``: the exact name, or one unmistakable look-alike.

    Browsers and LMSs rename downloads (``05_other_environment (1).ipynb``, ``-1`` suffixes,
    changed case); such a file is taken when it matches ``name`` and no other expected notebook.
    """
    if os.path.lexists(folder / name):  # a link too, to be refused by name
        return folder / name

    def key(filename: str) -> str:
        stem = re.sub(r"(\s*\(\d+\)|-\d+|\s+copy)$", "", Path(filename).stem.strip(), flags=re.IGNORECASE)
        return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")

    others = [p for p in folder.glob("*.ipynb") if p.name not in expected]  # glob lists links without following
    matches = [p for p in others if key(p.name) == key(name)]
    return matches[0] if len(matches) == 1 else None


@functools.lru_cache(maxsize=32)
def grade_cell_ids(assignment: str, name: str) -> dict[str, str]:
    """``grade_id -> cell id`` of the assignment's notebook ``name`` (the release keeps the ids).

    Read once per process (every student's staging asks); callers must not modify the dict.
    """
    nb = nbformat.read(source_dir(assignment) / name, as_version=4)
    return {
        c.metadata["nbgrader"]["grade_id"]: c.get("id", "")
        for c in nb.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    }


def stage_submission(assignment: str, student_dir: Path, root: Path, budgets: Budgets | None = None) -> StudentReport:
    """Copy one student's notebooks into ``<root>/submitted/<id>/<assignment>``, reporting problems.

    Notebooks that are missing or unreadable are left out (nbgrader scores a missing notebook
    zero); repairable damage is repaired (:func:`read_submitted`); other files are ignored, except
    the exchange's :data:`SUBMISSION_FILES`, which are kept. Nothing is read through a link: a
    student folder, an ``<assignment>`` folder or a file that is a link, a special file or a hard link
    to another owner's file is refused by name (:mod:`autograder.student_files`), as are the files
    nbgrader's collect refused. A notebook over ``budgets.notebook_bytes`` is refused by its size, unread.
    """
    budgets = budgets or Budgets()
    report = StudentReport(student_dir.name)
    dest = step_dir(root, "submitted", student_dir.name, assignment)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    inner = student_dir / assignment
    for folder in (student_dir, inner):
        if (folder == student_dir or os.path.lexists(folder)) and not real_folder(folder):
            report.add("refused", f"the submission's folder {folder.name} {refusal(folder)}; it was refused, not read")
            return report
    folder = inner if inner.is_dir() else student_dir
    owner = os.lstat(folder).st_uid
    for path, why in refused_in(folder).items():
        report.add("refused", f"{path} {why}; it was refused when collected, not read")
    for name in SUBMISSION_FILES:
        if os.path.lexists(folder / name):
            try:
                (dest / name).write_bytes(read_regular(folder / name, owner, 10_000))
            except RefusedFileError as err:
                report.add("refused", f"{err}; it was refused, not read")
    expected = notebook_names(assignment)
    used: set[str] = set()
    for name in expected:
        path = find_submitted(name, folder, expected)
        if path is None:
            report.add("missing", f"{name} is missing (scored zero)", name)
            continue
        if path.name != name:
            report.add("repaired", f"{path.name} was graded as {name}", name)
        used.add(path.name)
        nb, notes = read_submitted(path, grade_cell_ids(assignment, name), owner, budgets.notebook_bytes)
        if nb is None:
            kind, message = notes[0]
            report.add(kind, f"{message} (scored zero)", name)
            continue
        for kind, message in notes:
            report.add(kind, message, name)
        try:
            nbformat.write(nb, dest / name)
        except Exception as err:  # a notebook nbformat reads but cannot write back
            report.add("unreadable", f"{path.name} could not be staged ({type(err).__name__}: {str(err)[:200]})", name)
    extra = sorted(p.name for p in folder.glob("*.ipynb") if p.name not in expected and p.name not in used)
    if extra:
        report.add("ignored", f"ignored unexpected notebooks: {', '.join(extra)}")
    return report
