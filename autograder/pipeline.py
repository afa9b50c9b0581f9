"""The grading pipeline around real nbgrader: release, autograde, feedback, CSV export.

Every command works in a private course root ``<out>/course`` (a copy of
``assignments/nbgrader_config.py`` and ``assignments/source/<assignment>``), so the repository
stays clean and one run never mixes with another. nbgrader runs as a subprocess per student:
a submission that crashes, hangs or is not a notebook is reported by name and scored zero for
what could not run, and the other students are graded as usual.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import warnings
import zipfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import judging
from autograder.sandbox import NOBODY, Limits, require_bwrap
from autograder.sandbox import prepare as prepare_sandbox
from autograder.tamper import TAMPERING, scan_notebook

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENTS = REPO / "assignments"
COURSE_ID = "autoencoders-to-world-models"
GRADES_FIELDS = ["student_id", "notebook", "score", "max_score", "needs_manual_grade"]
CELLS_FIELDS = ["student_id", "notebook", "grade_id", "score", "max_score", "needs_manual_grade", "kind"]


# nbgrader's gradebook calls the `alembic` command of the environment it is installed in, also
# when used in-process here; make that environment's bin/ findable even if it is not activated.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_BIN, os.environ.get("PATH", "")])


class PipelineError(RuntimeError):
    """A pipeline step failed in a way that stops the whole run (not one student's problem)."""


@dataclass
class StudentReport:
    """What happened to one student's submission.

    Attributes:
        student_id: the student's folder name.
        problems: what went wrong or was repaired, each naming the notebook (and cell).
        seconds: wall time of the student's grading.
        judge_seconds: of which the judges took this long (in nbgrader's process).
    """

    student_id: str
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    judge_seconds: float = 0.0


def source_dir(assignment: str) -> Path:
    """``assignments/source/<assignment>``; raises PipelineError if there is no such assignment."""
    path = ASSIGNMENTS / "source" / assignment
    if not path.is_dir():
        known = sorted(p.name for p in (ASSIGNMENTS / "source").iterdir() if p.is_dir())
        raise PipelineError(f"no assignment {assignment!r} in {ASSIGNMENTS / 'source'}; known: {known}")
    return path


def notebook_names(assignment: str) -> list[str]:
    """The notebook file names of an assignment, sorted (``01_....ipynb``, ...)."""
    return sorted(p.name for p in source_dir(assignment).glob("*.ipynb"))


def _nbgrader_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "MPLBACKEND": "Agg",
            "SDL_VIDEODRIVER": "dummy",
            "SDL_AUDIODRIVER": "dummy",
            "PYTHONHASHSEED": "0",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "JUPYTER_PLATFORM_DIRS": "1",
            "TQDM_DISABLE": "1",
            # One thread per grading kernel: small models gain little from more, and threads that
            # outnumber free cores slow PyTorch down many times over.
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    env.pop("COURSE_QUICK", None)  # grading shrinks budgets through NBGRADER_EXECUTION itself
    return env


def run_nbgrader(
    args: list[str], root: Path, timeout: float | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in course root ``root``; kill its whole process group on timeout.

    ``env`` adds environment variables (the sandbox's kernelspec path).

    Returns:
        The completed process (``returncode`` -9 and a note in ``stderr`` after a timeout).
    """
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}"]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env={**_nbgrader_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[course] nbgrader {args[0]} killed after {timeout:.0f} s"
        return subprocess.CompletedProcess(cmd, -9, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def prepare_course(assignment: str, out: Path) -> Path:
    """Make the private course root ``<out>/course`` with the config and the assignment's source."""
    root = Path(out).resolve() / "course"
    (root / "source").mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSIGNMENTS / "nbgrader_config.py", root / "nbgrader_config.py")
    dest = root / "source" / assignment
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source_dir(assignment), dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.png"))
    return root


def generate_assignment(assignment: str, root: Path, db_url: str | None = None) -> Path:
    """``nbgrader generate_assignment``: the student version in ``<root>/release/<assignment>``.

    Records the assignment's notebooks and grade cells in the gradebook at ``db_url`` (default
    ``<root>/gradebook.db``). A shared server gradebook records it once: under a PostgreSQL
    advisory lock, the first machine records it and the others find it there. nbgrader cannot
    record it again once grades refer to its cells; a changed assignment needs a new database.
    """
    args = ["generate_assignment", assignment, "--force"]
    with gradebook_lock(db_url):
        if db_url and not _holds_assignment(assignment, db_url):
            args.append(f"--CourseDirectory.db_url={db_url}")
        result = run_nbgrader(args, root, timeout=600)
    if result.returncode != 0:
        raise PipelineError(f"nbgrader generate_assignment {assignment} failed:\n{result.stderr[-3000:]}")
    return root / "release" / assignment


def _holds_assignment(assignment: str, db_url: str) -> bool:
    """Does the gradebook at ``db_url`` hold ``assignment`` with all of its notebooks?"""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, COURSE_ID) as gb:  # creates nbgrader's tables in an empty database
        try:
            recorded = {nb.name for nb in gb.find_assignment(assignment).notebooks}
        except MissingEntry:
            return False
    return recorded == {Path(name).stem for name in notebook_names(assignment)}


def build_student_wheel(dest: Path) -> Path:
    """Build a ``course_lib`` wheel without ``course_lib.solutions`` into ``dest``; return its path.

    The runtime dependencies are those of pyproject.toml, less nbgrader and the gradebook's
    PostgreSQL driver (students do not grade).
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


def _has_setuptools() -> bool:
    try:
        import setuptools  # noqa: F401
    except ImportError:
        return False
    return True


def release(assignment: str, out: Path) -> dict[str, Path]:
    """Release an assignment: student notebooks and a student kit zip.

    Writes ``<out>/release/<assignment>/*.ipynb`` (via ``nbgrader generate_assignment``) and
    ``<out>/<assignment>_student_kit.zip`` holding the released notebooks, a ``course_lib``
    wheel without ``solutions/``, and ``environment.yml``.

    Returns:
        Paths of the ``release`` folder, the ``kit`` zip and the ``wheel``.
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
    return {"release": release_dir, "kit": kit, "wheel": wheel}


#: File names of an LMS export as nbgrader's zip_collect sees them (Canvas style):
#: ``<student>_[late_]<numbers>_..._<notebook>[-<n>].ipynb``, e.g.
#: ``jdoe_late_41_1234_01_autoencoder_and_vae-1.ipynb`` -> student ``jdoe``, ``01_autoencoder_and_vae.ipynb``.
LMS_REGEXP = (
    r"^(?:.*/)?(?P<student_id>[A-Za-z0-9.@+-]+?)_(?:late_)?(?:\d+_)*"
    r"(?P<file_id>\d\d_[A-Za-z0-9_]+?)(?:-\d+)?\.ipynb$"
)


def import_submissions(assignment: str, archive: Path, dest: Path, regexp: str = LMS_REGEXP) -> list[str]:
    """Unpack an LMS zip into one folder per student with ``nbgrader zip_collect``.

    Args:
        assignment: the assignment the files belong to (their names are checked against it).
        archive: the zip exported by the LMS.
        dest: where to create ``<dest>/<student_id>/<notebook>.ipynb``.
        regexp: nbgrader's ``FileNameCollectorPlugin.named_regexp`` with ``student_id`` and ``file_id``.

    Returns:
        Problems, each naming the file and, when known, the student (files that do not follow the
        naming, notebooks the assignment does not have); nothing else is lost.

    Raises:
        PipelineError: if ``archive`` is not a zip file or zip_collect fails.
    """
    archive, dest = Path(archive).resolve(), Path(dest).resolve()
    if not zipfile.is_zipfile(archive):
        raise PipelineError(f"{archive} is not a zip archive")
    expected = set(notebook_names(assignment))
    problems = []
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if not name.endswith("/") and not name.endswith(".ipynb"):
                problems.append(f"{name}: not a notebook, skipped")
            elif name.endswith(".ipynb") and not re.match(regexp, Path(name).name):
                problems.append(f"{name}: does not follow the LMS naming <student>_..._<notebook>.ipynb, skipped")
    with tempfile.TemporaryDirectory() as tmp:
        root = prepare_course(assignment, Path(tmp))
        folder = root / "downloaded" / assignment / "archive"
        folder.mkdir(parents=True)
        shutil.copy(archive, folder / archive.name)
        result = run_nbgrader(
            ["zip_collect", assignment, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}"], root, 600
        )
        if result.returncode != 0:
            raise PipelineError(f"nbgrader zip_collect failed on {archive}: {_summarize_failure(result.stderr)}")
        for student in sorted((root / "submitted").iterdir()):
            target = dest / student.name
            target.mkdir(parents=True, exist_ok=True)
            for nb in sorted((student / assignment).glob("*.ipynb")):
                if nb.name not in expected:
                    problems.append(f"{student.name}: {nb.name} is not a notebook of {assignment}, kept but not graded")
                shutil.copy(nb, target / nb.name)
    return problems


#: A submitted notebook whose file is larger than this has its stored outputs dropped before
#: grading (autograding runs every cell again; stored outputs only cost time and memory).
MAX_STORED_BYTES = 5_000_000


def _read_submitted(
    path: Path, source_ids: dict[str, str] | None = None
) -> tuple[nbformat.NotebookNode | None, list[str]]:
    """Read a submitted notebook and repair what can be repaired without changing its answers.

    Args:
        path: the submitted file.
        source_ids: ``grade_id -> cell id`` of the assignment's notebook, to tell a grade cell from
            its copies (:func:`_drop_grade_cell_copies`).

    Returns:
        ``(notebook, notes)``: the notebook (nbformat 4, unique cell ids) or ``None`` when the file
        is not a notebook, and what was done or went wrong, each naming the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
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
        return None, [f"{path.name} is not a readable notebook ({type(err).__name__}: {str(err)[:200]})"]
    notes = [f"{path.name} was upgraded from nbformat 3 to 4"] if version == 3 else []
    duplicates = len(raw_ids) - len(set(raw_ids))
    if duplicates:
        notes.append(f"{path.name} had {duplicates} duplicate cell id(s); nbformat renamed them")
    size = path.stat().st_size
    if size > MAX_STORED_BYTES:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        notes.append(f"{path.name} is {size / 1e6:.0f} MB with its outputs; stored outputs dropped before grading")
    notes += _drop_grade_cell_copies(nb, source_ids or {}, path.name)
    return nb, notes


def _drop_grade_cell_copies(nb: nbformat.NotebookNode, source_ids: dict[str, str], filename: str) -> list[str]:
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


def _find_submitted(name: str, student_dir: Path, expected: list[str]) -> Path | None:
    """The file of notebook ``name`` in ``student_dir``: the exact name, or one unmistakable look-alike.

    Browsers and LMSs rename downloads (``05_other_environment (1).ipynb``, ``-1`` suffixes,
    changed case); such a file is taken when it matches ``name`` and no other expected notebook.
    """
    if (student_dir / name).exists():
        return student_dir / name

    def key(filename: str) -> str:
        stem = re.sub(r"(\s*\(\d+\)|-\d+|\s+copy)$", "", Path(filename).stem.strip(), flags=re.IGNORECASE)
        return re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_")

    others = [p for p in student_dir.glob("*.ipynb") if p.name not in expected]
    matches = [p for p in others if key(p.name) == key(name)]
    return matches[0] if len(matches) == 1 else None


@functools.lru_cache(maxsize=32)
def _grade_cell_ids(assignment: str, name: str) -> dict[str, str]:
    """``grade_id -> cell id`` of the assignment's notebook ``name`` (the release keeps the ids).

    Read once per process (every student's staging asks); callers must not modify the dict.
    """
    nb = nbformat.read(source_dir(assignment) / name, as_version=4)
    return {
        c.metadata["nbgrader"]["grade_id"]: c.get("id", "")
        for c in nb.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    }


def stage_submission(assignment: str, student_dir: Path, root: Path) -> StudentReport:
    """Copy one student's notebooks into ``<root>/submitted/<id>/<assignment>``, reporting problems.

    Notebooks that are missing or unreadable are left out (nbgrader scores a missing notebook
    zero); renamed downloads, old nbformat, duplicate cell ids, pasted copies of grade cells and
    huge stored outputs are repaired and reported (:func:`_read_submitted`); other files are ignored.
    """
    report = StudentReport(student_dir.name)
    dest = root / "submitted" / student_dir.name / assignment
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    expected = notebook_names(assignment)
    used: set[str] = set()
    for name in expected:
        path = _find_submitted(name, student_dir, expected)
        if path is None:
            report.problems.append(f"{name} is missing (scored zero)")
            continue
        if path.name != name:
            report.problems.append(f"{path.name} was graded as {name}")
        used.add(path.name)
        nb, notes = _read_submitted(path, _grade_cell_ids(assignment, name))
        if nb is None:
            report.problems.append(f"{notes[0]} (scored zero)")
            continue
        report.problems.extend(notes)
        try:
            nbformat.write(nb, dest / name)
        except Exception as err:  # a notebook nbformat reads but cannot write back
            report.problems.append(f"{path.name} could not be staged ({type(err).__name__}: {str(err)[:200]})")
    extra = sorted(p.name for p in student_dir.glob("*.ipynb") if p.name not in expected and p.name not in used)
    if extra:
        report.problems.append(f"ignored unexpected notebooks: {', '.join(extra)}")
    return report


@dataclass(frozen=True)
class GradingSettings:
    """How each submission is graded (shared by all workers)."""

    cell_timeout: int = 300
    submission_timeout: int = 900
    feedback: bool = True
    sandbox: bool = True
    limits: Limits = field(default_factory=Limits)


def autograde(
    assignment: str,
    submissions: Path,
    out: Path,
    cell_timeout: int = 300,
    submission_timeout: int = 900,
    feedback: bool = True,
    sandbox: bool = True,
    limits: Limits | None = None,
    workers: int = 1,
    db_url: str | None = None,
    shard: tuple[int, int] = (1, 1),
) -> list[StudentReport]:
    """Autograde every student folder in ``submissions`` through nbgrader; write CSVs and feedback.

    Args:
        assignment: e.g. ``"hw1_vae"``.
        submissions: a folder with one sub-folder per student holding that student's notebooks.
        out: where to write ``grades.csv``, ``cells.csv``, ``report.txt``, ``feedback/<id>/*.html``
            and the course root.
        cell_timeout: seconds any one cell may run.
        submission_timeout: seconds one student's whole autograde may run.
        feedback: also run ``nbgrader generate_feedback``.
        sandbox: run each kernel in the sandbox of :mod:`autograder.sandbox` (bubblewrap);
            ``False`` runs student code with the grader's permissions.
        limits: the sandbox's resource limits (default :class:`autograder.sandbox.Limits`).
        workers: grade this many students at once, each worker a process. Without ``db_url`` each
            worker has its own sqlite gradebook (``gradebook_<k>.db``); the CSVs are merged and
            equal serial grading's.
        db_url: a shared gradebook on a database server, e.g.
            ``postgresql://grader:secret@db.example.org/course`` (nbgrader's ``db_url``); all
            workers, and the workers of other machines, write to it. ``None``: sqlite files in
            ``<out>/course``.
        shard: ``(k, n)``: grade only the k-th of n equal shares of the students (sorted by id,
            every n-th from the k-th), so that n machines sharing ``db_url`` split a class.

    Returns:
        One :class:`StudentReport` per student graded here, sorted by student id.

    Raises:
        PipelineError: if ``submissions`` has no student folders, ``shard`` or ``db_url`` is not
            valid, or the assignment cannot be generated.
        SandboxUnavailableError: if ``sandbox`` is set and bubblewrap is missing.
    """
    if sandbox:
        require_bwrap()
    check_db_url(db_url)
    k, n = shard
    if not 1 <= k <= n:
        raise PipelineError(f"shard {k}/{n}: expected 1 <= k <= n, e.g. 2/3 for the second of three machines")
    settings = GradingSettings(
        cell_timeout, submission_timeout, feedback, sandbox, limits or Limits(cpu_seconds=submission_timeout)
    )
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    everyone = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not everyone:
        raise PipelineError(f"no student folders in {submissions}")
    students = everyone[k - 1 :: n]
    if not students:
        raise PipelineError(f"shard {k}/{n} of {len(everyone)} students is empty; use fewer shards")
    root = prepare_course(assignment, out)
    generate_assignment(assignment, root, db_url)
    workers = max(1, min(workers, len(students)))
    # (gradebook, students): a worker's own sqlite file in root, or the shared server for all of them
    if db_url:
        batches = [(db_url, students[w::workers]) for w in range(workers)]
    elif workers == 1:
        batches = [("gradebook.db", students)]
    else:
        batches = [(f"gradebook_{w}.db", students[w::workers]) for w in range(workers)]
        for name, _ in batches:
            shutil.copy(root / "gradebook.db", root / name)
    reports: list[StudentReport] = []
    if workers == 1:
        reports = grade_batch(assignment, students, root, batches[0][0], settings, NOBODY)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(grade_batch, assignment, batch, root, name, settings, NOBODY - w)
                for w, (name, batch) in enumerate(batches)
            ]
            for future in futures:
                reports += future.result()
    reports.sort(key=lambda r: r.student_id)
    if feedback:
        for report in reports:
            src = root / "feedback" / report.student_id / assignment
            if src.exists():
                dst = out / "feedback" / report.student_id
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst)
    gradebooks: dict[str, list[str]] = {}
    for name, batch in batches:  # a server's URL is recorded without its password
        gradebooks.setdefault(redact(name), []).extend(p.name for p in batch)
    (root / "gradebooks.json").write_text(json.dumps(gradebooks, indent=1))
    export(assignment, root, out, gradebooks, db_url)
    write_report(reports, out / "report.txt")
    return reports


def check_db_url(db_url: str | None) -> None:
    """Raise :class:`PipelineError` unless ``db_url`` is ``None`` or a database URL SQLAlchemy can open.

    PostgreSQL needs the ``psycopg`` driver (``psycopg[binary]``, pinned in pyproject.toml).
    """
    if db_url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(db_url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise PipelineError(
            f"--db {redact(db_url)!r} is not a database URL this grader can open ({err}); "
            "expected e.g. postgresql://USER:PASSWORD@HOST:5432/DATABASE"
        ) from err


def redact(db_url: str) -> str:
    """``db_url`` without its password (``postgresql://grader:***@host/db``); a file name is returned as is."""
    if "://" not in db_url:
        return db_url
    from sqlalchemy.engine import make_url

    return make_url(db_url).render_as_string(hide_password=True)


@contextlib.contextmanager
def gradebook_lock(db_url: str | None) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock for the course while the block runs (nothing for sqlite).

    nbgrader records an assignment's notebooks and cells without locking; machines that share a
    server gradebook take turns through this lock.
    """
    if not db_url or not db_url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text

    key = int.from_bytes(hashlib.sha256(COURSE_ID.encode()).digest()[:7], "big")
    engine = create_engine(db_url, future=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def _db_url(root: Path, gradebook: str) -> str:
    """The URL of a gradebook: a server URL as given, or a sqlite file name in ``root``."""
    return gradebook if "://" in gradebook else f"sqlite:///{root / gradebook}"


def grade_batch(
    assignment: str, students: list[Path], root: Path, gradebook: str, settings: GradingSettings, uid: int
) -> list[StudentReport]:
    """Grade ``students`` one after another into ``<root>/<gradebook>`` (one worker's share).

    ``uid`` is the unprivileged user the sandboxed kernels of this worker run as, so that the
    process limit of one worker's kernels does not count another's.
    """
    return [grade_student(assignment, d, root, gradebook, settings, uid) for d in students]


@functools.cache
def _sandbox_paths() -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """``(readonly, hidden)`` folders of the sandbox: the two packages the kernel imports are shown;
    the reference answers, and the rest of the repository they come from (source notebooks, git
    history), are hidden."""
    spec = importlib.util.find_spec("course_lib")  # found without importing it (and torch)
    course_lib = Path(next(iter(spec.submodule_search_locations))).resolve()
    readonly = (course_lib, Path(__file__).resolve().parent)
    hidden = [course_lib / "solutions"]
    if (REPO / "pyproject.toml").exists():  # a source checkout, not site-packages
        hidden.append(REPO)
    return readonly, tuple(hidden)


def grade_student(
    assignment: str, student_dir: Path, root: Path, gradebook: str, settings: GradingSettings, uid: int
) -> StudentReport:
    """Stage, scan, autograde and give feedback to one student's submission."""
    start = time.perf_counter()
    db = [f"--CourseDirectory.db_url={_db_url(root, gradebook)}"]
    report = stage_submission(assignment, student_dir, root)
    submitted = root / "submitted" / report.student_id / assignment
    autograded = root / "autograded" / report.student_id / assignment
    findings = [finding for path in sorted(submitted.glob("*.ipynb")) for finding in scan_notebook(path)]
    tampered = {f.notebook for f in findings if f.severity == TAMPERING}
    for f in findings:
        label = (
            "tampering suspected, its notebook's autograded points set to zero"
            if f.severity == TAMPERING
            else ("for review")
        )
        report.problems.append(f"{label}: {f}")
    if not any(submitted.glob("*.ipynb")):
        _record_empty_submission(assignment, report.student_id, root, gradebook)
        report.seconds = time.perf_counter() - start
        return report
    args = ["autograde", assignment, f"--student={report.student_id}", "--force", *db]
    args.append(f"--Execute.timeout={settings.cell_timeout}")
    events = root / ".events" / f"{report.student_id}.jsonl"  # what the judges found (autograder.judging)
    events.parent.mkdir(exist_ok=True)
    events.unlink(missing_ok=True)
    extra_env = {judging.EVENTS_ENV: str(events)}
    if settings.sandbox:
        readonly, hidden = _sandbox_paths()
        box = prepare_sandbox(root / ".sandbox" / report.student_id, autograded, settings.limits, uid, readonly, hidden)
        args, extra_env = args + box["args"], {**extra_env, **box["env"]}
    try:
        result = run_nbgrader(args, root, timeout=settings.submission_timeout, env=extra_env)
    finally:
        if settings.sandbox:
            shutil.rmtree(box["ipc_dir"], ignore_errors=True)
    log = result.stdout + result.stderr
    if result.returncode == -9:
        report.problems.append(f"grading ran past the {settings.submission_timeout} s limit and was stopped")
    elif result.returncode != 0 and ("DeadKernelError" in log or "Kernel died" in log):
        report.problems.append("the kernel died more often than the grader restarts it (that notebook scored zero)")
    elif result.returncode != 0:
        report.problems.append(_summarize_failure(log))
    hidden = (root, *_sandbox_paths()[1]) if settings.sandbox else ()
    report.problems.extend(_execution_problems(autograded, settings.cell_timeout, hidden))
    for event in judging.read_events(events):
        if event["event"] == "finding":
            label = "tampering suspected, for review" if event["severity"] == "tampering" else "for review"
            report.problems.append(f"{label}: {event['notebook']}: {event['cell']} {event['message']}")
        elif event["event"] == "timing":
            report.judge_seconds += event["judge_seconds"]
    if tampered:
        _zero_notebooks(assignment, report.student_id, root, gradebook, tampered)
    if settings.feedback and autograded.exists():
        fb_args = ["generate_feedback", assignment, f"--student={report.student_id}", "--force", *db]
        fb = run_nbgrader(fb_args, root, timeout=300)
        if fb.returncode != 0:
            report.problems.append("feedback could not be generated: " + _summarize_failure(fb.stdout + fb.stderr))
    report.seconds = time.perf_counter() - start
    return report


def _record_empty_submission(assignment: str, student_id: str, root: Path, gradebook: str) -> None:
    """Enter a submission with no gradable notebook in the gradebook, so it scores zero everywhere."""
    from nbgrader.api import Gradebook

    with Gradebook(_db_url(root, gradebook), COURSE_ID) as gb:
        gb.update_or_create_student(student_id)
        gb.update_or_create_submission(assignment, student_id)


def _zero_notebooks(assignment: str, student_id: str, root: Path, gradebook: str, notebooks: set[str]) -> None:
    """Set every autograded score of these submitted notebooks to zero in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(_db_url(root, gradebook), COURSE_ID) as gb:
        for name in notebooks:
            try:
                sub = gb.find_submission_notebook(Path(name).stem, assignment, student_id)
            except MissingEntry:
                continue
            for grade in sub.grades:
                if grade.cell.cell_type == "code":
                    grade.auto_score = 0
        gb.db.commit()


#: Errors that mean the sandbox or a limit stopped something, and how to report them.
_STOPPED = {
    "CellTimeoutError": "ran past the {timeout} s cell limit and was stopped",
    "MemoryError": "hit the memory limit (MemoryError)",
    "BlockingIOError": "hit the process limit ({evalue})",
    "PermissionError": "was refused a file ({evalue})",
    "SystemExit": "called sys.exit(), which the kernel caught",
    "KernelDied": "killed its kernel (kernel died); it failed, and the cells after it ran in a restarted kernel",
}
_STOPPED_OSERROR = ("Read-only file system", "Network is unreachable", "Temporary failure in name resolution")


def _quoted_path(evalue: object) -> Path | None:
    """The absolute path an ``OSError`` message quotes (``[Errno 2] ...: '/a/b'``), if any."""
    match = re.search(r"'(/[^']*)'", str(evalue))
    return Path(match.group(1)) if match else None


def _inside(path: Path | None, hidden: tuple[Path, ...], workdir: Path) -> bool:
    """Whether ``path`` lies in a hidden folder, outside the kernel's own working folder."""
    if path is None or path == workdir or workdir in path.parents:
        return False
    return any(path == h or h in path.parents for h in hidden)


def _execution_problems(autograded: Path, cell_timeout: int, hidden: tuple[Path, ...] = ()) -> list[str]:
    """Cells of the autograded notebooks that a limit or the sandbox stopped, by notebook and cell.

    ``hidden`` are the folders the sandbox shows empty: a missing file inside one was refused.
    """
    problems = []
    for path in sorted(autograded.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            name = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {cell.get('id') or i}"
            for out in cell.get("outputs", []):
                ename, evalue = out.get("ename", ""), str(out.get("evalue", ""))[:120]
                if "[output truncated by the grader" in str(out.get("text", "")):
                    what = "printed more than the grader keeps; its output was truncated"
                elif ename in _STOPPED:
                    what = _STOPPED[ename].format(timeout=cell_timeout, evalue=evalue)
                elif ename in ("OSError", "gaierror", "ConnectionError") and any(m in evalue for m in _STOPPED_OSERROR):
                    what = f"was refused by the sandbox ({evalue})"
                elif ename == "FileNotFoundError" and _inside(_quoted_path(out.get("evalue")), hidden, autograded):
                    what = f"was refused by the sandbox, which hides the course's files ({evalue})"
                else:
                    continue
                problems.append(f"{path.name}: {name} {what}")
    return problems


def _summarize_failure(log: str) -> str:
    lines = [line for line in log.splitlines() if "[AutogradeApp | ERROR]" in line or "Error" in line]
    tail = " / ".join(line.strip() for line in lines[-3:]) or log.strip().splitlines()[-1:] or ["no output"]
    return f"nbgrader could not grade it: {tail if isinstance(tail, str) else tail[0]}"[:500]


def read_gradebook(assignment: str, db_url: str, students: list[str]) -> tuple[list[dict], list[dict]]:
    """Rows of ``grades.csv`` and ``cells.csv`` for ``students`` from the gradebook at ``db_url``.

    A notebook that nbgrader could not grade for a student scores zero.
    """
    from nbgrader.api import Gradebook, MissingEntry

    grades, cells = [], []
    with Gradebook(db_url, COURSE_ID) as gb:
        assignment_row = gb.find_assignment(assignment)
        notebooks = sorted(assignment_row.notebooks, key=lambda nb: nb.name)
        for student in students:
            for nb in notebooks:
                grade_cells = sorted(nb.grade_cells, key=lambda c: c.name)
                try:
                    sub = gb.find_submission_notebook(nb.name, assignment, student)
                    by_name = {g.name: g for g in sub.grades}
                except MissingEntry:
                    sub, by_name = None, {}
                for gc in grade_cells:
                    g = by_name.get(gc.name)
                    score = float(g.score) if g is not None and g.score is not None else 0.0
                    manual = bool(g.needs_manual_grade) if g is not None else False
                    cells.append(
                        {
                            "student_id": student,
                            "notebook": nb.name,
                            "grade_id": gc.name,
                            "score": score,
                            "max_score": float(gc.max_score),
                            "needs_manual_grade": manual,
                            # test cells are autograded; written answers (markdown) are graded by hand
                            "kind": "autograded" if gc.cell_type == "code" else "manual",
                        }
                    )
                grades.append(
                    {
                        "student_id": student,
                        "notebook": nb.name,
                        "score": float(sub.score) if sub is not None else 0.0,
                        "max_score": float(nb.max_score),
                        "needs_manual_grade": bool(sub.needs_manual_grade) if sub is not None else False,
                    }
                )
    return grades, cells


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def export(
    assignment: str, root: Path, out: Path, gradebooks: dict[str, list[str]], db_url: str | None = None
) -> tuple[Path, Path]:
    """Write ``<out>/grades.csv`` and ``<out>/cells.csv``, merging the gradebooks of all workers.

    Args:
        gradebooks: gradebook -> the students it holds. A gradebook is a sqlite file name in
            ``root``, or a server URL recorded without its password (:func:`redact`).
        db_url: the server's URL with its password, used for the server entries.

    Raises:
        PipelineError: if ``gradebooks`` names a server and ``db_url`` is not given.
    """
    grades, cells = [], []
    for name, students in gradebooks.items():
        url = _db_url(root, name)
        if "://" in name:
            if db_url is None or redact(db_url) != name:
                raise PipelineError(f"this run was graded into the gradebook {name}; pass its URL with --db")
            url = db_url
        g, c = read_gradebook(assignment, url, students)
        grades += g
        cells += c
    grades.sort(key=lambda r: (r["student_id"], r["notebook"]))
    cells.sort(key=lambda r: (r["student_id"], r["notebook"], r["grade_id"]))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "grades.csv", GRADES_FIELDS, grades)
    _write_csv(out / "cells.csv", CELLS_FIELDS, cells)
    return out / "grades.csv", out / "cells.csv"


def graded_students(assignment: str, db_url: str) -> list[str]:
    """Ids of the students with a submission of ``assignment`` in the gradebook at ``db_url``, sorted.

    Raises:
        PipelineError: if the gradebook does not hold ``assignment``.
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, COURSE_ID) as gb:
        try:
            return sorted(s.student.id for s in gb.find_assignment(assignment).submissions)
        except MissingEntry as err:
            raise PipelineError(f"the gradebook {redact(db_url)} holds no assignment {assignment!r}") from err


def write_report(reports: list[StudentReport], path: Path) -> None:
    """A plain-text report: each student's problems (or "ok") and grading time."""
    lines = []
    for r in reports:
        status = "ok" if not r.problems else "; ".join(r.problems)
        lines.append(f"{r.student_id}: {status} ({r.seconds:.1f} s)")
    path.write_text("\n".join(lines) + "\n")


def cell_scores(cells_csv: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """Autograded points per student and grade cell from ``cells.csv`` (manual cells left out).

    Returns:
        ``{student_id: {grade_id: (score, max_score)}}``.
    """
    table: dict[str, dict[str, tuple[float, float]]] = {}
    with Path(cells_csv).open() as f:
        for row in csv.DictReader(f):
            if row["kind"] == "autograded":
                table.setdefault(row["student_id"], {})[row["grade_id"]] = (
                    float(row["score"]),
                    float(row["max_score"]),
                )
    return table


def activity_scores(cells_csv: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """Autograded points per student and activity (``a1``, ``a2``, ...) from ``cells.csv``.

    Manually graded cells are left out, so the numbers are what autograding decided.

    Returns:
        ``{student_id: {activity: (score, max_score)}}``.
    """
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for student, cells in cell_scores(cells_csv).items():
        for grade_id, (score, max_score) in cells.items():
            activity = grade_id.split("_")[0]
            total, top = table.setdefault(student, {}).get(activity, (0.0, 0.0))
            table[student][activity] = (total + score, top + max_score)
    return table


def format_table(table: dict[str, dict[str, tuple[float, float]]]) -> str:
    """The per-activity table ``course demo`` prints."""
    activities = sorted({a for scores in table.values() for a in scores})
    header = f"{'student':<14}" + "".join(f"{a:>10}" for a in activities) + f"{'total':>12}"
    lines = [header, "-" * len(header)]
    for student, scores in table.items():
        cells = "".join(f"{scores[a][0]:>5.0f}/{scores[a][1]:<4.0f}" for a in activities)
        total = sum(s for s, _ in scores.values()), sum(m for _, m in scores.values())
        lines.append(f"{student:<14}{cells}{total[0]:>7.0f}/{total[1]:<4.0f}")
    return "\n".join(lines)
