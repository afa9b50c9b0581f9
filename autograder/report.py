"""What happened to each submission, as structured problems, and the ``report.txt`` written from them.

Problems come from the steps that saw them, never from text matched afterwards: staging a
submission (:mod:`autograder.repairs`), the static scan (:mod:`autograder.tamper`), the nbgrader run
(:mod:`autograder.grading`), and nbgrader's own process, which logs what each cell did and what the
judges found as events (:mod:`autograder.events`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autograder.tamper import REVIEW, TAMPERING


@dataclass(frozen=True)
class Problem:
    """One thing to report about a submission.

    Attributes:
        kind: what happened, a short identifier (``missing``, ``repaired``, ``cell_timeout``, and
            :data:`~autograder.tamper.TAMPERING` or :data:`~autograder.tamper.REVIEW` for the
            findings of the scan and the judges...).
        message: the sentence the report shows, naming the notebook and cell.
        notebook: the notebook's file name, when there is one.
        cell: the cell's ``grade_id`` or ``cell <id>``, when there is one.
    """

    kind: str
    message: str
    notebook: str | None = None
    cell: str | None = None

    @property
    def for_review(self) -> bool:
        """Whether an instructor should look at the submission (tampering suspected, or a hint of it)."""
        return self.kind in (TAMPERING, REVIEW)

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class CellOutcome:
    """How one graded test cell of a submission ended, as nbgrader's process saw it.

    Attributes:
        notebook: the notebook's file name.
        cell: the cell's ``grade_id``.
        passed: whether it ran without an error (nbgrader gives it its points).
        ename: the error's name when it failed: ``CheckFailed`` for a hidden check's verdict, the
            student's own error (``NotImplementedError``, ``NameError``...) when their code raised.
        message: the error's message, as the feedback shows it (cut to 300 characters).
        site: for a hidden check's verdict, which test decided (``module:line``,
            :attr:`autograder.checks.CheckFailed.site`); ``None`` otherwise.
    """

    notebook: str
    cell: str
    passed: bool
    ename: str | None = None
    message: str | None = None
    site: str | None = None


@dataclass
class StudentReport:
    """What happened to one student's submission.

    Attributes:
        student_id: the student's folder name (or exchange user name).
        problems: what went wrong or was repaired, in the order it was seen.
        seconds: wall time of the student's grading.
        judge_seconds: of which the judges took this long (in nbgrader's process).
        outcomes: how each graded test cell ended, in the order they ran.
        hints: the likely bugs the feedback names (:mod:`autograder.hints`), by ``grade_id``.
    """

    student_id: str
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    judge_seconds: float = 0.0
    outcomes: list[CellOutcome] = field(default_factory=list)
    hints: dict[str, str] = field(default_factory=dict)

    def add(self, kind: str, message: str, notebook: str | None = None, cell: str | None = None) -> None:
        """Record a problem."""
        self.problems.append(Problem(kind, message, notebook, cell))

    def summary(self) -> str:
        """``ok``, or the problems joined by ``; ``."""
        return "; ".join(map(str, self.problems)) if self.problems else "ok"


def printable(text: str) -> str:
    """``text`` as one line that nothing in it can break or disguise: newlines, terminal escapes, other
    control characters and invisible formatting (a right-to-left override) are written as escapes
    (``\\n``, ``\\x1b``, ``\\u202e``). Text a submission controls (a file name, an error message)
    goes through it before it reaches a report line, so it can never start a line of its own."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def report_line(report: StudentReport) -> str:
    """One student's line of ``report.txt``: ``<student>: <problems or ok> (<seconds> s)``."""
    return f"{printable(report.student_id)}: {printable(report.summary())} ({report.seconds:.1f} s)"


def write_report(reports: list[StudentReport], path: Path) -> None:
    """A plain-text report, one line per student (:func:`report_line`), built from the structured
    reports: each student's problems (or "ok") and grading time; the students to review listed first."""
    review = [printable(r.student_id) for r in reports if any(p.for_review for p in r.problems)]
    lines = [f"for review: {', '.join(review)}" if review else "for review: none"]
    lines += [report_line(r) for r in reports]
    Path(path).write_text("\n".join(lines) + "\n")


#: Where each graded submission's :class:`StudentReport` is kept, in the course root: read by
#: ``course report`` (:mod:`autograder.class_report`) and by the next run.
RESULTS_DIR = "results"


def save_report(report: StudentReport, root: Path) -> Path:
    """Write ``report`` to ``<root>/results/<student>.json`` (atomically: a grader killed meanwhile
    leaves the previous one); returns the path."""
    folder = Path(root) / RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{report.student_id}.json"
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(report), indent=1))
    tmp.replace(path)
    return path


def saved_reports(root: Path, students: list[str]) -> list[StudentReport]:
    """The saved :class:`StudentReport` of each of ``students`` in the course root ``root``; a student
    without a readable one gets a report that says so."""
    reports = []
    for student in students:
        try:
            reports.append(load_report(Path(root) / RESULTS_DIR / f"{student}.json"))
        except ValueError as err:
            reports.append(StudentReport(student, [Problem("no_report", f"no saved grading report ({err})")]))
    return reports


def load_report(path: Path) -> StudentReport:
    """The :class:`StudentReport` that :func:`save_report` wrote to ``path``.

    Raises:
        ValueError: if the file is not such a report (named in the message).
    """
    try:
        data = json.loads(Path(path).read_text())
        return StudentReport(
            student_id=data["student_id"],
            problems=[Problem(**p) for p in data["problems"]],
            seconds=float(data["seconds"]),
            judge_seconds=float(data["judge_seconds"]),
            outcomes=[CellOutcome(**o) for o in data.get("outcomes", [])],
            hints=dict(data.get("hints", {})),
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a saved grading report ({type(err).__name__}: {err})") from err
