"""Grades into the LMS: each student's total for an assignment, from nbgrader's gradebook, written as the
CSV file that Canvas or Moodle imports, the students matched to the LMS's accounts through a roster.

The roster is the LMS's own export or a CSV of our own (:func:`load_roster`); ``docs/instructors.md``
("Grades into your LMS") walks through both and the import. No student is dropped silently
(:class:`Reconciliation`): a graded student the roster lacks fails the export, and a roster student
without a submission gets an empty cell, not a zero.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
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

    The total is nbgrader's own score of the submission (:attr:`nbgrader.api.SubmittedAssignment.score`:
    the sum over its grade cells of :attr:`nbgrader.api.Grade.score`, the formgrader's manual score where
    there is one, else the autograder's, plus any extra credit) less the late penalty nbgrader's
    late-submission plugin assigned (``late_submission_penalty``, as ``nbgrader export`` subtracts it), never
    below zero.
    The points possible are the assignment's :attr:`nbgrader.api.Assignment.max_score`.

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

    A roster CSV of our own: UTF-8 (a byte-order mark is fine), one row per student of the LMS course, a
    header row naming its columns (others are ignored): ``student_id`` always (the gradebook's id, the
    exchange user name); for Canvas ``name`` and ``canvas_id`` (the ``ID`` column of Canvas' gradebook
    export), optionally ``sis_user_id``, ``sis_login_id``, ``section``; for Moodle ``email`` or
    ``username``, the one ``--key`` names.

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


#: What :func:`load_roster` calls the LMS exports it reads.
CANVAS_KIND = "Canvas gradebook export"
MOODLE_KIND = "Moodle participants export"
#: Canvas' gradebook export: its header -> the roster column it fills (:data:`CANVAS_IDENTITY`'s names).
CANVAS_EXPORT = {"Student": "name", "ID": "canvas_id", "SIS User ID": "sis_user_id", "SIS Login ID": "sis_login_id"}
CANVAS_EXPORT |= {"Section": "section", "Integration ID": "integration_id"}
#: Canvas' export columns that may hold the gradebook's student ids, in the order a tie is decided.
CANVAS_ID_COLUMNS = ("SIS Login ID", "SIS User ID", "Integration ID", "ID")
#: Rows of Canvas' export that are not students: their first cell (stripped).
CANVAS_NOT_STUDENTS = ("Points Possible", "Student, Test", "Test Student")
#: Moodle's participants export (``user/action_redir.php``'s column names in English): header -> roster column.
MOODLE_EXPORT = {"First name": "first_name", "Last name": "last_name", "Surname": "last_name"}
MOODLE_EXPORT |= {"Email address": "email", "Username": "username", "ID number": "id_number"}
#: Moodle's export columns that may hold the gradebook's student ids, in the order a tie is decided.
MOODLE_ID_COLUMNS = ("Username", "Email address", "ID number")


def _local_part(value: str) -> str:
    return value.split("@")[0].lower() if "@" in value else ""


#: The ways a roster value may name a gradebook student id: ``(how, form)``, tried in this order.
ID_FORMS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("as it is", lambda value: value),
    ("lower-cased", str.lower),
    ("the part before @, lower-cased", _local_part),
)


@dataclass(frozen=True)
class Roster:
    """A roster read from the LMS's own export or from a roster CSV.

    Attributes:
        rows: gradebook student id -> the roster columns (:data:`CANVAS_IDENTITY`'s, ``email``,
            ``username``...), in the file's order.
        kind: what the file is (``Canvas gradebook export``, ``Moodle participants export``, ``roster CSV``).
        mapping: roster column -> the file's header it was read from.
        matched: how the gradebook's ids were found, e.g. ``'SIS Login ID', lower-cased (12 of 12 graded
            students)``; empty for a roster CSV (its ``student_id`` column).
        skipped: rows that are not students, or without an id, as sentences.
    """

    rows: dict[str, dict[str, str]]
    kind: str
    mapping: dict[str, str] = field(default_factory=dict)
    matched: str = ""
    skipped: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """What ``course export`` prints about the roster: which file, which columns."""
        if not self.matched:
            return [f"roster: a {self.kind}, {len(self.rows)} students"]
        columns = ", ".join(f"{ours} from {theirs!r}" for ours, theirs in self.mapping.items())
        lines = [f"roster: {self.kind}, {len(self.rows)} students; gradebook ids matched to {self.matched}; {columns}"]
        return lines + [f"roster: skipped {what}" for what in self.skipped]


def _read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of a CSV file as an LMS writes it: UTF-8 with or without a byte-order
    mark, ``,`` or ``;`` (Canvas in locales with a decimal comma) or a tab between fields."""
    text = Path(path).read_text(encoding="utf-8-sig")
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    header = [(name or "").strip() for name in rows[0]] if rows else []
    return header, rows[1:]


def _unquote_formula(value: str) -> str:
    """Canvas writes a name that starts with ``=`` as ``="=name"`` so that spreadsheets do not run it."""
    value = value.strip()
    return value[2:-1] if value.startswith('="') and value.endswith('"') else value


def _match_ids(
    rows: list[dict[str, str]], candidates: tuple[str, ...], graded: set[str], path: Path
) -> tuple[str, str, list[str]]:
    """The column of ``candidates`` and the form (:data:`ID_FORMS`) whose values name the most graded
    students (the first such on a tie), and each row's id in that form (``""``: none).

    Raises:
        PipelineError: if no candidate column names a single graded student.
    """
    present = [c for c in candidates if rows and c in rows[0]]
    best: tuple[int, str, str, list[str]] = (0, "", "", [])
    for column in present:
        for how, form in ID_FORMS:
            ids = [form(row[column]) for row in rows]
            found = len(graded & set(ids))
            if found > best[0]:
                best = (found, column, how, ids)
    if best[0] == 0:
        shown = ", ".join(map(repr, present)) or "none of " + ", ".join(map(repr, candidates))
        example = ", ".join(sorted(graded)[:3]) or "none graded"
        raise PipelineError(
            f"no column of the roster {path} ({shown}) holds the gradebook's student ids (e.g. {example}); "
            "expected one whose values are the students' exchange or JupyterHub user names, or a roster CSV "
            "with a student_id column (docs/instructors.md)"
        )
    return best[1], best[2], best[3]


def _from_export(path: Path, kind: str, header: list[str], raw: list[list[str]], graded: set[str]) -> Roster:
    """A :class:`Roster` from Canvas' gradebook export or Moodle's participants export."""
    canvas = kind == CANVAS_KIND
    columns, candidates = (CANVAS_EXPORT, CANVAS_ID_COLUMNS) if canvas else (MOODLE_EXPORT, MOODLE_ID_COLUMNS)
    rows, skipped = [], []
    for values in raw:
        row = {name: (values[i] if i < len(values) else "").strip() for i, name in enumerate(header)}
        first = row.get(header[0], "") if header else ""
        if not any(row.values()):
            continue
        if canvas and (first in CANVAS_NOT_STUDENTS or not row.get("ID", "").isdigit()):
            skipped.append(f"the row {first or '(no name)'!r}: not a student (points possible, posting, test student)")
            continue
        rows.append(row)
    column, how, ids = _match_ids(rows, candidates, graded, path)
    mapping = {ours: theirs for theirs, ours in columns.items() if theirs in header}
    roster: dict[str, dict[str, str]] = {}
    for row, student in zip(rows, ids, strict=True):
        name = " ".join(_unquote_formula(row.get(h, "")) for h in ("First name", "Last name", "Surname") if h in row)
        if not student:
            skipped.append(f"a row without {column!r} ({_unquote_formula(row.get(header[0], '')) or name!r})")
            continue
        if student in roster:
            raise PipelineError(f"the roster {path}: {column!r} names student {student!r} twice")
        values = {ours: _unquote_formula(row.get(theirs, "")) for ours, theirs in mapping.items()}
        if not canvas:
            values["name"] = name.strip()
        roster[student] = {ROSTER_ID: student, **values}
    matched = f"{column!r}, {how} ({len(graded & set(roster))} of {len(graded)} graded students)"
    return Roster(roster, kind, mapping, matched, tuple(skipped))


def load_roster(path: Path, lms: str, key: str, graded: set[str]) -> Roster:
    """The roster at ``path``: Canvas' gradebook export (Grades > Export; its ``Points Possible`` and
    ``Manual Posting`` rows, a byte-order mark, ``;`` separators and the test student are handled), Moodle's
    participants export (Participants > select all > "Download table data as" CSV), or a roster CSV of our
    own (:func:`read_roster`). In an export, the column holding the gradebook's ids is the candidate
    (:data:`CANVAS_ID_COLUMNS`, :data:`MOODLE_ID_COLUMNS`) whose values, as they are, lower-cased or an
    e-mail address's local part (:data:`ID_FORMS`), name the most graded students.

    Args:
        lms: the format written (:data:`FORMATS`): Canvas needs a Canvas export or a roster CSV with
            Canvas ids, Moodle a Moodle export or a roster CSV with the ``key`` column.
        key: Moodle's account field grades are matched on (:data:`MOODLE_KEYS`).
        graded: the gradebook's student ids, which the export's id column is matched against.

    Raises:
        PipelineError: if the file is missing, is an export of the other LMS, has no column holding
            the gradebook's ids, lacks the ``key`` column, or is a roster CSV that :func:`read_roster` refuses.
    """
    path = Path(path)
    required = required_columns(lms, key)
    if not path.is_file():
        raise PipelineError(
            f"no roster file {path}; expected Canvas' gradebook export, Moodle's participants export, "
            f"or a CSV with the columns {', '.join(required)}"
        )
    header, raw = _read_rows(path)
    if "Student" in header and "ID" in header and "SIS Login ID" in header:
        kind = CANVAS_KIND
    elif "Email address" in header and "First name" in header:
        kind = MOODLE_KIND
    else:
        return Roster(read_roster(path, required), "roster CSV")
    if lms == "canvas" and kind != CANVAS_KIND:
        raise PipelineError(f"{path} is {kind}: a Canvas file needs Canvas' ids, from Canvas' gradebook export")
    if lms == "moodle" and kind != MOODLE_KIND:
        raise PipelineError(f"{path} is {kind}: a Moodle file needs Moodle's accounts, from its participants export")
    roster = _from_export(path, kind, header, raw, graded)
    if lms == "moodle" and key not in roster.mapping:
        column = next(theirs for theirs, ours in MOODLE_EXPORT.items() if ours == key)
        raise PipelineError(
            f"the participants export {path} has no {column!r} column for --key {key}; add it to the user "
            "identity fields Moodle shows (Site administration > Users > Permissions > User policies), or use "
            "--key email"
        )
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

    The format is the one Instructure's guide "How do I import grades in the Gradebook?"
    (https://community.instructure.com/en/kb/articles/660862-how-do-i-import-grades-in-the-gradebook,
    formerly https://community.canvaslms.com/t5/Instructor-Guide/How-do-I-import-grades-in-the-Gradebook/ta-p/807)
    describes: the columns ``Student, ID, SIS User ID, SIS Login ID, Section`` in this order, then one column
    per assignment; a second row ``Points Possible``; UTF-8. A roster student without a submission gets an
    empty cell (no grade: the LMS's missing-submission policy or the instructor decides, not a zero).

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
    """Write Moodle's grade import CSV: the columns ``key`` (``email``/``username``) and ``column``.

    As Moodle's "Grade import" page (https://docs.moodle.org/en/Grade_import) describes it: any header row;
    on the preview page the instructor maps the key column (``Map from``: ``email``/``username``, ``Map to``:
    ``useremail``/``username``) and the grade column to a grade item. Moodle's importer
    (``grade/import/csv/classes/load_data.php``) reads an empty cell as "no grade" and aborts the whole
    import at a row whose user it cannot find, hence a roster of the Moodle course's own accounts.
    """
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
    roster: Roster | None = None

    def lines(self) -> list[str]:
        """The lines ``course export`` prints."""
        head = self.roster.lines() if self.roster else []
        head += [f"wrote {self.path} ({self.students} roster students)"] if self.path else []
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
        roster: the LMS's export or a roster CSV (:func:`load_roster`); required for
            ``canvas`` and ``moodle``.
        key: Moodle: the roster column accounts are matched on, one of :data:`MOODLE_KEYS`.
        lms_assignment: Canvas: the assignment id to update (else Canvas creates an assignment);
            Moodle: the grade column's title (else the assignment's name).

    Raises:
        PipelineError: for a missing or bad roster, an unknown format or key, a bad Canvas id, or a
            gradebook without ``assignment``.
    """
    required = required_columns(lms, key)
    if roster is None:
        raise PipelineError(
            f"--format {lms} needs --roster: the LMS's export (Canvas' gradebook export, Moodle's participants "
            f"export) or a CSV with the columns {', '.join(required)}"
        )
    if lms == "canvas":
        canvas_column(assignment, lms_assignment)  # a bad id fails before the gradebook is read
    totals = read_totals(assignment, sources)
    loaded = load_roster(roster, lms, key, set(totals.students))
    students = loaded.rows
    path = None
    if lms != "csv":
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{assignment}_{lms}.csv"
        if lms == "canvas":
            write_canvas(path, totals, students, assignment, lms_assignment)
        else:
            write_moodle(path, totals, students, key, lms_assignment or assignment)
    return LmsExport(path, len(students), reconcile(totals, students), loaded)
