"""Due dates, extensions and lateness, kept where nbgrader keeps them: the gradebook.

nbgrader stores an assignment's due date as a naive UTC datetime (:attr:`nbgrader.api.Assignment.duedate`)
and a student's extension on their submission (:attr:`nbgrader.api.SubmittedAssignment.extension`).
When it autogrades, it reads the submission's ``timestamp.txt`` (written by nbgrader's ``collect``, e.g.
``2027-02-02 08:30:00.000000 UTC``), stores it as the submission's timestamp, and a submission is late
by ``timestamp - (duedate + extension)`` seconds (:attr:`~nbgrader.api.SubmittedAssignment.total_seconds_late`);
its ``AssignLatePenalties`` step then asks the course's late policy (:mod:`autograder.late`) for each
notebook's penalty. A submission without ``timestamp.txt`` (an LMS zip, a folder of notebooks) is never late.

Each grading run has its own gradebooks (``<out>/course/gradebook*.db``, or a shared server), so the
commands that grade take the due date (``--due``) and set it in the gradebooks they grade into;
without ``--due`` a run keeps the due date its gradebook already holds (``course release --due`` in
the same ``--out``). :func:`annotate_feedback` tells the student, on each feedback page, how late the
submission was and what it cost.
"""

from __future__ import annotations

import datetime as dt
import difflib
import html
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from autograder.course import COURSE_ID, PipelineError, step_dir
from autograder.gradebook import db_url, redact

#: How a due date is written on the command line.
DUE_EXAMPLE = "2027-02-01 23:59 America/Los_Angeles"
_DUE_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")
#: The id of the note :func:`annotate_feedback` adds to a feedback page (so that it is added once).
NOTE_ID = "late-submission-note"


def parse_due(text: str) -> dt.datetime:
    """``"2027-02-01 23:59 America/Los_Angeles"`` -> the same instant as a naive UTC datetime (nbgrader's).

    The zone is an IANA name (``zoneinfo``: ``Europe/Berlin``, ``UTC``); daylight saving time is that
    of the date.

    Raises:
        PipelineError: if the date, the time or the zone cannot be read (the message shows an example).
    """
    when, _, zone = text.strip().rpartition(" ")
    expected = f"expected 'YYYY-MM-DD HH:MM ZONE', e.g. '{DUE_EXAMPLE}'"
    if not when or not zone:
        raise PipelineError(f"due date {text!r}: {expected}")
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PipelineError(f"due date {text!r}: unknown time zone {zone!r}; {expected} (an IANA zone name)") from None
    for fmt in _DUE_FORMATS:
        try:
            local = dt.datetime.strptime(when.strip(), fmt)
        except ValueError:
            continue
        return local.replace(tzinfo=tz).astimezone(dt.UTC).replace(tzinfo=None)
    raise PipelineError(f"due date {text!r}: cannot read the date and time {when!r}; {expected}")


def format_utc(when: dt.datetime) -> str:
    """A naive UTC datetime (nbgrader's) as ``2027-02-02 07:59 UTC``."""
    return f"{when:%Y-%m-%d %H:%M} UTC"


def course_gradebooks(root: Path) -> list[str]:
    """The sqlite gradebooks of the course root ``root``: ``gradebook.db`` and the workers' ``gradebook_<k>.db``.

    Raises:
        PipelineError: if there is none (nothing was released or graded into ``root``).
    """
    books = sorted(p.name for p in Path(root).glob("gradebook*.db"))
    if not books:
        raise PipelineError(f"no gradebook in {root}; run `course release`, `course autograde` or `course watch` first")
    return books


def set_due(assignment: str, due: dt.datetime, root: Path, gradebooks: list[str]) -> None:
    """Set ``assignment``'s due date to ``due`` (naive UTC) in each gradebook (file names in ``root`` or URLs).

    Uses nbgrader's :meth:`~nbgrader.api.Gradebook.update_or_create_assignment`.
    """
    from nbgrader.api import Gradebook

    for name in gradebooks:
        with Gradebook(db_url(root, name), COURSE_ID) as gb:
            gb.update_or_create_assignment(assignment, duedate=due)


def due_date(assignment: str, url: str) -> dt.datetime | None:
    """The due date (naive UTC) the gradebook at ``url`` holds for ``assignment``; ``None`` if it has none."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, COURSE_ID) as gb:
        try:
            return gb.find_assignment(assignment).duedate
        except MissingEntry:
            return None


def spread_due(
    assignment: str, root: Path, gradebooks: list[str], due: dt.datetime | None = None
) -> dt.datetime | None:
    """Make every gradebook hold the same due date: ``due``, or else the first gradebook's.

    The watcher's workers keep their own gradebooks across restarts; this carries a due date given
    later (``--due``, or ``course release --due`` into the same ``--out``) to all of them.

    Returns:
        The due date now held, or ``None`` when there is none.
    """
    due = due or due_date(assignment, db_url(root, gradebooks[0]))
    if due is not None:
        set_due(assignment, due, root, gradebooks)
    return due


def grant_extension(
    assignment: str, student: str, hours: float, root: Path, gradebooks: list[str], new_student: bool = False
) -> None:
    """Give ``student`` ``hours`` more hours for ``assignment`` in each gradebook (nbgrader's ``grant_extension``).

    Extensions replace each other (nbgrader's rule): a second call sets, not adds; ``hours=0`` removes it.
    With ``new_student``, a student no gradebook knows yet (who has not submitted) is entered with an
    empty submission (nbgrader keeps extensions on submissions), which their submission then fills in.

    Raises:
        PipelineError: if ``hours`` is negative, a gradebook does not hold ``assignment``, or no
            gradebook knows ``student`` and ``new_student`` is not set (the message lists the students
            it knows, closest first), before any gradebook is changed.
    """
    from nbgrader.api import Gradebook, MissingEntry

    if hours < 0:
        raise PipelineError(f"--hours {hours:g}: expected a number of hours >= 0 (0 removes the extension)")
    known: set[str] = set()
    for name in gradebooks:
        url = db_url(root, name)
        with Gradebook(url, COURSE_ID) as gb:
            try:
                gb.find_assignment(assignment)
            except MissingEntry:
                raise PipelineError(f"the gradebook {redact(url)} holds no assignment {assignment!r}") from None
            known |= {s.id for s in gb.students}
    if student not in known and not new_student:
        close = difflib.get_close_matches(student, sorted(known), n=5, cutoff=0.5)
        listed = ", ".join(close or sorted(known)[:10]) or "none yet"
        raise PipelineError(
            f"no gradebook of this course knows a student {student!r} (known: {listed}); nothing was changed. "
            "For a student who has not submitted yet, pass --new-student."
        )
    for name in gradebooks:
        with Gradebook(db_url(root, name), COURSE_ID) as gb:
            gb.update_or_create_student(student)
            gb.update_or_create_submission(assignment, student)
            gb.grant_extension(assignment, student, hours=hours)


@dataclass(frozen=True)
class Lateness:
    """How one submission stands against its due date, as nbgrader's gradebook records it.

    Attributes:
        due: the assignment's due date (naive UTC).
        extension: the student's extension, or ``None``.
        submitted: the submission's timestamp (naive UTC).
        seconds_late: seconds after ``due + extension`` (0 when on time).
        penalties: notebook name (no ``.ipynb``) -> points taken off for lateness.
    """

    due: dt.datetime
    extension: dt.timedelta | None
    submitted: dt.datetime
    seconds_late: float
    penalties: dict[str, float]


def lateness(assignment: str, student: str, url: str) -> Lateness | None:
    """The :class:`Lateness` of ``student``'s graded submission; ``None`` without a due date or a timestamp."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, COURSE_ID) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return None
        if sub.assignment.duedate is None or sub.timestamp is None:
            return None
        return Lateness(
            sub.assignment.duedate,
            sub.extension,
            sub.timestamp,
            sub.total_seconds_late,
            {nb.name: float(nb.late_submission_penalty or 0.0) for nb in sub.notebooks},
        )


def format_duration(seconds: float) -> str:
    """``93780`` -> ``"1 day 2 h 3 min"`` (whole minutes, rounded up: 1 s late is ``"1 min"``)."""
    minutes = -(-int(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes or not parts else []
    return " ".join(parts)


def late_note(late: Lateness, notebook: str) -> str:
    """The HTML note of a feedback page: when it was due and submitted, how late, and the penalty of ``notebook``."""
    due = late.due + (late.extension or dt.timedelta(0))
    extension = f" (with your extension of {format_duration(late.extension.total_seconds())})" if late.extension else ""
    said = html.escape(f"Due {format_utc(due)}{extension}; submitted {format_utc(late.submitted)}")
    if late.seconds_late <= 0:
        return f'<div id="{NOTE_ID}" class="alert alert-success">{said}: on time.</div>'
    penalty = late.penalties.get(notebook, 0.0)
    cost = f"late penalty on this notebook: {penalty:g} points" if penalty > 0 else "no late penalty on this notebook"
    by = format_duration(late.seconds_late)
    return f'<div id="{NOTE_ID}" class="alert alert-warning">{said}: <strong>late by {by}</strong>; {cost}.</div>'


def annotate_feedback(assignment: str, root: Path, student: str, url: str) -> list[Path]:
    """Add :func:`late_note` at the top of each of ``student``'s feedback pages, once.

    nbgrader's feedback template shows a late penalty above zero but neither the due date nor how
    late the submission was. Pages of an assignment without a due date, or of a submission without
    ``timestamp.txt``, are left as they are.

    Returns:
        The pages annotated.
    """
    late = lateness(assignment, student, url)
    if late is None:
        return []
    pages = []
    for page in sorted(step_dir(root, "feedback", student, assignment).glob("*.html")):
        text = page.read_text(encoding="utf-8")
        body = re.search(r"<body[^>]*>", text)
        if body is None or f'id="{NOTE_ID}"' in text:
            continue
        note = late_note(late, page.stem)
        page.write_text(text[: body.end()] + "\n" + note + text[body.end() :], encoding="utf-8")
        pages.append(page)
    return pages


@dataclass(frozen=True)
class Standing:
    """How one student's submission of an assignment stands against its due date, for the reports.

    Attributes:
        submitted: the submission's timestamp (naive UTC), ``None`` without ``timestamp.txt``.
        seconds_late: seconds after the due date plus extension (0 when on time, or without a due
            date or timestamp), as nbgrader computes it (:attr:`~nbgrader.api.SubmittedAssignment.total_seconds_late`).
        extension: the student's extension, or ``None``.
        autograded: whether the submission was autograded in this gradebook (an extension granted
            before a student submits enters an empty submission in every gradebook).
    """

    submitted: dt.datetime | None
    seconds_late: float
    extension: dt.timedelta | None
    autograded: bool

    @property
    def days_late(self) -> int:
        """Started days late, as the late policy counts them (:data:`autograder.late.SECONDS_PER_DAY`)."""
        return -(-int(self.seconds_late) // (24 * 3600)) if self.seconds_late > 0 else 0


def standings(assignment: str, url: str) -> tuple[dt.datetime | None, dict[str, Standing]]:
    """The due date of ``assignment`` in the gradebook at ``url`` and the :class:`Standing` of every
    submission it holds, in two queries (a class of hundreds is read at once).

    Returns:
        ``(due date or None, {student: Standing})``; empty when the gradebook does not hold ``assignment``.
    """
    from nbgrader.api import Assignment, Grade, Gradebook, SubmittedAssignment, SubmittedNotebook
    from sqlalchemy.orm import joinedload

    with Gradebook(url, COURSE_ID) as gb:
        assignments = gb.db.query(Assignment).filter(Assignment.name == assignment, Assignment.course_id == COURSE_ID)
        found = assignments.one_or_none()
        if found is None:
            return None, {}
        autograded = {
            student
            for (student,) in gb.db.query(SubmittedAssignment.student_id)
            .join(SubmittedNotebook, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Grade, Grade.notebook_id == SubmittedNotebook.id)
            .filter(SubmittedAssignment.assignment_id == found.id, Grade.auto_score.isnot(None))
            .distinct()
        }
        subs = (
            gb.db.query(SubmittedAssignment)
            .options(joinedload(SubmittedAssignment.assignment))
            .filter(SubmittedAssignment.assignment_id == found.id)
        )
        table = {}
        for sub in subs:
            late = float(sub.total_seconds_late or 0)
            table[sub.student_id] = Standing(sub.timestamp, late, sub.extension, sub.student_id in autograded)
        return found.duedate, table
