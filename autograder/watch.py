"""``course watch``: feedback minutes after a student submits.

A long-running process beside nbgrader's exchange: each new submission (the latest of its student) is
collected, graded in the sandbox as ``course autograde`` grades it, and its feedback released. The ledger
(``<out>/watch.json``, :class:`Ledger`) lets a watcher killed and started again with the same command go on
where it stopped: no submission is lost, none graded twice. A broken or hostile submission gets feedback
saying what went wrong and never stops the watcher. ``docs/instructors.md`` ("JupyterHub") shows it in use.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder import exchange
from autograder.class_report import write_class_report
from autograder.course import COURSE_ID, GraderFaultError, prepare_course
from autograder.deadlines import format_utc, spread_due
from autograder.gradebook import add_course, db_url, export, holds_assignment, read_gradebook, write_index
from autograder.grading import GradingSettings, grade_student
from autograder.pipeline import copy_feedback
from autograder.preflight import require_sandbox
from autograder.release import generate_assignment
from autograder.report import Problem, StudentReport, printable, write_report
from autograder.sandbox import Limits

#: Grader failures (not the student's: nbgrader or the machine) after which a submission is left alone
#: until its student submits again or the watcher is restarted.
MAX_FAILURES = 3


@dataclass(frozen=True)
class WatchSettings:
    """How the watcher grades.

    Attributes:
        cell_timeout: seconds any one cell may run.
        submission_timeout: seconds one submission's whole grading may take (it holds a worker
            that long at most).
        workers: submissions graded at once.
        interval: seconds between two looks at the exchange.
        sandbox: run each kernel in the sandbox.
        due: the assignment's due date (naive UTC, :func:`autograder.deadlines.parse_due`); ``None``
            keeps the one the course root's ``gradebook.db`` holds.
    """

    cell_timeout: int = 120
    submission_timeout: int = 300
    workers: int = 1
    interval: float = 2.0
    sandbox: bool = True
    due: dt.datetime | None = None


@dataclass
class Graded:
    """One graded submission, as the ledger keeps it."""

    student: str
    timestamp: str
    gradebook: str
    score: float
    max_score: float
    seconds: float
    problems: list[dict] = field(default_factory=list)


class Ledger:
    """What the watcher has graded: ``<out>/watch.json``, rewritten atomically after each submission.

    ``latest[student]`` is the student's last graded submission; ``history`` every grading, in order.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.latest: dict[str, Graded] = {s: Graded(**g) for s, g in data.get("latest", {}).items()}
        self.history: list[dict] = data.get("history", [])

    def graded(self, student: str, timestamp: str) -> bool:
        """Has this submission of ``student`` (or a later one) been graded?"""
        done = self.latest.get(student)
        return done is not None and done.timestamp >= timestamp

    def add(self, graded: Graded) -> None:
        """Record a grading and write the ledger."""
        self.latest[graded.student] = graded
        self.history.append(asdict(graded))
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"latest": {s: asdict(g) for s, g in self.latest.items()}, "history": self.history}, indent=1)
        )
        os.replace(tmp, self.path)


def grade_submission(
    assignment: str,
    root: Path,
    exchange_dir: Path,
    course_id: str,
    student: str,
    gradebook: str,
    settings: GradingSettings,
) -> Graded:
    """Collect, grade and release the feedback of ``student``'s latest submission (in a worker process).

    nbgrader's ``collect --update``, then :func:`autograder.grading.grade_student` with the watcher's own
    limits (minutes, not the class run's 900 s), then nbgrader's ``release_feedback``, which the student
    fetches in JupyterLab's Assignments panel.
    """
    exchange.collect(assignment, root, exchange_dir, course_id, student)
    folder = root / exchange.COLLECTED / student
    timestamp = (folder / assignment / "timestamp.txt").read_text().strip()
    report = grade_student(assignment, folder, root, gradebook, settings)
    exchange.release_feedback(assignment, root, exchange_dir, course_id, student)
    _, cells = read_gradebook(assignment, db_url(root, gradebook), [student])
    auto = [c for c in cells if c["kind"] == "autograded"]
    return Graded(
        student,
        timestamp,
        gradebook,
        sum(c["score"] for c in auto),
        sum(c["max_score"] for c in auto),
        round(report.seconds, 1),
        [asdict(p) for p in report.problems],
    )


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def watch(
    assignment: str,
    exchange_dir: Path,
    out: Path,
    course_id: str = COURSE_ID,
    settings: WatchSettings | None = None,
    once: bool = False,
    log: Callable[[str], None] = _log,
) -> Ledger:
    """Grade every new submission of ``assignment`` in ``exchange_dir`` and release its feedback.

    The exchange's inbound folder is read every ``settings.interval`` seconds. Several submissions at once
    queue up for ``settings.workers`` processes, each with its own sandbox user and sqlite gradebook. A
    resubmission is graded again and only the latest counts; a submission whose grading was cut short is
    graded from the start. The class's CSVs and report are rewritten after each submission.

    Args:
        assignment: e.g. ``"hw1_vae"``; released to the exchange with ``course release --exchange``.
        exchange_dir: nbgrader's exchange root.
        out: the watcher's folder: the course root ``<out>/course``, ``watch.json``, the CSVs,
            ``report.txt`` and ``feedback/``. Start the watcher again with the same ``out``.
        course_id: the exchange's course id.
        settings: limits, workers and polling interval.
        once: return when no submission is waiting or being graded (otherwise run until stopped).
        log: where the log lines go (one when a submission is picked up, one when it is done).

    Returns:
        The ledger.

    Raises:
        SandboxUnavailableError: if the sandbox cannot start on this machine (before anything is graded).
        GraderFaultError: if a kernel could not start for a reason of the machine; the submission is
            left ungraded, to be graded when the watcher is started again.
    """
    settings = settings or WatchSettings()
    if settings.sandbox:
        require_sandbox()  # a machine that cannot run the sandbox stops here, not as every student's zero
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    def note(message: str) -> None:  # each line goes to ``log`` and to <out>/watch.log
        message = printable(message)  # what a submission wrote stays on its own line
        log(message)
        with (out / "watch.log").open("a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    grading = GradingSettings(
        settings.cell_timeout,
        settings.submission_timeout,
        True,
        settings.sandbox,
        Limits(cpu_seconds=settings.submission_timeout),
    )
    root = prepare_course(assignment, out)
    if not (root / "gradebook.db").exists() or not holds_assignment(assignment, db_url(root, "gradebook.db")):
        generate_assignment(assignment, root)
    add_course(db_url(root, "gradebook.db"), course_id)  # before the workers' collects, which would race to add it
    gradebooks = [f"gradebook_{k}.db" for k in range(max(1, settings.workers))]
    for gradebook in gradebooks:  # one per worker (sqlite takes no concurrent writers), kept across restarts
        if not (root / gradebook).exists():
            shutil.copy(root / "gradebook.db", root / gradebook)
    due = spread_due(assignment, root, ["gradebook.db", *gradebooks], settings.due)  # workers' books kept
    ledger = Ledger(out / "watch.json")
    free = list(range(len(gradebooks)))
    running: dict[str, tuple[int, str, Future]] = {}
    failures: dict[tuple[str, str], int] = {}  # (student, timestamp) -> grader failures so far
    due_said = f", due {format_utc(due)}" if due else ", no due date"
    note(
        f"watching {Path(exchange_dir) / course_id / 'inbound'} for {assignment}{due_said} "
        f"with {len(gradebooks)} worker(s)"
    )
    with ProcessPoolExecutor(max_workers=len(gradebooks), mp_context=multiprocessing.get_context("spawn")) as pool:
        while True:
            latest = {s.student: s for s in exchange.inbound(exchange_dir, course_id, assignment)}
            waiting = [
                s
                for s in latest.values()
                if not ledger.graded(s.student, s.timestamp)
                and s.student not in running
                and failures.get((s.student, s.timestamp), 0) < MAX_FAILURES
            ]
            for submission in waiting:
                if not free:
                    break
                slot = free.pop(0)
                args = (
                    assignment,
                    root,
                    exchange_dir,
                    course_id,
                    submission.student,
                    gradebooks[slot],
                    grading,
                )
                running[submission.student] = (slot, submission.timestamp, pool.submit(grade_submission, *args))
                note(f"{submission.student}: grading the submission of {submission.timestamp} ({len(running)} running)")
            for student, (slot, timestamp, future) in list(running.items()):
                if not future.done():
                    continue
                del running[student]
                free.append(slot)
                try:
                    graded = future.result()
                except GraderFaultError as err:  # the machine's fault: stop, say why, score nothing
                    note(f"{student}: {err}; the watcher stops")
                    raise
                except Exception as err:  # a grader failure (not the student's): retried a few times
                    tries = failures[student, timestamp] = failures.get((student, timestamp), 0) + 1
                    then = "it will be retried" if tries < MAX_FAILURES else "left until the student submits again"
                    note(f"{student}: grading failed ({type(err).__name__}: {err}); {then}")
                    continue
                ledger.add(graded)
                _write_class_files(assignment, root, out, ledger)
                said = "; ".join(p["message"] for p in graded.problems)[:300]
                problems = f"; {len(graded.problems)} problem(s): {said}" if graded.problems else ""
                note(
                    f"{student}: submission of {graded.timestamp} graded in {graded.seconds:.0f} s: "
                    f"{graded.score:g}/{graded.max_score:g} autograded points, feedback released{problems}"
                )
            if once and not running and not waiting:
                return ledger
            time.sleep(settings.interval)


def _write_class_files(assignment: str, root: Path, out: Path, ledger: Ledger) -> None:
    """The class's CSVs (each student's latest grading), ``report.txt``, the class report
    (``report/index.html``) and feedback copies."""
    held: dict[str, list[str]] = {}
    for student, graded in sorted(ledger.latest.items()):
        held.setdefault(graded.gradebook, []).append(student)
        copy_feedback(root, assignment, student, out / "feedback" / student)
    export(assignment, root, out, held)
    reports = [
        StudentReport(s, [Problem(**p) for p in g.problems], g.seconds) for s, g in sorted(ledger.latest.items())
    ]
    write_report(reports, out / "report.txt")
    write_index(root, held)  # for course report, export and feedback
    write_class_report(assignment, out, gradebooks=held)
