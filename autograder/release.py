"""Releasing an assignment: nbgrader's student version, recorded in the gradebook, and the student kit.

``generate_assignment`` makes the student notebooks from the source (solutions and hidden tests
removed) and records the assignment's notebooks and grade cells in the gradebook. :func:`release`
adds the student kit (the notebooks, a ``course_lib`` wheel without the solutions, the environment
file and a README). Publishing to nbgrader's exchange is :func:`autograder.exchange.release_assignment`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from autograder.course import REPO, PipelineError, prepare_course, run_nbgrader
from autograder.gradebook import gradebook_lock, holds_assignment


def generate_assignment(assignment: str, root: Path, db_url: str | None = None) -> Path:
    """``nbgrader generate_assignment``: the student version in ``<root>/release/<assignment>``.

    Records the assignment's notebooks and grade cells in the gradebook at ``db_url`` (default
    ``<root>/gradebook.db``). A shared server gradebook records it once: under a PostgreSQL
    advisory lock, the first machine records it and the others find it there. nbgrader cannot
    record it again once grades refer to its cells; a changed assignment needs a new database.

    Raises:
        PipelineError: if nbgrader fails (with the end of its log).
    """
    args = ["generate_assignment", assignment, "--force"]
    with gradebook_lock(db_url):
        if db_url and not holds_assignment(assignment, db_url):
            args.append(f"--CourseDirectory.db_url={db_url}")
        result = run_nbgrader(args, root, timeout=600)
    if result.returncode != 0:
        raise PipelineError(f"nbgrader generate_assignment {assignment} failed:\n{result.stderr[-3000:]}")
    return root / "release" / assignment


def _has_setuptools() -> bool:
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return False
    return True


def build_student_wheel(dest: Path) -> Path:
    """Build a ``course_lib`` wheel without ``course_lib.solutions`` into ``dest``; return its path.

    The runtime dependencies are those of pyproject.toml, less nbgrader's gradebook driver
    (students do not grade).

    Raises:
        PipelineError: if pip cannot build the wheel.
    """
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [d for d in pyproject["dependencies"] if not d.startswith(("nbgrader", "psycopg"))]
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        shutil.copytree(
            REPO / "course_lib",
            stage / "course_lib",
            ignore=shutil.ignore_patterns("solutions", "__pycache__", "*.pyc"),
        )
        (stage / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "course-lib"\nversion = "{pyproject["version"]}"\n'
            f'description = "{pyproject["description"]}"\nrequires-python = "{pyproject["requires-python"]}"\n'
            f'dependencies = {json.dumps(deps)}\n\n[tool.setuptools.packages.find]\ninclude = ["course_lib*"]\n'
        )
        dest.mkdir(parents=True, exist_ok=True)
        # Reuse the venv's setuptools when there is one; otherwise pip fetches it.
        isolation = ["--no-build-isolation"] if _has_setuptools() else []
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(dest), str(stage)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise PipelineError(f"building the course_lib wheel failed:\n{result.stderr[-3000:]}")
    wheels = sorted(dest.glob("course_lib-*.whl"))
    if not wheels:
        raise PipelineError(f"pip wheel produced no course_lib wheel in {dest}")
    return wheels[-1]


def release(assignment: str, out: Path) -> dict[str, Path]:
    """Release an assignment: student notebooks and a student kit zip.

    Writes ``<out>/release/<assignment>/*.ipynb`` (via ``nbgrader generate_assignment`` in the
    course root ``<out>/course``) and ``<out>/<assignment>_student_kit.zip`` holding the released
    notebooks, a ``course_lib`` wheel without ``solutions/``, and ``environment.yml``.

    Returns:
        Paths of the ``release`` folder, the ``kit`` zip, the ``wheel`` and the course ``root``.
    """
    out = Path(out).resolve()
    root = prepare_course(assignment, out)
    released = generate_assignment(assignment, root)
    release_dir = out / "release" / assignment
    if release_dir.exists():
        shutil.rmtree(release_dir)
    shutil.copytree(released, release_dir)
    wheel = build_student_wheel(out / "dist")
    kit = out / f"{assignment}_student_kit.zip"
    with zipfile.ZipFile(kit, "w", zipfile.ZIP_DEFLATED) as zf:
        for nb in sorted(release_dir.glob("*.ipynb")):
            zf.write(nb, f"{assignment}/{nb.name}")
        zf.write(wheel, f"{assignment}/{wheel.name}")
        zf.write(REPO / "environment.yml", f"{assignment}/environment.yml")
        zf.writestr(
            f"{assignment}/README.md",
            f"# {assignment}\n\n1. `conda env create -f environment.yml`, then "
            "`conda activate autoencoders-to-world-models`\n"
            f"2. `pip install {wheel.name}`\n3. `jupyter lab` and open the notebooks in order.\n",
        )
    return {"release": release_dir, "kit": kit, "wheel": wheel, "root": root}
