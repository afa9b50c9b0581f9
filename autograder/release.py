"""Releasing an assignment: nbgrader's student version, recorded in the gradebook, and the student kit.

``generate_assignment`` makes the student notebooks from the source (solutions and hidden tests
removed) and records the assignment's notebooks and grade cells in the gradebook. :func:`release`
adds the student kit (the notebooks, the lessons the homework builds on (:data:`LESSONS`), a
``course_lib`` wheel without the solutions, the environment file and a README). Publishing to
nbgrader's exchange is :func:`autograder.exchange.release_assignment`.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from autograder.course import REPO, PipelineError, prepare_course, run_nbgrader
from autograder.deadlines import format_utc, set_due
from autograder.gradebook import gradebook_lock, holds_assignment

#: The lessons of ``notebooks/`` that each homework builds on, in reading order. Its kit carries them in
#: ``lessons/`` next to the homework notebooks; docs/course.md's course map says which of their sections
#: to read before each activity.
LESSONS: dict[str, tuple[str, ...]] = {
    "hw1_vae": (
        "01_what_an_autoencoder_learns",
        "02_vae_latent_space",
        "03_data_cartpole",
        "04_episode_resets",
    ),
    "hw2_world_models": (
        "05_beta_vae_cyclical_annealing",
        "06_vae_gan",
        "07_mdn_rnn_dream",
    ),
}
#: The kit's folder of lessons, inside the homework's folder.
LESSONS_DIR = "lessons"


def lessons(assignment: str) -> list[Path]:
    """The lesson notebooks (``notebooks/<name>.ipynb``) that ``assignment``'s kit carries.

    Raises:
        PipelineError: if the assignment has no lessons declared in :data:`LESSONS`, or one is missing.
    """
    if assignment not in LESSONS:
        raise PipelineError(f"no lessons are declared for {assignment!r} (release.LESSONS: {sorted(LESSONS)})")
    paths = [REPO / "notebooks" / f"{name}.ipynb" for name in LESSONS[assignment]]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise PipelineError(f"the lessons of {assignment} are missing from notebooks/: {missing}")
    return paths


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


def student_requirements(pyproject: dict | None = None) -> tuple[str, list[str]]:
    """``(requires-python, dependencies)`` of the student wheel: ``[tool.course.student]`` of pyproject.toml.

    Ranges known to work (``tests/test_kit.py`` installs the newest releases they allow), not the
    development pins of ``[project]``: students install the wheel beside what they already have.

    Raises:
        PipelineError: if the table, or one of its two keys, is missing.
    """
    pyproject = pyproject if pyproject is not None else tomllib.loads((REPO / "pyproject.toml").read_text())
    student = pyproject.get("tool", {}).get("course", {}).get("student", {})
    if "requires-python" not in student or "dependencies" not in student:
        raise PipelineError("pyproject.toml needs [tool.course.student] with requires-python and dependencies")
    return student["requires-python"], list(student["dependencies"])


def _student_pyproject(pyproject: dict) -> str:
    """The staged pyproject.toml of the student wheel: ``course_lib`` alone, with the student ranges
    and the package data of ``course_lib``'s packages (TOML strings written as JSON strings)."""
    project = pyproject["project"]
    requires_python, deps = student_requirements(pyproject)
    package_data = {
        package: patterns
        for package, patterns in pyproject.get("tool", {}).get("setuptools", {}).get("package-data", {}).items()
        if package.split(".")[0] == "course_lib" and "solutions" not in package.split(".")
    }
    text = (
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f"[project]\nname = {json.dumps(project['name'])}\nversion = {json.dumps(project['version'])}\n"
        f"description = {json.dumps(project['description'])}\nrequires-python = {json.dumps(requires_python)}\n"
        f"dependencies = {json.dumps(deps)}\n\n"
        '[tool.setuptools.packages.find]\ninclude = ["course_lib*"]\nexclude = ["course_lib.solutions*"]\n'
    )
    if package_data:
        text += "\n[tool.setuptools.package-data]\n"
        text += "".join(
            f"{json.dumps(package)} = {json.dumps(patterns)}\n" for package, patterns in package_data.items()
        )
    return text


#: What of ``course_lib`` stays with the instructors (paths inside it): the graded reference answers,
#: and the module that builds the shipped checkpoints from them.
INSTRUCTOR_ONLY = frozenset({"solutions", "pretrained/build.py"})


def _left_out(directory: str, names: list[str]) -> set[str]:
    """The entries of ``directory`` (in ``course_lib/``) the student wheel leaves out (``copytree``'s ``ignore``)."""
    inside = Path(directory).relative_to(REPO / "course_lib")
    return {
        name
        for name in names
        if (inside / name).as_posix() in INSTRUCTOR_ONLY or name == "__pycache__" or name.endswith(".pyc")
    }


def build_student_wheel(dest: Path) -> Path:
    """Build a ``course_lib`` wheel without :data:`INSTRUCTOR_ONLY` into ``dest``; return its path.

    It declares the student ranges of pyproject.toml (:func:`student_requirements`), not the
    development pins, and carries ``course_lib``'s package data.

    Raises:
        PipelineError: if the ranges are missing or pip cannot build the wheel.
    """
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        shutil.copytree(REPO / "course_lib", stage / "course_lib", ignore=_left_out)
        (stage / "pyproject.toml").write_text(_student_pyproject(pyproject))
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


def kit_readme(assignment: str, wheel: str, due: dt.datetime | None = None) -> str:
    """The student kit's README: the due date (naive UTC) if there is one; install with conda, pip or on
    Google Colab, set up JupyterLab, work."""
    due_line = f"**Due: {format_utc(due)}.**\n\n" if due is not None else ""
    return f"""# {assignment}

{due_line}Install once, with **one** of (Python 3.10 to 3.13):

- conda: `conda env create -f environment.yml`, `conda activate autoencoders-to-world-models`,
  then `pip install {wheel}`
- pip: `python3 -m venv .venv`, activate it (`source .venv/bin/activate`; Windows:
  `.venv\\Scripts\\activate`), then `pip install {wheel}`

then `python -m course_lib.lab_setup --kit` (JupyterLab with nbgrader's Validate button and no
instructor tools), `jupyter lab`, and open the notebooks in order. `{LESSONS_DIR}/` holds the lessons this
homework builds on; each homework notebook opens with the lesson sections to read first. *Validate* runs
a notebook and its visible tests before you hand it in.

Google Colab: upload the wheel and a notebook, run `!pip install {wheel}`
in a first cell, then the notebook (Colab has no Validate button: run every cell, top to bottom).
"""


def release(assignment: str, out: Path, due: dt.datetime | None = None) -> dict[str, Path]:
    """Release an assignment: student notebooks and a student kit zip.

    Writes ``<out>/release/<assignment>/*.ipynb`` (via ``nbgrader generate_assignment`` in the
    course root ``<out>/course``) and ``<out>/<assignment>_student_kit.zip`` holding the released
    notebooks, a ``course_lib`` wheel without ``solutions/`` (:func:`build_student_wheel`),
    ``environment.yml`` and a README (:func:`kit_readme`). ``due`` (naive UTC,
    :func:`autograder.deadlines.parse_due`) is set as the assignment's due date in the gradebook
    ``<out>/course/gradebook.db`` and written in the kit's README.

    Returns:
        Paths of the ``release`` folder, the ``kit`` zip, the ``wheel`` and the course ``root``.
    """
    out = Path(out).resolve()
    root = prepare_course(assignment, out)
    released = generate_assignment(assignment, root)
    if due is not None:
        set_due(assignment, due, root, ["gradebook.db"])
    release_dir = out / "release" / assignment
    if release_dir.exists():
        shutil.rmtree(release_dir)
    shutil.copytree(released, release_dir)
    wheel = build_student_wheel(out / "dist")
    kit = out / f"{assignment}_student_kit.zip"
    with zipfile.ZipFile(kit, "w", zipfile.ZIP_DEFLATED) as zf:
        for nb in sorted(release_dir.glob("*.ipynb")):
            zf.write(nb, f"{assignment}/{nb.name}")
        for lesson in lessons(assignment):
            zf.write(lesson, f"{assignment}/{LESSONS_DIR}/{lesson.name}")
        zf.write(wheel, f"{assignment}/{wheel.name}")
        zf.write(REPO / "environment.yml", f"{assignment}/environment.yml")
        zf.writestr(f"{assignment}/README.md", kit_readme(assignment, wheel.name, due))
    return {"release": release_dir, "kit": kit, "wheel": wheel, "root": root}
