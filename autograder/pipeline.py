"""``course autograde``: a class of submissions graded through real nbgrader, end to end.

The steps, each in its own module:

1. the private course root ``<out>/course`` with the assignment recorded in the gradebook
   (:mod:`autograder.course`, :func:`autograder.release.generate_assignment`);
2. every student graded in the sandbox, by one or more workers (:mod:`autograder.grading`), each
   submission staged and repaired first (:mod:`autograder.repairs`);
3. the feedback copied to ``<out>/feedback/<student>/``, the CSVs written from the gradebooks
   (:mod:`autograder.gradebook`), ``report.txt`` (:mod:`autograder.report`) and the class report
   ``report/index.html`` (:mod:`autograder.class_report`).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from autograder.budgets import Budgets
from autograder.class_report import write_class_report
from autograder.course import PipelineError, prepare_course, step_dir
from autograder.deadlines import set_due
from autograder.gradebook import check_db_url, course_lock, export, free_gradebooks, merge_index, redact
from autograder.grading import GradingSettings, grade_batch
from autograder.preflight import require_sandbox
from autograder.release import generate_assignment
from autograder.report import StudentReport, saved_reports, write_report
from autograder.sandbox import Limits


def students_in(submissions: Path) -> list[Path]:
    """The student folders of ``submissions``, sorted by name (hidden folders left out).

    Raises:
        PipelineError: if there are none.
    """
    everyone = sorted(p for p in Path(submissions).iterdir() if p.is_dir() and not p.name.startswith("."))
    if not everyone:
        raise PipelineError(f"no student folders in {submissions}")
    return everyone


def worker_gradebooks(root: Path, workers: int, db_url: str | None, alone: bool = True) -> list[str]:
    """One gradebook per worker: the shared server for all; ``gradebook.db`` for one worker grading
    alone into ``root``; else sqlite copies of it of their own (sqlite takes no concurrent writers),
    never one that holds an earlier run's grades. Call it holding
    :func:`~autograder.gradebook.course_lock`."""
    if db_url:
        return [db_url] * workers
    if workers == 1 and alone:
        return ["gradebook.db"]
    return free_gradebooks(root, workers)


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
    due: dt.datetime | None = None,
    budgets: Budgets | None = None,
) -> list[StudentReport]:
    """Autograde every student folder in ``submissions`` through nbgrader; write CSVs and feedback.

    Grading into an ``out`` that holds a graded class regrades only these students (after an
    extension, a repaired upload, a changed check): the others keep their grades, feedback and saved
    reports, and ``grades.csv``, ``cells.csv``, ``report.txt`` and the class report show the whole class.
    Shards of a class may write into one ``out``.

    Args:
        assignment: e.g. ``"hw1_vae"``.
        submissions: a folder with one sub-folder per student holding that student's notebooks
            (directly, or in an ``<assignment>/`` folder as nbgrader's ``collect`` writes them).
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
        due: the assignment's due date (naive UTC, :func:`autograder.deadlines.parse_due`), set in the
            gradebook before grading; ``None`` keeps the one it holds (``course release --due`` into
            the same ``out``). Submissions with a later ``timestamp.txt`` get the late penalty.
        budgets: what one submission may cost the grader's own side (default
            :class:`autograder.budgets.Budgets`).

    Returns:
        One :class:`~autograder.report.StudentReport` per student graded here, sorted by student id;
        none for a shard without students (more shards than students), which changes nothing.

    Raises:
        PipelineError: if ``submissions`` has no student folders, ``shard`` or ``db_url`` is not
            valid, or the assignment cannot be generated.
        GraderFaultError: if a kernel could not start for a reason of the machine: the run stops, and the
            student being graded gets no score (:class:`~autograder.course.GraderFaultError`).
        SandboxUnavailableError: if ``sandbox`` is set and the sandbox cannot start here (the message
            names the cause and the fix, :func:`autograder.preflight.require_sandbox`).
    """
    if sandbox:
        require_sandbox()  # a machine that cannot run the sandbox stops here, not as every student's zero
    check_db_url(db_url)
    k, n = shard
    if not 1 <= k <= n:
        raise PipelineError(f"shard {k}/{n}: expected 1 <= k <= n, e.g. 2/3 for the second of three machines")
    settings = GradingSettings(
        cell_timeout,
        submission_timeout,
        feedback,
        sandbox,
        limits or Limits(cpu_seconds=submission_timeout),
        budgets or Budgets(),
    )
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    students = students_in(submissions)[k - 1 :: n]
    if not students:  # more pods or array tasks than students: nothing to do is not a failure
        return []
    workers = max(1, min(workers, len(students)))
    root = out / "course"
    with course_lock(root):  # shards writing into one --out prepare it in turn
        root = prepare_course(assignment, out)
        generate_assignment(assignment, root, db_url)
        if due is not None:  # before the workers' copies of gradebook.db are made
            set_due(assignment, due, root, [db_url or "gradebook.db"])
        gradebooks = worker_gradebooks(root, workers, db_url, alone=shard == (1, 1))
    batches = [students[w::workers] for w in range(workers)]
    if workers == 1:
        reports = grade_batch(assignment, students, root, gradebooks[0], settings)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(grade_batch, assignment, batch, root, gradebook, settings)
                for gradebook, batch in zip(gradebooks, batches, strict=True)
            ]
            reports = [report for future in futures for report in future.result()]
    reports.sort(key=lambda r: r.student_id)
    if feedback:
        for report in reports:
            copy_feedback(root, assignment, report.student_id, out / "feedback" / report.student_id)
    graded: dict[str, list[str]] = {}
    for gradebook, batch in zip(gradebooks, batches, strict=True):  # a server's URL without its password
        graded.setdefault(redact(gradebook), []).extend(p.name for p in batch)
    with course_lock(root):  # the whole class: a regrade of some students keeps the others
        index = merge_index(root, graded)
        export(assignment, root, out, index, db_url)
        write_report(saved_reports(root, sorted(s for group in index.values() for s in group)), out / "report.txt")
        write_class_report(assignment, out, gradebooks=index if db_url is None else None, url=db_url)
    return reports


def copy_feedback(root: Path, assignment: str, student: str, dest: Path) -> None:
    """Copy a student's feedback pages from the course root to ``dest`` (replacing older ones)."""
    src = step_dir(root, "feedback", student, assignment)
    if src.exists():
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
