"""Are the lessons in ``notebooks/`` saved as lessons should be (no outputs, no reference answers)?

They are run top to bottom, once, in the student kit's layout, by ``tests/test_site.py``, which then
renders the executed notebooks into the course site. New notebooks are picked up automatically.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_there_are_notebooks() -> None:
    """Does the glob find any notebook at all (so the parametrized tests are not vacuous)?"""
    assert NOTEBOOKS, f"no notebooks found in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_does_not_import_solutions(path: Path) -> None:
    """Is the notebook free of any reference to the graded answers in ``course_lib.solutions``?"""
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{path.name}, cell {index}"
        assert "course_lib.solutions" not in cell.source, f"{where} uses course_lib.solutions"
        assert "from course_lib import solutions" not in cell.source, f"{where} imports solutions"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_saved_without_outputs(path: Path) -> None:
    """Is the notebook saved without outputs and execution counts, as committed notebooks are?"""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}, cell {index} has saved outputs"
            assert cell.execution_count is None, f"{path.name}, cell {index} has an execution count"
