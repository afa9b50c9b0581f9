"""What a grading run left in its autograded notebooks, for the messages of failing self-tests."""

from __future__ import annotations

from pathlib import Path

import nbformat

from autograder.course import step_dir


def cell_errors(out: Path, student: str, assignment: str, grade_ids: set[str]) -> dict[str, list[str]]:
    """``grade_id -> the errors its cell shows`` (``ename: evalue``) for ``grade_ids`` in ``student``'s
    autograded notebooks of a run whose output folder is ``out`` (as ``pipeline.autograde`` writes it)."""
    folder = step_dir(Path(out) / "course", "autograded", student, assignment)
    errors: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id in grade_ids:
                outputs = cell.get("outputs", [])
                errors[grade_id] = [f"{o.ename}: {o.evalue}"[:500] for o in outputs if o.output_type == "error"]
    return errors
