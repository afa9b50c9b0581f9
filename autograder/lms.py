"""Grades into the LMS: each student's total for an assignment, from nbgrader's gradebook, written as the
CSV file that Canvas or Moodle imports, the students matched to the LMS's accounts through a roster.

The total is nbgrader's own score of the submission (:attr:`nbgrader.api.SubmittedAssignment.score`):
the sum over its grade cells of :attr:`nbgrader.api.Grade.score`, which is the manual score entered in
the formgrader where there is one, else the autograder's score, plus any extra credit; less the late
penalty nbgrader's late-submission plugin assigned (``late_submission_penalty``, as nbgrader's own
``nbgrader export`` subtracts it). The points possible are the assignment's
:attr:`nbgrader.api.Assignment.max_score`.

**The roster** (``--roster``) is a CSV file, UTF-8 (a byte-order mark is fine), one row per student of
the LMS course, with a header row naming its columns (others are ignored):

- ``student_id`` (always): the student's id in the gradebook (nbgrader's id, the exchange user name);
- Canvas: ``name`` and ``canvas_id`` (Canvas' user id, the ``ID`` column of Canvas' own gradebook
  export), and optionally ``sis_user_id``, ``sis_login_id``, ``section``;
- Moodle: ``email`` or ``username``, the one ``--key`` names (the Moodle account field grades are
  matched on).

**Canvas** (Grades > Import), as Instructure's guide "How do I import grades in the Gradebook?"
(https://community.instructure.com/en/kb/articles/660862-how-do-i-import-grades-in-the-gradebook,
formerly https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807)
describes Canvas' gradebook CSV: the columns ``Student, ID, SIS User ID, SIS Login ID, Section`` in this
order, then one column per assignment; a second row ``Points Possible`` (as in Canvas' own export); UTF-8.
An assignment column named ``name (12345)`` updates the Canvas assignment with id 12345; one without an
id makes Canvas create a new assignment (it asks for the points possible). Canvas does not recognise an
assignment column whose title contains one of its total columns' names (:data:`CANVAS_RESERVED`).

**Moodle** (Grades > Import > CSV file), as Moodle's "Grade import" page
(https://docs.moodle.org/en/Grade_import) describes it: any header row; on the preview page the
instructor maps the key column (``Map from``: ``email``/``username``, ``Map to``: ``useremail``/
``username``) and the grade column to a grade item. Moodle's importer
(``grade/import/csv/classes/load_data.php``) reads an empty cell as "no grade" and aborts the whole
import at a row whose user it cannot find, hence a roster of the Moodle course's own accounts.

**Reported, never dropped silently** (:class:`Reconciliation`):

- a student graded in the gradebook but not in the roster: their grade is in no file, and the
  export fails (:attr:`Reconciliation.complete` is false; ``course export`` exits 1, files written);
- a roster student with no submission in the gradebook: their cell is left empty (no grade; the
  LMS's missing-submission policy or the instructor decides, rather than a zero this export cannot
  justify);
- a submission with cells still waiting for manual grading in the formgrader: its total may change.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from autograder.course import COURSE_ID, PipelineError
from autograder.gradebook import redact

#: The roster column holding the gradebook's student id.
ROSTER_ID = "student_id"

#: Canvas' identity columns, in Canvas' order: roster column -> Canvas' header.
CANVAS_IDENTITY = {
    "name": "Student",
    "canvas_id": "ID",
    "sis_user_id": "SIS User ID",
    "sis_login_id": "SIS Login ID",
    "section": "Section",
}
#: The roster columns Canvas needs filled in (the others may be absent or empty).
CANVAS_REQUIRED = ("name", "canvas_id")
#: Words Canvas does not accept in an assignment column's title (its total columns).
CANVAS_RESERVED = (
    "Current Score",
    "Current Points",
    "Current Grade",
    "Final Score",
    "Final Points",
    "Final Grade",
    "Override Score",
    "Override Grade",
    "Override Status",
)
#: The roster columns Moodle can match accounts on (``--key``).
MOODLE_KEYS = ("email", "username")

#: ``course export --format``: ``csv`` is the gradebook's own grades.csv/cells.csv (:mod:`autograder.gradebook`).
FORMATS = ("csv", "canvas", "moodle")


@dataclass(frozen=True)
class Total:
    """One submission's total in the gradebook.

    Attributes:
        score: nbgrader's score of the submission (points; manual grades and extra credit included).
        needs_manual_grade: whether some cell still waits for a grade in the formgrader.
    """

    score: float
    needs_manual_grade: bool


@dataclass(frozen=True)
class Totals:
    """An assignment's totals, from one or several gradebooks.

    Attributes:
        max_score: the assignment's points possible.
        students: student id -> :class:`Total`, for every student with a submission.
    """

    max_score: float
    students: dict[str, Total]


def read_totals(assignment: str, sources: list[tuple[str, list[str]]]) -> Totals:
    """Each student's total for ``assignment``, read with nbgrader's API.

    Args:
        sources: (database URL, the students it holds) per gradebook, as
            :func:`autograder.gradebook.sources` gives them. A listed student without a submission
            there is left out (and so reported as having none).

    Raises:
        PipelineError: if a gradebook does not hold ``assignment``, or two hold it with different
            points possible.
    """
    from nbgrader.api import Gradebook, MissingEntry

    max_scores: set[float] = set()
    students: dict[str, Total] = {}
    for url, ids in sources:
        with Gradebook(url, COURSE_ID) as gb:
            try:
                max_scores.add(float(gb.find_assignment(assignment).max_score))
            except MissingEntry as err:
                raise PipelineError(f"the gradebook {redact(url)} holds no assignment {assignment!r}") from err
            for student in ids:
                try:
                    sub = gb.find_submission(assignment, student)
                except MissingEntry:
                    continue
                score = float(sub.score) - float(sub.late_submission_penalty or 0.0)
                students[student] = Total(max(score, 0.0), bool(sub.needs_manual_grade))
    if len(max_scores) > 1:
        raise PipelineError(f"the gradebooks disagree on the points possible of {assignment}: {sorted(max_scores)}")
    return Totals(max_scores.pop() if max_scores else 0.0, students)


def required_columns(lms: str, key: str = "email") -> tuple[str, ...]:
    """The roster columns that ``lms`` (one of :data:`FORMATS`) needs filled in for every student.

    Raises:
        PipelineError: if ``lms`` or ``key`` is not one this module writes.
    """
    if lms not in FORMATS:
        raise PipelineError(f"unknown LMS format {lms!r}; expected one of {', '.join(FORMATS)}")
    if key not in MOODLE_KEYS:
        raise PipelineError(f"unknown Moodle key {key!r}; expected one of {', '.join(MOODLE_KEYS)}")
    return {"csv": (ROSTER_ID,), "canvas": (ROSTER_ID, *CANVAS_REQUIRED), "moodle": (ROSTER_ID, key)}[lms]


def read_roster(path: Path, required: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """The roster at ``path``: student id -> its row (column -> value, stripped), in the file's order.

    Raises:
        PipelineError: if the file is missing, lacks a ``required`` column (all missing ones are
            named), has a row where a required value is empty, or names a student twice.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"no roster file {path}; expected a CSV with the columns {', '.join(required)}")
    with path.open(newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets write a BOM
        reader = csv.DictReader(f)
        header = [(name or "").strip() for name in reader.fieldnames or []]
        missing = [column for column in required if column not in header]
        if missing:
            raise PipelineError(
                f"the roster {path} lacks the column(s) {', '.join(missing)} "
                f"(it has {', '.join(header) or 'no header row'}); expected {', '.join(required)}"
            )
        reader.fieldnames = header
        roster: dict[str, dict[str, str]] = {}
        for row in reader:
            values = {k: (v or "").strip() for k, v in row.items() if k is not None}  # None: cells past the header
            if not any(values.values()):
                continue  # a blank line
            empty = [column for column in required if not values.get(column)]
            if empty:
                raise PipelineError(f"the roster {path}, line {reader.line_num}: no {', '.join(empty)}")
            student = values[ROSTER_ID]
            if student in roster:
                raise PipelineError(f"the roster {path}, line {reader.line_num}: student {student!r} is listed twice")
            roster[student] = values
    return roster


@dataclass(frozen=True)
class Reconciliation:
    """What the gradebook and the roster disagree on, and which totals may still change.

    Attributes:
        not_in_roster: graded students the roster lacks: their grades are in no file.
        no_submission: roster students with no submission in the gradebook: their grade is empty.
        needs_manual_grade: students whose submission has cells waiting for manual grading.
    """

    not_in_roster: list[str]
    no_submission: list[str]
    needs_manual_grade: list[str]

    @property
    def complete(self) -> bool:
        """Is every graded student's grade in the file?"""
        return not self.not_in_roster

    def lines(self) -> list[str]:
        """One ``warning:``/``error:`` line per kind of problem, naming the students."""
        lines = []
        if self.not_in_roster:
            lines.append(
                f"error: {len(self.not_in_roster)} graded student(s) not in the roster, so not exported: "
                + ", ".join(self.not_in_roster)
            )
        if self.no_submission:
            lines.append(
                f"warning: {len(self.no_submission)} roster student(s) with no submission in the gradebook "
                "(grade left empty): " + ", ".join(self.no_submission)
            )
        if self.needs_manual_grade:
            lines.append(
                f"warning: {len(self.needs_manual_grade)} submission(s) with cells still to grade by hand "
                "in the formgrader (the total may change): " + ", ".join(self.needs_manual_grade)
            )
        return lines


def reconcile(totals: Totals, roster: dict[str, dict[str, str]]) -> Reconciliation:
    """Compare the graded students with the roster (lists sorted)."""
    return Reconciliation(
        not_in_roster=sorted(set(totals.students) - set(roster)),
        no_submission=sorted(set(roster) - set(totals.students)),
        needs_manual_grade=sorted(s for s, t in totals.students.items() if t.needs_manual_grade),
    )


def points(value: float) -> str:
    """Points as the LMS reads them: at most two decimals, no trailing zeros (``7.5``, ``12``)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def canvas_column(assignment: str, canvas_assignment_id: str | None) -> str:
    """The Canvas assignment column's title: ``assignment (id)`` to update an existing assignment,
    ``assignment`` alone to have Canvas create one.

    Raises:
        PipelineError: if the id is not a number or the title contains one of :data:`CANVAS_RESERVED`.
    """
    if canvas_assignment_id is not None and not canvas_assignment_id.isdigit():
        raise PipelineError(
            f"--lms-assignment {canvas_assignment_id!r} is not a Canvas assignment id; expected the number "
            "in the assignment's URL (.../courses/1234/assignments/12345 -> 12345)"
        )
    for reserved in CANVAS_RESERVED:
        if reserved.lower() in assignment.lower():
            raise PipelineError(f"Canvas ignores an assignment column whose title contains {reserved!r}: {assignment}")
    return f"{assignment} ({canvas_assignment_id})" if canvas_assignment_id else assignment


def _grade(totals: Totals, student: str) -> str:
    total = totals.students.get(student)
    return points(total.score) if total is not None else ""  # no submission: no grade


def write_canvas(
    path: Path, totals: Totals, roster: dict[str, dict[str, str]], assignment: str, canvas_assignment_id: str | None
) -> None:
    """Write Canvas' gradebook import CSV: the header, the ``Points Possible`` row, one row per roster student.

    Raises:
        PipelineError: as :func:`canvas_column`.
    """
    column = canvas_column(assignment, canvas_assignment_id)
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*CANVAS_IDENTITY.values(), column])
        writer.writerow(["Points Possible", *[""] * (len(CANVAS_IDENTITY) - 1), points(totals.max_score)])
        for student, row in roster.items():
            writer.writerow([*(row.get(c, "") for c in CANVAS_IDENTITY), _grade(totals, student)])


def write_moodle(path: Path, totals: Totals, roster: dict[str, dict[str, str]], key: str, column: str) -> None:
    """Write Moodle's grade import CSV: the columns ``key`` (``email``/``username``) and ``column``."""
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([key, column])
        for student, row in roster.items():
            writer.writerow([row[key], _grade(totals, student)])


@dataclass(frozen=True)
class LmsExport:
    """What :func:`export` did.

    Attributes:
        path: the LMS file written (``None`` for ``csv``, which only reconciles).
        students: how many roster rows it holds.
        reconciliation: what was reported.
    """

    path: Path | None
    students: int
    reconciliation: Reconciliation

    def lines(self) -> list[str]:
        """The lines ``course export`` prints."""
        head = [f"wrote {self.path} ({self.students} roster students)"] if self.path else []
        return head + self.reconciliation.lines()


def export(
    assignment: str,
    lms: str,
    out: Path,
    sources: list[tuple[str, list[str]]],
    roster: Path | None,
    key: str = "email",
    lms_assignment: str | None = None,
) -> LmsExport:
    """Write ``OUT/<assignment>_<lms>.csv`` for the LMS, and reconcile the gradebook with the roster.

    Args:
        lms: one of :data:`FORMATS`; ``csv`` writes nothing here (the gradebook CSVs are
            :func:`autograder.gradebook.export`'s) and only reconciles.
        sources: as :func:`read_totals`.
        roster: the roster CSV (module docstring); required for ``canvas`` and ``moodle``.
        key: Moodle: the roster column accounts are matched on, one of :data:`MOODLE_KEYS`.
        lms_assignment: Canvas: the assignment id to update (else Canvas creates an assignment);
            Moodle: the grade column's title (else the assignment's name).

    Raises:
        PipelineError: for a missing or bad roster, an unknown format or key, a bad Canvas id, or a
            gradebook without ``assignment``.
    """
    required = required_columns(lms, key)
    if roster is None:
        raise PipelineError(f"--format {lms} needs --roster ROSTER.csv with the columns {', '.join(required)}")
    students = read_roster(roster, required)
    if lms == "canvas":
        canvas_column(assignment, lms_assignment)  # a bad id fails before the gradebook is read
    totals = read_totals(assignment, sources)
    path = None
    if lms != "csv":
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{assignment}_{lms}.csv"
        if lms == "canvas":
            write_canvas(path, totals, students, assignment, lms_assignment)
        else:
            write_moodle(path, totals, students, key, lms_assignment or assignment)
    return LmsExport(path, len(students), reconcile(totals, students))
