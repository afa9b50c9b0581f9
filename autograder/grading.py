"""Grading one student: stage, scan, autograde in the sandbox, feedback, and the report of what happened.

Each student is graded by its own ``nbgrader autograde --student=ID`` run (a subprocess, killed at the
submission's time limit), so a submission that crashes, hangs or is not a notebook is reported by
name and scored zero for what could not run, and the other students are graded as usual. nbgrader's
process logs what each cell did and what the judges found (:mod:`autograder.events`); this module
turns those events into the student's :class:`~autograder.report.Problem` list.
"""

from __future__ import annotations

import functools
import html
import shutil
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from autograder import events, hints
from autograder.budgets import Budgets
from autograder.course import GraderFaultError, run_nbgrader, step_dir, summarize_failure
from autograder.deadlines import annotate_feedback
from autograder.gradebook import db_url, record_empty_submission, zero_notebooks
from autograder.repairs import SUBMISSION_FILES, stage_submission
from autograder.report import CellOutcome, StudentReport, save_report
from autograder.sandbox import Limits, View
from autograder.sandbox import prepare as prepare_sandbox
from autograder.tamper import REVIEW, TAMPERING, scan_notebook


@dataclass(frozen=True)
class GradingSettings:
    """How each submission is graded (shared by all workers).

    Attributes:
        cell_timeout: seconds any one cell may run.
        submission_timeout: seconds one student's whole nbgrader run may take.
        feedback: also run ``nbgrader generate_feedback``.
        sandbox: run each kernel in the sandbox of :mod:`autograder.sandbox`.
        limits: the sandbox's resource limits.
        budgets: what a submission may cost the grader's own side (:class:`autograder.budgets.Budgets`).
    """

    cell_timeout: int = 300
    submission_timeout: int = 900
    feedback: bool = True
    sandbox: bool = True
    limits: Limits = field(default_factory=Limits)
    budgets: Budgets = field(default_factory=Budgets)


@functools.cache
def kernel_view() -> View:
    """What every grading kernel sees (:meth:`autograder.sandbox.View.of_this_python`), computed once."""
    return View.of_this_python()


def grade_batch(
    assignment: str, students: list[Path], root: Path, gradebook: str, settings: GradingSettings
) -> list[StudentReport]:
    """Grade ``students`` one after another into ``<root>/<gradebook>`` (one worker's share).

    A submission on which a step of the grader fails fails only itself (:func:`grade_student`); a
    fault of the machine (:class:`~autograder.course.GraderFaultError`) stops the batch.
    """
    return [grade_student(assignment, d, root, gradebook, settings) for d in students]


def grade_student(
    assignment: str, student_dir: Path, root: Path, gradebook: str, settings: GradingSettings
) -> StudentReport:
    """Stage, scan, autograde and give feedback to one student's submission; never raises for it.

    Each step that reads what the student handed in (staging, the scan, hints, feedback) fails only
    this submission, with its cause in the report; the whole of it, staging included, runs within
    ``settings.submission_timeout``. The report is also saved to ``<root>/results/<student>.json``
    (:func:`~autograder.report.save_report`) for ``course report``.

    Raises:
        GraderFaultError: if a grading kernel could not start (the machine's fault); nothing is scored.
    """
    start = time.perf_counter()
    url = db_url(root, gradebook)
    unstaged = StudentReport(student_dir.name)  # what is reported if staging itself fails
    report = _step(unstaged, "staging", stage_submission, assignment, student_dir, root, settings.budgets) or unstaged
    submitted = step_dir(root, "submitted", report.student_id, assignment)
    autograded = step_dir(root, "autograded", report.student_id, assignment)
    feedback = step_dir(root, "feedback", report.student_id, assignment)
    findings = [f for path in sorted(submitted.glob("*.ipynb")) for f in _scan(report, path)]
    for f in findings:
        label = (
            "tampering suspected, its notebook's autograded points set to zero"
            if f.severity == TAMPERING
            else "for review"
        )
        report.add(f.severity, f"{label}: {f}", f.notebook, f.cell)
    left = settings.submission_timeout - (time.perf_counter() - start)
    if not any(submitted.glob("*.ipynb")) or left < 1:
        if left < 1:
            report.add("grading_timeout", f"staging ran past the {settings.submission_timeout} s limit; not graded")
        record_empty_submission(assignment, report.student_id, url)
        return _finish(report, settings, submitted, feedback, root, start)
    log = root / ".events" / f"{report.student_id}.jsonl"
    log.parent.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    env = {events.EVENTS_ENV: str(log)}  # read in nbgrader's process
    args = ["autograde", assignment, f"--student={report.student_id}", "--force", f"--CourseDirectory.db_url={url}"]
    args += [f"--Execute.timeout={settings.cell_timeout}", *settings.budgets.nbgrader_flags()]
    with ExitStack() as cleanup:
        if settings.sandbox:
            box = prepare_sandbox(root / ".sandbox" / report.student_id, settings.limits, kernel_view(), assignment)
            cleanup.callback(shutil.rmtree, box["scratch"], ignore_errors=True)
            args, env = args + box["args"], {**env, **box["env"]}
        result = run_nbgrader(args, root, timeout=left, env=env)
    output = result.stdout + result.stderr
    faults = [e for e in events.read_events(log) if e["event"] == "fault"]
    if faults:
        raise GraderFaultError(
            f"{report.student_id}: a grading kernel could not start ({faults[0]['notebook']}: {faults[0]['detail']})"
            f"{launch_errors(output)}. This is the machine's fault, not the submission's: nothing was scored for "
            "it. `course doctor` checks the sandbox; run the same command again once it passes."
        )
    if result.returncode == -9:
        report.add("grading_timeout", f"grading ran past the {settings.submission_timeout} s limit and was stopped")
    elif result.returncode != 0 and ("DeadKernelError" in output or "Kernel died" in output):
        report.add("kernel_died", "the kernel died more often than the grader restarts it (that notebook scored zero)")
    elif result.returncode != 0:
        report.add("nbgrader_failed", f"nbgrader could not grade it: {summarize_failure(output)}")
    _read_events(report, log, settings)
    tampered = {f.notebook for f in findings if f.severity == TAMPERING}
    if tampered:
        zero_notebooks(assignment, report.student_id, url, tampered)
    # the likely bug, into the failing cell that generate_feedback renders (not for a tampered notebook)
    library, unusable = hints.current_library()
    if unusable:  # grading goes on without hints, and the report says why
        report.add("hints_unavailable", f"no feedback hints: {unusable}")
    outcomes = [o for o in report.outcomes if o.notebook not in tampered]
    report.hints = _step(report, "the hints", hints.annotate, assignment, autograded, outcomes, library) or {}
    if settings.feedback and autograded.exists():
        problem = _step(report, "the feedback", generate_feedback, assignment, root, report.student_id, gradebook)
        if problem is not None:
            report.add("feedback_failed", problem)
        _step(report, "capping the feedback", cap_feedback, report, feedback, settings.budgets.feedback_bytes)
    return _finish(report, settings, submitted, feedback, root, start)


def _finish(
    report: StudentReport, settings: GradingSettings, submitted: Path, feedback: Path, root: Path, start: float
) -> StudentReport:
    """The pages of the notebooks nbgrader could not grade, the time, and the saved report."""
    if settings.feedback:
        _step(report, "the feedback pages", write_problem_pages, report, submitted, feedback)
    report.seconds = time.perf_counter() - start
    save_report(report, root)
    return report


def _step(report: StudentReport, step: str, run, *args):
    """``run(*args)``: a step of the grader on this submission. If it fails, the failure is this
    submission's alone: the report names the step and the error, and the step's result is ``None``
    (a fault of the machine still stops the run)."""
    try:
        return run(*args)
    except GraderFaultError:
        raise
    except Exception as err:
        report.add("grader_step_failed", f"{step} failed on this submission ({type(err).__name__}: {str(err)[:200]})")
        return None


def _scan(report: StudentReport, notebook: Path) -> list:
    """The scan's findings in one staged notebook; one it could not read is for review (the scan is one
    layer of the defense, the judges decide)."""
    found = _step(report, "the scan", scan_notebook, notebook)
    if found is None:
        report.add(REVIEW, f"for review: the scan could not read {notebook.name}", notebook.name)
    return found or []


def cap_feedback(report: StudentReport, feedback: Path, limit: int) -> None:
    """Replace each feedback page over ``limit`` bytes with a page that says so, and report it."""
    for page in sorted(Path(feedback).glob("*.html")):
        size = page.stat().st_size
        if size > limit:
            notebook = f"{page.stem}.ipynb"
            message = f"{notebook}: its feedback page is {size / 1e6:.0f} MB, over the {limit / 1e6:g} MB limit"
            report.add("feedback_too_large", message, notebook)
            page.write_text(
                f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(notebook)}</title></head>"
                f"<body><h1>{html.escape(notebook)}</h1><p>{html.escape(message)}; your score stands. Ask your "
                "instructor for the graded notebook.</p></body></html>\n"
            )


#: Programs of the sandbox's launch chain (:func:`autograder.sandbox.sandboxed`), whose own error lines
#: say why a kernel did not start.
LAUNCH_PROGRAMS = ("bwrap", "setpriv", "prlimit", "env", "sh", "find")


def launch_errors(output: str) -> str:
    """``"; bwrap: ..."``: the error lines of the sandbox's launch chain in nbgrader's output, or ``""``."""
    lines = [line.strip() for line in output.splitlines() if line.split(":")[0].strip() in LAUNCH_PROGRAMS]
    return "".join(f"; {line[:300]}" for line in dict.fromkeys(lines))


def generate_feedback(assignment: str, root: Path, student: str, gradebook: str) -> str | None:
    """``nbgrader generate_feedback`` for one student from ``gradebook``: ``None``, or what went wrong.

    Each page then says when the submission was due and made, and how late
    (:func:`~autograder.deadlines.annotate_feedback`).
    """
    url = db_url(root, gradebook)
    args = ["generate_feedback", assignment, f"--student={student}", "--force", f"--CourseDirectory.db_url={url}"]
    result = run_nbgrader(args, root, timeout=300)
    if result.returncode != 0:
        return "feedback could not be generated: " + summarize_failure(result.stdout + result.stderr)
    annotate_feedback(assignment, root, student, url)
    return None


def _read_events(report: StudentReport, log: Path, settings: GradingSettings) -> None:
    """Add the problems, findings and judging time of nbgrader's event log to ``report``."""
    for event in events.read_events(log):
        if event["event"] == "problem":
            what = events.CELL_MESSAGES[event["kind"]].format(timeout=settings.cell_timeout, detail=event["detail"])
            report.add(event["kind"], f"{event['notebook']}: {event['cell']} {what}", event["notebook"], event["cell"])
        elif event["event"] == "finding":
            tampering = event["severity"] == TAMPERING
            label = "tampering suspected, for review" if tampering else "for review"
            message = f"{label}: {event['notebook']}: {event['cell']} {event['message']}"
            report.add(event["severity"], message, event["notebook"], event["cell"])
        elif event["event"] == "outcome":
            report.outcomes.append(CellOutcome(**{k: v for k, v in event.items() if k != "event"}))
        elif event["event"] == "timing":
            report.judge_seconds += event["judge_seconds"]


def write_problem_pages(report: StudentReport, submitted: Path, feedback: Path) -> list[Path]:
    """A feedback page for every submitted notebook nbgrader could give none, saying what went wrong.

    nbgrader writes feedback only for the notebooks it graded; a notebook that is not JSON, or whose
    grading was stopped, would otherwise come back with nothing. The page lists the submission's
    problems for that notebook and those of the whole submission.

    Returns:
        The pages written (``<feedback>/<notebook>.html``).
    """
    written: list[Path] = []
    for notebook in sorted(
        {p.notebook for p in report.problems if p.notebook} | {p.name for p in submitted.glob("*.ipynb")}
    ):
        page = feedback / f"{Path(notebook).stem}.html"
        if page.exists():
            continue
        items = [p for p in report.problems if p.notebook in (notebook, None)]
        if not items:
            continue
        feedback.mkdir(parents=True, exist_ok=True)
        for name in SUBMISSION_FILES:  # nbgrader's release_feedback reads them next to the pages
            if (submitted / name).is_file() and not (feedback / name).exists():
                shutil.copy(submitted / name, feedback / name)
        lines = "".join(f"<li>{html.escape(str(p))}</li>" for p in items)
        page.write_text(
            f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(notebook)}</title></head>"
            f"<body><h1>{html.escape(notebook)}: not graded</h1><p>The grader could not grade this notebook "
            f"(score 0):</p><ul>{lines}</ul></body></html>\n"
        )
        written.append(page)
    return written
