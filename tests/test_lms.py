"""Grades into the LMS (``course export --format canvas|moodle``), from real nbgrader gradebooks.

The gradebooks are built with nbgrader's API (an assignment, a notebook, grade cells, students and
their submissions with autograded and manual scores) rather than by grading, so each test takes a
fraction of a second; the totals are nbgrader's own (:attr:`nbgrader.api.SubmittedAssignment.score`).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from autograder import cli, lms
from autograder.course import COURSE_ID, PipelineError

ASSIGNMENT = "hw1_vae"
NOTEBOOK = "01_autoencoder_and_vae"
#: grade id -> (max points, cell type): 12 points possible.
CELLS = {"a1_encoder": (4.0, "code"), "a2_elbo": (6.0, "code"), "w1_beta": (2.0, "markdown")}
#: student -> grade id -> (autograder's score, manual score); None: not set.
SCORES = {
    "alice": {"a1_encoder": (4.0, None), "a2_elbo": (3.0, None), "w1_beta": (None, 2.0)},  # 9, all graded
    "bob": {"a1_encoder": (2.0, None), "a2_elbo": (6.0, None), "w1_beta": (None, None)},  # 8, w1 still to grade
    "carol": {"a1_encoder": (0.0, None), "a2_elbo": (1.5, None), "w1_beta": (None, 0.0)},  # 1.5
}
ROSTER = {
    "alice": {"name": "Doe, Alice", "canvas_id": "101", "sis_user_id": "S1", "sis_login_id": "adoe",
              "section": "Sec 1", "email": "alice@uni.example", "username": "adoe"},
    "bob": {"name": "Roe, Bob", "canvas_id": "102", "sis_user_id": "S2", "sis_login_id": "broe",
            "section": "Sec 2", "email": "bob@uni.example", "username": "broe"},
    "carol": {"name": "Poe, Carol", "canvas_id": "103", "sis_user_id": "", "sis_login_id": "cpoe",
              "section": "Sec 1", "email": "carol@uni.example", "username": "cpoe"},
    "dave": {"name": "Loe, Dave", "canvas_id": "104", "sis_user_id": "S4", "sis_login_id": "dloe",
             "section": "Sec 2", "email": "dave@uni.example", "username": "dloe"},
}  # fmt: skip


def build_gradebook(url: str, students: list[str]) -> None:
    """Enter the assignment and the submissions of ``students`` (scores from :data:`SCORES`) at ``url``."""
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        if not any(a.name == ASSIGNMENT for a in gb.assignments):
            gb.add_assignment(ASSIGNMENT)
            gb.add_notebook(NOTEBOOK, ASSIGNMENT)
            for grade_id, (max_score, cell_type) in CELLS.items():
                gb.add_grade_cell(grade_id, NOTEBOOK, ASSIGNMENT, max_score=max_score, cell_type=cell_type)
        for student in students:
            gb.add_student(student)
            gb.add_submission(ASSIGNMENT, student)  # a Grade per grade cell, needing a manual grade
            for grade_id, (auto, manual) in SCORES[student].items():
                grade = gb.find_grade(grade_id, NOTEBOOK, ASSIGNMENT, student)
                grade.auto_score = auto
                grade.manual_score = manual
                grade.needs_manual_grade = auto is None and manual is None  # as nbgrader leaves a written answer
        gb.db.commit()


def set_manual_score(url: str, student: str, grade_id: str, score: float, extra_credit: float | None = None) -> None:
    """Grade a cell by hand, as the formgrader does (a manual score overrides the autograder's)."""
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        grade = gb.find_grade(grade_id, NOTEBOOK, ASSIGNMENT, student)
        grade.manual_score = score
        grade.extra_credit = extra_credit
        grade.needs_manual_grade = False
        gb.db.commit()


@pytest.fixture(scope="module")
def graded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graded run's OUT folder: two workers' sqlite gradebooks and ``course/gradebooks.json``.

    Built once (a new nbgrader gradebook takes seconds: nbgrader asks alembic for its schema version).
    """
    out = tmp_path_factory.mktemp("run")
    (out / "course").mkdir()
    books = {"gradebook_1.db": ["alice", "bob"], "gradebook_2.db": ["carol"]}
    for name, students in books.items():
        build_gradebook(f"sqlite:///{out / 'course' / name}", students)
    (out / "course" / "gradebooks.json").write_text(json.dumps(books))
    return out


@pytest.fixture
def run(graded_run: Path, tmp_path: Path) -> Path:
    """A copy of :func:`graded_run` for one test to export into and grade by hand."""
    return Path(shutil.copytree(graded_run, tmp_path / "out"))


def write_roster(path: Path, students: list[str], columns: list[str]) -> Path:
    """A roster CSV with these ``columns`` for ``students`` (values from :data:`ROSTER`)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for student in students:
            writer.writerow([student if c == "student_id" else ROSTER[student][c] for c in columns])
    return path


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


CANVAS_COLUMNS = ["student_id", "name", "canvas_id", "sis_user_id", "sis_login_id", "section"]


def export(out: Path, *options: str) -> int:
    return cli.main(["export", ASSIGNMENT, "--out", str(out), *options])


def test_canvas_file_has_canvas_header_points_possible_and_totals(run, tmp_path, capsys):
    """Does the Canvas file have Canvas' header, the Points Possible row and each student's total?"""
    roster = write_roster(tmp_path / "roster.csv", ["bob", "alice", "carol"], CANVAS_COLUMNS)
    assert export(run, "--format", "canvas", "--roster", str(roster), "--lms-assignment", "12345") == 0
    rows = read_rows(run / f"{ASSIGNMENT}_canvas.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "hw1_vae (12345)"]
    assert rows[1] == ["Points Possible", "", "", "", "", "12"]
    assert rows[2:] == [  # the roster's order; a name with a comma survives the quoting
        ["Roe, Bob", "102", "S2", "broe", "Sec 2", "8"],
        ["Doe, Alice", "101", "S1", "adoe", "Sec 1", "9"],
        ["Poe, Carol", "103", "", "cpoe", "Sec 1", "1.5"],
    ]
    (manual,) = [line for line in capsys.readouterr().out.splitlines() if "to grade by hand" in line]
    assert manual.startswith("warning: 1 submission(s)") and manual.endswith(": bob")  # w1 not graded yet


def test_canvas_column_without_an_id_is_the_assignment_name(run, tmp_path):
    """Without --lms-assignment, is the column titled by the assignment alone (Canvas creates it)?"""
    roster = write_roster(tmp_path / "roster.csv", ["alice", "bob", "carol"], ["student_id", "name", "canvas_id"])
    assert export(run, "--format", "canvas", "--roster", str(roster)) == 0
    rows = read_rows(run / f"{ASSIGNMENT}_canvas.csv")
    assert rows[0][-1] == ASSIGNMENT
    assert rows[2] == ["Doe, Alice", "101", "", "", "", "9"]  # optional SIS and section columns left empty


@pytest.mark.parametrize("key", ["email", "username"])
def test_moodle_file_is_keyed_by_email_or_username(run, tmp_path, key):
    """Is the Moodle file one key column (email or username) and one grade column?"""
    roster = write_roster(tmp_path / "roster.csv", ["alice", "bob", "carol"], ["student_id", key])
    assert export(run, "--format", "moodle", "--key", key, "--roster", str(roster)) == 0
    rows = read_rows(run / f"{ASSIGNMENT}_moodle.csv")
    assert rows == [
        [key, ASSIGNMENT],
        [ROSTER["alice"][key], "9"],
        [ROSTER["bob"][key], "8"],
        [ROSTER["carol"][key], "1.5"],
    ]


def test_manual_grade_in_the_formgrader_changes_the_exported_total(run, tmp_path, capsys):
    """Does a manual grade (5 + 0.5 extra credit over the autograder's 3) change the exported total?"""
    roster = write_roster(tmp_path / "roster.csv", ["alice", "bob", "carol"], ["student_id", "email"])
    csv_file = run / f"{ASSIGNMENT}_moodle.csv"
    assert export(run, "--format", "moodle", "--roster", str(roster)) == 0
    assert read_rows(csv_file)[1:3] == [["alice@uni.example", "9"], ["bob@uni.example", "8"]]
    capsys.readouterr()
    set_manual_score(f"sqlite:///{run / 'course' / 'gradebook_1.db'}", "alice", "a2_elbo", 5.0, extra_credit=0.5)
    set_manual_score(f"sqlite:///{run / 'course' / 'gradebook_1.db'}", "bob", "w1_beta", 1.0)
    assert export(run, "--format", "moodle", "--roster", str(roster)) == 0
    assert read_rows(csv_file)[1:3] == [["alice@uni.example", "11.5"], ["bob@uni.example", "9"]]
    assert "by hand" not in capsys.readouterr().out  # bob's written answer is graded now


def test_students_missing_from_either_side_are_reported(run, tmp_path, capsys):
    """Are a graded student missing from the roster (exit 1) and a roster student without a submission named?"""
    roster = write_roster(tmp_path / "roster.csv", ["alice", "bob", "dave"], CANVAS_COLUMNS)
    assert export(run, "--format", "canvas", "--roster", str(roster)) == 1
    printed = capsys.readouterr().out
    (error,) = [line for line in printed.splitlines() if line.startswith("error:")]
    assert "not in the roster" in error and error.endswith(": carol")
    (no_submission,) = [line for line in printed.splitlines() if "no submission" in line]
    assert no_submission.startswith("warning:") and no_submission.endswith(": dave")
    rows = read_rows(run / f"{ASSIGNMENT}_canvas.csv")  # written all the same
    assert [r[0] for r in rows[2:]] == ["Doe, Alice", "Roe, Bob", "Loe, Dave"]
    assert rows[-1][-1] == ""  # no submission: no grade, rather than a zero


@pytest.mark.parametrize(
    ("options", "columns", "named"),
    [
        (["--format", "canvas"], ["student_id", "email"], "name, canvas_id"),
        (["--format", "moodle", "--key", "username"], ["student_id", "email"], "username"),
        (["--format", "moodle"], ["id", "email"], "student_id"),
    ],
)
def test_roster_without_the_required_columns_is_a_clear_error(run, tmp_path, capsys, options, columns, named):
    """Is a roster lacking the format's columns refused, naming the missing ones, before anything is written?"""
    roster = tmp_path / "roster.csv"
    roster.write_text(",".join(columns) + "\n" + ",".join(["alice", "alice@uni.example"][: len(columns)]) + "\n")
    assert export(run, *options, "--roster", str(roster)) == 2
    error = capsys.readouterr().err
    assert f"lacks the column(s) {named} " in error and "expected student_id" in error
    assert not list(run.glob("*_canvas.csv")) + list(run.glob("*_moodle.csv"))


def test_bad_rosters_and_ids_are_refused(run, tmp_path, capsys):
    """Are a duplicate student, an empty key, a missing roster and a non-numeric Canvas id refused clearly?"""
    twice = tmp_path / "twice.csv"
    twice.write_text("student_id,email\nalice,a@x\nalice,b@x\n")
    with pytest.raises(PipelineError, match=r"line 3: student 'alice' is listed twice"):
        lms.read_roster(twice, lms.required_columns("moodle"))
    empty = tmp_path / "empty.csv"
    empty.write_text("\ufeffstudent_id,email\nalice,a@x\nbob,\n")  # a spreadsheet's byte-order mark is fine
    with pytest.raises(PipelineError, match=r"line 3: no email"):
        lms.read_roster(empty, lms.required_columns("moodle"))
    assert export(run, "--format", "canvas") == 2
    assert "--format canvas needs --roster" in capsys.readouterr().err
    assert export(run, "--format", "moodle", "--roster", str(tmp_path / "absent.csv")) == 2
    assert "no roster file" in capsys.readouterr().err
    roster = write_roster(tmp_path / "roster.csv", ["alice"], CANVAS_COLUMNS)
    assert export(run, "--format", "canvas", "--roster", str(roster), "--lms-assignment", "hw1") == 2
    assert "is not a Canvas assignment id" in capsys.readouterr().err


def test_csv_format_is_the_gradebook_csvs_and_reconciles_with_a_roster(run, tmp_path, capsys):
    """Does the default format still write grades.csv and cells.csv, reporting roster gaps when given one?"""
    assert export(run) == 0
    with (run / "grades.csv").open() as f:
        scores = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    assert scores == {"alice": 9.0, "bob": 8.0, "carol": 1.5}
    capsys.readouterr()
    roster = write_roster(tmp_path / "roster.csv", ["alice", "bob"], ["student_id"])
    assert export(run, "--roster", str(roster)) == 1
    assert "not exported: carol" in capsys.readouterr().out
    assert not list(run.glob(f"{ASSIGNMENT}_*.csv"))


def test_postgresql_gradebook_exports_for_moodle(postgres, tmp_path, capsys):
    """Does the export read a shared PostgreSQL gradebook (--db), manual grades included?"""
    url = postgres.create_database()
    build_gradebook(url, ["alice", "bob", "carol"])
    set_manual_score(url, "carol", "a1_encoder", 4.0)
    roster = write_roster(tmp_path / "roster.csv", ["carol", "alice", "bob", "dave"], ["student_id", "username"])
    out = tmp_path / "all"
    assert export(out, "--db", url, "--format", "moodle", "--key", "username", "--roster", str(roster)) == 0
    assert read_rows(out / f"{ASSIGNMENT}_moodle.csv") == [
        ["username", ASSIGNMENT],
        ["cpoe", "5.5"],
        ["adoe", "9"],
        ["broe", "8"],
        ["dloe", ""],
    ]
    assert "no submission in the gradebook (grade left empty): dave" in capsys.readouterr().out


# ---------------------------------------------------------------- the LMS's own files as rosters
#: Canvas' Grades > Export for this course, as it comes: a byte-order mark, Canvas' identity columns, an
#: assignment and the total columns, the Manual Posting and Points Possible rows, SIS login ids that are
#: e-mail addresses (the part before @ is the gradebook id), a name Canvas quoted because it starts with
#: "=", dave who never submitted, and Canvas' test student.
CANVAS_EXPORT = [
    ["Student", "ID", "SIS User ID", "SIS Login ID", "Integration ID", "Section", "Quiz 1 (55001)", "Current Score"],
    ["", "", "", "", "", "", "Manual Posting", ""],
    ["    Points Possible", "", "", "", "", "", "10", "(read only)"],
    ["Doe, Alice", "101", "S1", "Alice@uni.example", "", "Sec 1", "7", "70"],
    ["Roe, Bob", "102", "S2", "bob@uni.example", "", "Sec 2", "9", "90"],
    ['="=Poe, Carol"', "103", "", "carol@uni.example", "", "Sec 1", "", ""],
    ["Loe, Dave", "104", "S4", "dave@uni.example", "", "Sec 2", "", ""],
    ["Student, Test", "999", "", "", "", "Sec 1", "", ""],
]


def write_export(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_canvas_gradebook_export_is_a_roster_as_it_comes(run, tmp_path, capsys, delimiter):
    """Is Canvas' own gradebook export taken as the roster as it comes (',' or ';'), the column holding
    the gradebook's ids found and named, its non-student rows skipped, and each student's Canvas
    identity written with their total?"""
    roster = write_export(tmp_path / "Grades-VAE101.csv", CANVAS_EXPORT, delimiter)
    assert export(run, "--format", "canvas", "--roster", str(roster), "--lms-assignment", "12345") == 0
    printed = capsys.readouterr().out
    assert "roster: Canvas gradebook export, 4 students; gradebook ids matched to 'SIS Login ID', the part " in printed
    assert "(3 of 3 graded students)" in printed and "name from 'Student', canvas_id from 'ID'" in printed
    for skipped in ("Points Possible", "Student, Test", "(no name)"):  # the Manual Posting row has no name
        assert f"roster: skipped the row {skipped!r}: not a student" in printed
    rows = read_rows(run / f"{ASSIGNMENT}_canvas.csv")
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "hw1_vae (12345)"]
    assert rows[2:] == [
        ["Doe, Alice", "101", "S1", "Alice@uni.example", "Sec 1", "9"],
        ["Roe, Bob", "102", "S2", "bob@uni.example", "Sec 2", "8"],
        ["=Poe, Carol", "103", "", "carol@uni.example", "Sec 1", "1.5"],
        ["Loe, Dave", "104", "S4", "dave@uni.example", "Sec 2", ""],  # no submission: no grade
    ]
    assert "no submission in the gradebook (grade left empty): dave" in printed


#: Moodle's participants page, all selected, "Download table data as" CSV (English), with Username
#: among the identity fields shown.
MOODLE_EXPORT = [["First name", "Last name", "Username", "Email address"]] + [
    [name.split(", ")[1], name.split(", ")[0], student, ROSTER[student]["email"]]
    for student, name in ((s, ROSTER[s]["name"]) for s in ("alice", "bob", "carol", "dave"))
]


def test_moodle_participants_export_is_a_roster_as_it_comes(run, tmp_path, capsys):
    """Is Moodle's participants export taken as the roster, the gradebook ids found in its Username
    column, and the grades keyed by its e-mail addresses; and is --key username refused, saying how,
    when the export has no Username column?"""
    roster = write_export(tmp_path / "courseid_7_participants.csv", MOODLE_EXPORT)
    assert export(run, "--format", "moodle", "--roster", str(roster)) == 0
    printed = capsys.readouterr().out
    assert "roster: Moodle participants export, 4 students; gradebook ids matched to 'Username', as it is" in printed
    assert read_rows(run / f"{ASSIGNMENT}_moodle.csv") == [
        ["email", ASSIGNMENT],
        ["alice@uni.example", "9"],
        ["bob@uni.example", "8"],
        ["carol@uni.example", "1.5"],
        ["dave@uni.example", ""],
    ]
    no_username = [[c for k, c in enumerate(row) if k != 2] for row in MOODLE_EXPORT]
    without = write_export(tmp_path / "no_username.csv", no_username)
    assert export(run, "--format", "moodle", "--roster", str(without)) == 0  # ids from the e-mail's local part
    assert "matched to 'Email address', the part before @" in capsys.readouterr().out
    assert export(run, "--format", "moodle", "--key", "username", "--roster", str(without)) == 2
    assert "has no 'Username' column for --key username; add it to the user identity fields" in capsys.readouterr().err


def test_an_export_that_names_no_graded_student_or_the_other_lms_is_refused(run, tmp_path, capsys):
    """Is an LMS export whose columns hold none of the gradebook's ids refused, naming the columns
    looked at and example ids, and a Canvas export given for a Moodle file (or the reverse) refused?"""
    strangers = [list(row) for row in CANVAS_EXPORT]
    for k, row in enumerate(strangers[3:7]):  # other login ids; the Canvas ids are numbers anyway
        row[3] = f"u{k}@uni.example"
    roster = write_export(tmp_path / "strangers.csv", strangers)
    assert export(run, "--format", "canvas", "--roster", str(roster)) == 2
    error = capsys.readouterr().err
    assert "no column of the roster" in error and "'SIS Login ID', 'SIS User ID', 'Integration ID', 'ID'" in error
    assert "(e.g. alice, bob, carol)" in error
    canvas = write_export(tmp_path / "canvas.csv", CANVAS_EXPORT)
    assert export(run, "--format", "moodle", "--roster", str(canvas)) == 2
    assert "is Canvas gradebook export: a Moodle file needs Moodle's accounts" in capsys.readouterr().err
    moodle = write_export(tmp_path / "moodle.csv", MOODLE_EXPORT)
    assert export(run, "--format", "canvas", "--roster", str(moodle)) == 2
    assert "is Moodle participants export: a Canvas file needs Canvas' ids" in capsys.readouterr().err
