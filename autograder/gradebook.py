"""nbgrader's gradebook: where grades are kept (sqlite files or a shared PostgreSQL server), and the
CSVs written from it.

A gradebook is named by a sqlite file name in the course root (``gradebook.db``, one per worker) or by
a database URL (``postgresql://USER@HOST/DB``, nbgrader's ``db_url``) that several machines share.
URLs are written to files and logs without their password (:func:`redact`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from autograder.course import COURSE_ID, PipelineError, notebook_names

GRADES_FIELDS = ["student_id", "notebook", "score", "max_score", "needs_manual_grade", "late_penalty"]
CELLS_FIELDS = ["student_id", "notebook", "grade_id", "score", "max_score", "needs_manual_grade", "kind"]


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


def db_url(root: Path, gradebook: str) -> str:
    """The URL of a gradebook: a server URL as given, or a sqlite file name in ``root``."""
    return gradebook if "://" in gradebook else f"sqlite:///{Path(root) / gradebook}"


#: The advisory lock's key: the course id's hash, as PostgreSQL's 64-bit integer.
_LOCK_KEY = int.from_bytes(hashlib.sha256(COURSE_ID.encode()).digest()[:7], "big")


@contextlib.contextmanager
def gradebook_lock(url: str | None) -> Iterator[None]:
    """Hold a PostgreSQL advisory lock for the course while the block runs (nothing for sqlite).

    nbgrader records an assignment's notebooks and cells without locking; machines that share a
    server gradebook take turns through this lock.
    """
    if not url or not url.startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url, future=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
    finally:
        engine.dispose()


def holds_assignment(assignment: str, url: str) -> bool:
    """Does the gradebook at ``url`` hold ``assignment`` with all of its notebooks?"""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, COURSE_ID) as gb:  # creates nbgrader's tables in an empty database
        try:
            recorded = {nb.name for nb in gb.find_assignment(assignment).notebooks}
        except MissingEntry:
            return False
    return recorded == {Path(name).stem for name in notebook_names(assignment)}


def add_course(url: str, course_id: str) -> None:
    """Add the course ``course_id`` to the gradebook at ``url`` unless it holds it already.

    nbgrader's exchange commands (``collect``) add their course to the gradebook the first time they
    open it. Two of them starting at once on a gradebook without it (the watcher's workers) both add
    it, and one fails with "UNIQUE constraint failed: course.id"; once it is there, they only read.
    """
    from nbgrader.api import Gradebook

    with Gradebook(url, course_id):  # Gradebook.check_course adds a missing course
        pass


def record_empty_submission(assignment: str, student_id: str, url: str) -> None:
    """Enter a submission with no gradable notebook in the gradebook, so it scores zero everywhere."""
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        gb.update_or_create_student(student_id)
        gb.update_or_create_submission(assignment, student_id)


def zero_notebooks(assignment: str, student_id: str, url: str, notebooks: set[str]) -> None:
    """Set every autograded score of these submitted notebooks (file names) to zero in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, COURSE_ID) as gb:
        for name in notebooks:
            try:
                sub = gb.find_submission_notebook(Path(name).stem, assignment, student_id)
            except MissingEntry:
                continue
            for grade in sub.grades:
                if grade.cell.cell_type == "code":
                    grade.auto_score = 0
        gb.db.commit()


def _grades_of(gb, assignment: str) -> dict[tuple[str, str], dict[str, tuple[float, bool]]]:
    """Every grade of ``assignment`` in an open nbgrader ``Gradebook``, in one query:
    ``{(student, notebook): {cell name: (score, needs_manual_grade)}}``.

    nbgrader's ``find_submission_notebook`` costs a few queries per student and notebook; a class of
    hundreds is read here at once. ``score`` is nbgrader's own ``Grade.score`` (a manual grade
    entered in the formgrader takes precedence, plus extra credit).
    """
    from nbgrader.api import Assignment, BaseCell, Grade, Notebook, SubmittedAssignment, SubmittedNotebook

    query = (
        gb.db.query(SubmittedAssignment.student_id, Notebook.name, BaseCell.name, Grade.score, Grade.needs_manual_grade)
        .select_from(Grade)
        .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
        .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
        .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
        .join(Notebook, SubmittedNotebook.notebook_id == Notebook.id)
        .join(BaseCell, Grade.cell_id == BaseCell.id)
        .filter(Assignment.name == assignment, Assignment.course_id == COURSE_ID)
    )
    table: dict[tuple[str, str], dict[str, tuple[float, bool]]] = {}
    for student, notebook, cell, score, manual in query:
        table.setdefault((student, notebook), {})[cell] = (float(score or 0.0), bool(manual))
    return table


def _penalties_of(gb, assignment: str) -> dict[tuple[str, str], float]:
    """The late penalty of each submitted notebook of ``assignment`` (points nbgrader's late-submission
    plugin took off, :mod:`autograder.late`): ``{(student, notebook): points}``, in one query."""
    from nbgrader.api import Assignment, Notebook, SubmittedAssignment, SubmittedNotebook

    query = (
        gb.db.query(SubmittedAssignment.student_id, Notebook.name, SubmittedNotebook.late_submission_penalty)
        .select_from(SubmittedNotebook)
        .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
        .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
        .join(Notebook, SubmittedNotebook.notebook_id == Notebook.id)
        .filter(Assignment.name == assignment, Assignment.course_id == COURSE_ID)
    )
    return {(student, notebook): float(penalty or 0.0) for student, notebook, penalty in query}


def read_gradebook(assignment: str, url: str, students: list[str]) -> tuple[list[dict], list[dict]]:
    """Rows of ``grades.csv`` and ``cells.csv`` for ``students`` from the gradebook at ``url``.

    A notebook that nbgrader could not grade for a student scores zero. ``score`` is before the
    late penalty, which ``late_penalty`` gives (points, as nbgrader keeps them apart).
    """
    from nbgrader.api import Gradebook

    grades, cells = [], []
    with Gradebook(url, COURSE_ID) as gb:
        notebooks = sorted(gb.find_assignment(assignment).notebooks, key=lambda nb: nb.name)
        grade_cells = {  # read while the session is open
            nb.name: sorted((c.name, float(c.max_score), c.cell_type) for c in nb.grade_cells) for nb in notebooks
        }
        maxima = {nb.name: float(nb.max_score) for nb in notebooks}
        table = _grades_of(gb, assignment)
        penalties = _penalties_of(gb, assignment)
    for student in students:
        for name, cells_of in grade_cells.items():
            graded = table.get((student, name), {})
            for cell, max_score, cell_type in cells_of:
                score, manual = graded.get(cell, (0.0, False))
                cells.append(
                    {
                        "student_id": student,
                        "notebook": name,
                        "grade_id": cell,
                        "score": score,
                        "max_score": max_score,
                        "needs_manual_grade": manual,
                        # test cells are autograded; written answers (markdown) are graded by hand
                        "kind": "autograded" if cell_type == "code" else "manual",
                    }
                )
            grades.append(
                {
                    "student_id": student,
                    "notebook": name,
                    "score": sum(score for score, _ in graded.values()),
                    "max_score": maxima[name],
                    "needs_manual_grade": any(manual for _, manual in graded.values()),
                    "late_penalty": penalties.get((student, name), 0.0),
                }
            )
    return grades, cells


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


#: A run's index in its course root: each gradebook (a sqlite file name, or a server URL without its
#: password) and the students graded into it. ``course autograde`` and ``course watch`` write it;
#: ``course export``, ``feedback`` and ``report`` read it.
INDEX = "gradebooks.json"


@contextlib.contextmanager
def course_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the course root ``root`` while the block runs (``<root>/.lock``), so that
    two grading runs into one ``--out`` (shards of a class) prepare it and update its index in turn."""
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_index(root: Path, gradebooks: dict[str, list[str]]) -> Path:
    """Write the run's :data:`INDEX` into the course root ``root`` (atomically); returns its path."""
    path = Path(root) / INDEX
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(gradebooks, indent=1))
    tmp.replace(path)
    return path


def merge_index(root: Path, graded: dict[str, list[str]]) -> dict[str, list[str]]:
    """Add the students just ``graded`` (gradebook -> students) to the :data:`INDEX` of ``root`` and
    return the whole class's: a regraded student moves to the gradebook of their new grading, every
    other student stays where they are. Call it holding :func:`course_lock`."""
    path = Path(root) / INDEX
    index = json.loads(path.read_text()) if path.exists() else {}
    regraded = {student for students in graded.values() for student in students}
    merged: dict[str, list[str]] = {}
    for book, students in index.items():
        kept = [s for s in students if s not in regraded]
        if kept:
            merged[book] = kept
    for book, students in graded.items():
        merged[book] = sorted({*merged.get(book, []), *students})
    write_index(root, merged)
    return merged


def free_gradebooks(root: Path, count: int) -> list[str]:
    """``count`` names ``gradebook_<k>.db`` in ``root`` that no file has yet, created as copies of
    ``gradebook.db``: a run's workers never write over the gradebook of an earlier run's students.
    Call it holding :func:`course_lock`."""
    names: list[str] = []
    k = 0
    while len(names) < count:
        name = f"gradebook_{k}.db"
        if not (Path(root) / name).exists():
            shutil.copy(Path(root) / "gradebook.db", Path(root) / name)
            names.append(name)
        k += 1
    return names


def read_index(root: Path) -> dict[str, list[str]]:
    """The run's :data:`INDEX` in the course root ``root``: gradebook -> its students.

    Raises:
        PipelineError: if ``root`` holds no graded run.
    """
    path = Path(root) / INDEX
    if not path.exists():
        raise PipelineError(
            f"{Path(root).parent} holds no graded run (no {path}); run `course autograde` first "
            "or pass --db for a shared gradebook"
        )
    return json.loads(path.read_text())


def sources(root: Path, gradebooks: dict[str, list[str]], url: str | None = None) -> list[tuple[str, list[str]]]:
    """The URL to open and the students it holds, for each gradebook of a run (``gradebooks.json``).

    Args:
        gradebooks: gradebook -> the students it holds. A gradebook is a sqlite file name in
            ``root``, or a server URL recorded without its password (:func:`redact`).
        url: the server's URL with its password, used for the server entries.

    Raises:
        PipelineError: if ``gradebooks`` names a server and ``url`` is not given.
    """
    opened = []
    for name, students in gradebooks.items():
        source = db_url(root, name)
        if "://" in name:
            if url is None or redact(url) != name:
                raise PipelineError(f"this run was graded into the gradebook {name}; pass its URL with --db")
            source = url
        opened.append((source, students))
    return opened


def export(
    assignment: str, root: Path, out: Path, gradebooks: dict[str, list[str]], url: str | None = None
) -> tuple[Path, Path]:
    """Write ``<out>/grades.csv`` and ``<out>/cells.csv``, merging the gradebooks of all workers
    (``gradebooks`` and ``url`` as :func:`sources` takes them).

    Raises:
        PipelineError: if ``gradebooks`` names a server and ``url`` is not given.
    """
    grades, cells = [], []
    for source, students in sources(root, gradebooks, url):
        g, c = read_gradebook(assignment, source, students)
        grades += g
        cells += c
    grades.sort(key=lambda r: (r["student_id"], r["notebook"]))
    cells.sort(key=lambda r: (r["student_id"], r["notebook"], r["grade_id"]))
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "grades.csv", GRADES_FIELDS, grades)
    _write_csv(out / "cells.csv", CELLS_FIELDS, cells)
    return out / "grades.csv", out / "cells.csv"


def graded_students(assignment: str, url: str) -> list[str]:
    """Ids of the students with a submission of ``assignment`` in the gradebook at ``url``, sorted.

    Raises:
        PipelineError: if the gradebook does not hold ``assignment``.
    """
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, COURSE_ID) as gb:
        try:
            return sorted(s.student.id for s in gb.find_assignment(assignment).submissions)
        except MissingEntry as err:
            raise PipelineError(f"the gradebook {redact(url)} holds no assignment {assignment!r}") from err


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
    """The per-activity table ``course demo`` and ``course autograde`` print."""
    activities = sorted({a for scores in table.values() for a in scores})
    header = f"{'student':<14}" + "".join(f"{a:>10}" for a in activities) + f"{'total':>12}"
    lines = [header, "-" * len(header)]
    for student, scores in table.items():
        cells = "".join(f"{scores[a][0]:>5.0f}/{scores[a][1]:<4.0f}" for a in activities)
        total = sum(s for s, _ in scores.values()), sum(m for _, m in scores.values())
        lines.append(f"{student:<14}{cells}{total[0]:>7.0f}/{total[1]:<4.0f}")
    return "\n".join(lines)
