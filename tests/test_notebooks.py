"""Do the companion notebooks in ``notebooks/`` run top to bottom?

Each notebook is copied to a temporary directory and executed there with nbclient, at the
small budget (``COURSE_QUICK=1``, read by ``course_lib.train.budget``), so the repository stays
clean of the figures and files the notebooks write. New notebooks are picked up automatically.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

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


@pytest.mark.slow(seconds=130)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Does the notebook run top to bottom at the quick budget without raising?"""
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    shutil.copy(path, workdir / path.name)
    monkeypatch.setenv("COURSE_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # One PyTorch thread per kernel unless told otherwise: when the suite shares the CPU with
    # other jobs, two spinning OpenMP threads per process make training several times slower.
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    # The kernel must import the course_lib of this checkout, whatever the working directory.
    pythonpath = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in pythonpath if p))
    nb = nbformat.read(workdir / path.name, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name} raised while running:\n{err}")
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, f"{path.name} has error outputs: {[e.get('ename') for e in errors]}"
