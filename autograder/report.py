"""What happened to each submission, as structured problems, and the ``report.txt`` written from them.

Problems come from the steps that saw them, never from text matched afterwards: staging a
submission (:mod:`autograder.repairs`), the static scan (:mod:`autograder.tamper`), the nbgrader run
(:mod:`autograder.grading`), and nbgrader's own process, which logs what each cell did and what the
judges found as events (:mod:`autograder.events`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class StudentReport:
    """What happened to one student's submission.

    Attributes:
        student_id: the student's folder name (or exchange user name).
        problems: what went wrong or was repaired, in the order it was seen.
        seconds: wall time of the student's grading.
        judge_seconds: of which the judges took this long (in nbgrader's process).
    """

    student_id: str
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    judge_seconds: float = 0.0

    def add(self, kind: str, message: str, notebook: str | None = None, cell: str | None = None) -> None:
        """Record a problem."""
        self.problems.append(Problem(kind, message, notebook, cell))

    def summary(self) -> str:
        """``ok``, or the problems joined by ``; ``."""
        return "; ".join(map(str, self.problems)) if self.problems else "ok"


def write_report(reports: list[StudentReport], path: Path) -> None:
    """A plain-text report: each student's problems (or "ok") and grading time; the students to
    review listed first."""
    review = [r.student_id for r in reports if any(p.for_review for p in r.problems)]
    lines = [f"for review: {', '.join(review)}" if review else "for review: none"]
    lines += [f"{r.student_id}: {r.summary()} ({r.seconds:.1f} s)" for r in reports]
    Path(path).write_text("\n".join(lines) + "\n")
