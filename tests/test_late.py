"""Deadlines, extensions and late work, on nbgrader's own gradebook, plugin and autograde.

The clock is the test's: every ``timestamp.txt`` is written relative to a due date set here, in the
format nbgrader's ``collect`` writes (``%Y-%m-%d %H:%M:%S.%f %Z``), and read back the way nbgrader's
autograde reads it. One submission (homework 2's notebook 01, the reference answers) is graded end to
end through ``course release --due`` and ``course autograde``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import AssignLatePenalties
from traitlets.config import Config, PyFileConfigLoader

from autograder import cli, course, deadlines
from autograder.deadlines import annotate_feedback, course_gradebooks, lateness, parse_due, set_due, spread_due
from autograder.late import LatePenalty

pytestmark = pytest.mark.slow(seconds=90)

ASSIGNMENT = "hw2_world_models"
NB1 = "01_data_and_conv_vae.ipynb"
#: The due date every test uses: 2027-02-01 23:59 in Los Angeles (PST, UTC-8).
DUE_TEXT = "2027-02-01 23:59 America/Los_Angeles"
DUE = dt.datetime(2027, 2, 2, 7, 59)  # the same instant, naive UTC as nbgrader stores it
#: nbgrader's ``Exchange.timestamp_format``, as its ``collect`` writes ``timestamp.txt``.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"


def write_timestamp(folder: Path, when: dt.datetime) -> Path:
    """A ``timestamp.txt`` for the (naive UTC) instant ``when``, as nbgrader's collect writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "timestamp.txt"
    path.write_text(when.replace(tzinfo=dt.UTC).strftime(TIMESTAMP_FORMAT))
    return path


def course_config() -> Config:
    """The course's nbgrader configuration, loaded as nbgrader loads it."""
    return PyFileConfigLoader("nbgrader_config.py", path=str(course.ASSIGNMENTS)).load_config()


# ------------------------------------------------------------------ due dates


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        (DUE_TEXT, DUE),
        ("2027-07-01 23:59 America/Los_Angeles", dt.datetime(2027, 7, 2, 6, 59)),  # PDT, UTC-7
        ("2027-02-01 23:59:30 UTC", dt.datetime(2027, 2, 1, 23, 59, 30)),
        ("2027-02-02 09:00 Europe/Berlin", dt.datetime(2027, 2, 2, 8, 0)),
    ],
)
def test_due_date_is_stored_as_naive_utc(text, utc):
    """Is a due date in a named zone turned into the same instant in naive UTC, daylight saving included?"""
    assert parse_due(text) == utc


@pytest.mark.parametrize("text", ["2027-02-01", "2027-02-01 23:59 Mars/Olympus", "2027-02-30 23:59 UTC", "friday UTC"])
def test_bad_due_date_is_refused_with_an_example(text, capsys):
    """Does ``course release --due`` refuse a date or zone it cannot read, showing an example, before releasing?"""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["release", ASSIGNMENT, "--out", "/nonexistent/never-written", "--due", text])
    assert exit_.value.code == 2
    assert deadlines.DUE_EXAMPLE in capsys.readouterr().err


# ------------------------------------------------------------------ the late policy


@pytest.mark.parametrize(
    ("seconds_late", "penalty"),
    [
        (1, 1.5),  # a started day
        (24 * 3600, 1.5),  # exactly one day
        (24 * 3600 + 1, 3.0),  # into the second day
        (9.5 * 24 * 3600, 15.0),  # ten started days: the whole score
        (30 * 24 * 3600, 15.0),  # never more than the score
    ],
)
def test_percent_per_day_takes_a_share_per_started_day(seconds_late, penalty):
    """Does ``percent_per_day`` take 10 % of the score per started day late, at most the score?"""
    config = Config({"LatePenalty": {"penalty_method": "percent_per_day", "percent_per_day": 10.0}})
    assert LatePenalty(config=config).late_submission_penalty("s", 15.0, seconds_late) == pytest.approx(penalty)


def test_nbgraders_own_methods_are_kept():
    """Do nbgrader's methods ``none`` (no penalty) and ``zero`` (the whole score) still work, configured
    under nbgrader's own class name?"""
    none = LatePenalty(config=Config({"LateSubmissionPlugin": {"penalty_method": "none"}}))
    zero = LatePenalty(config=Config({"LateSubmissionPlugin": {"penalty_method": "zero"}}))
    assert none.late_submission_penalty("s", 15.0, 3600) is None
    assert zero.late_submission_penalty("s", 15.0, 3600) == 15.0


def test_an_unknown_method_or_share_is_refused():
    """Is a method nbgrader's plugin does not know, or a share above 100 %, refused?"""
    from traitlets import TraitError

    with pytest.raises(TraitError):
        LatePenalty(config=Config({"LatePenalty": {"penalty_method": "half"}}))
    with pytest.raises(TraitError):
        LatePenalty(config=Config({"LatePenalty": {"percent_per_day": 150.0}}))


def test_course_config_gives_nbgrader_the_plugin():
    """Does nbgrader's AssignLatePenalties, configured by the course's nbgrader_config.py, use the
    course's plugin with the percent-per-day method?"""
    step = AssignLatePenalties(config=course_config())
    step.init_plugin()
    assert isinstance(step.plugin_inst, LatePenalty)
    assert step.plugin_inst.penalty_method == "percent_per_day"
    assert step.plugin_inst.late_submission_penalty("s", 10.0, 1) > 0


# ------------------------------------------------------------------ lateness and extensions in the gradebook


@pytest.fixture(scope="module")
def gradebooks(tmp_path_factory) -> Path:
    """A course root with nbgrader gradebooks of an assignment ``hw`` with one notebook:
    ``gradebook.db`` and a worker's ``gradebook_0.db``, due :data:`DUE` (made once: nbgrader runs
    alembic to make each)."""
    root = tmp_path_factory.mktemp("gradebooks")
    for name in ("gradebook.db", "gradebook_0.db"):
        with Gradebook(f"sqlite:///{root / name}", course.COURSE_ID) as gb:
            gb.add_assignment("hw")
            gb.add_notebook("nb", "hw")
    set_due("hw", parse_due(DUE_TEXT), root, ["gradebook.db", "gradebook_0.db"])
    return root


@pytest.fixture
def run(gradebooks, tmp_path) -> Path:
    """A run's folder (``--out``) whose course root holds fresh copies of :func:`gradebooks`."""
    shutil.copytree(gradebooks, tmp_path / "run" / "course")
    return tmp_path / "run"


def record(root: Path, gradebook: str, student: str, submitted: dt.datetime) -> float:
    """Record ``student``'s submission of ``hw`` made at ``submitted`` as nbgrader's autograde does
    (``timestamp.txt`` read by nbgrader's CourseDirectory); return nbgrader's seconds late."""
    folder = root / "submitted" / student / "hw"
    write_timestamp(folder, submitted)
    timestamp = CourseDirectory().get_existing_timestamp(str(folder))
    with Gradebook(f"sqlite:///{root / gradebook}", course.COURSE_ID) as gb:
        gb.update_or_create_student(student)
        return gb.update_or_create_submission("hw", student, timestamp=timestamp).total_seconds_late


def test_submission_before_the_due_date_is_on_time(run):
    """Is a submission a minute before the due date not late, and one 2.5 h after it late by 2.5 h?"""
    root = run / "course"
    assert record(root, "gradebook.db", "early", DUE - dt.timedelta(minutes=1)) == 0
    assert record(root, "gradebook.db", "late", DUE + dt.timedelta(hours=2.5)) == 2.5 * 3600


def test_extension_makes_a_late_submission_on_time(run, capsys):
    """Does ``course extend`` give the extension in every gradebook of the run (nbgrader's grant_extension),
    so that the submission 2.5 h after the due date is on time with 3 h more, and late again without?"""
    root = run / "course"
    assert cli.main(["extend", "bob", "hw", "--hours", "3", "--out", str(run), "--new-student"]) == 0
    assert "gradebook.db, gradebook_0.db" in capsys.readouterr().out
    for book in course_gradebooks(root):  # granted before bob submitted: held by his (empty) submission
        assert record(root, book, "bob", DUE + dt.timedelta(hours=2.5)) == 0
    assert cli.main(["extend", "bob", "hw", "--hours", "2", "--out", str(run)]) == 0  # replaces, as in nbgrader
    with Gradebook(f"sqlite:///{root / 'gradebook_0.db'}", course.COURSE_ID) as gb:
        sub = gb.find_submission("hw", "bob")
        assert sub.extension == dt.timedelta(hours=2)
        assert sub.total_seconds_late == 0.5 * 3600
    assert cli.main(["extend", "bob", "hw", "--hours", "0", "--out", str(run)]) == 0
    assert record(root, "gradebook.db", "bob", DUE + dt.timedelta(hours=2.5)) == 2.5 * 3600


def test_extension_goes_to_a_shared_gradebook(run, tmp_path):
    """Does ``course extend --db URL`` write to that gradebook only?"""
    shared = shutil.copy(run / "course" / "gradebook_0.db", tmp_path / "shared.db")
    url = f"sqlite:///{shared}"
    (run / "course" / "gradebook_0.db").unlink()
    assert cli.main(["extend", "carol", "hw", "--hours", "24", "--out", str(run), "--db", url, "--new-student"]) == 0
    with Gradebook(url, course.COURSE_ID) as gb:
        assert [(s.student_id, s.extension) for s in gb.find_assignment("hw").submissions] == [
            ("carol", dt.timedelta(hours=24))
        ]
    with Gradebook(f"sqlite:///{run / 'course' / 'gradebook.db'}", course.COURSE_ID) as gb:
        assert [s.student_id for s in gb.find_assignment("hw").submissions] == []


def test_extension_of_an_unknown_assignment_or_run_is_refused(run, tmp_path, capsys):
    """Does ``course extend`` say what is missing when the run has no gradebook or the assignment is not in it?"""
    assert cli.main(["extend", "bob", "hw", "--hours", "3", "--out", str(tmp_path / "empty")]) == 2
    assert "no gradebook" in capsys.readouterr().err
    assert cli.main(["extend", "bob", "nope", "--hours", "3", "--out", str(run)]) == 2
    assert "holds no assignment 'nope'" in capsys.readouterr().err
    assert cli.main(["extend", "bob", "hw", "--hours", "-1", "--out", str(run)]) == 2
    assert "expected a number of hours >= 0" in capsys.readouterr().err


def test_extension_of_a_student_nobody_knows_is_refused(run, capsys):
    """Is ``course extend`` of a student no gradebook knows (a typo) an error that lists the close names and
    changes nothing, while --new-student enters a student who has not submitted yet?"""
    root = run / "course"
    record(root, "gradebook.db", "alice", DUE)
    before = {book: (root / book).read_bytes() for book in course_gradebooks(root)}
    assert cli.main(["extend", "alcie", "hw", "--hours", "3", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no gradebook of this course knows a student 'alcie'" in err and "alice" in err and "--new-student" in err
    assert {book: (root / book).read_bytes() for book in course_gradebooks(root)} == before
    assert cli.main(["extend", "alice", "hw", "--hours", "3", "--out", str(run)]) == 0


def test_workers_gradebooks_get_the_due_date(run):
    """Does a due date set later in ``gradebook.db`` reach the workers' gradebooks (the watcher keeps them)?"""
    root = run / "course"
    later = DUE + dt.timedelta(days=1)
    set_due("hw", later, root, ["gradebook.db"])
    assert spread_due("hw", root, course_gradebooks(root)) == later
    assert deadlines.due_date("hw", f"sqlite:///{root / 'gradebook_0.db'}") == later


def feedback_page(root: Path, student: str) -> Path:
    """A feedback page as nbgrader writes it (the part that matters: its ``<body>``)."""
    page = course.step_dir(root, "feedback", student, "hw") / "nb.html"
    page.parent.mkdir(parents=True)
    page.write_text("<!DOCTYPE html>\n<html><head></head>\n<body>\n<h4>nb (Score: 13.5 / 15)</h4></body></html>\n")
    return page


def test_feedback_says_how_late_and_what_it_cost(run):
    """Does the feedback page of a late submission say the due date, how late it was and the penalty,
    once, however often it is annotated?"""
    root, url = run / "course", f"sqlite:///{run / 'course' / 'gradebook.db'}"
    record(root, "gradebook.db", "dave", DUE + dt.timedelta(hours=26, minutes=5))
    with Gradebook(url, course.COURSE_ID) as gb:
        gb.find_submission_notebook("nb", "hw", "dave").late_submission_penalty = 3.0
        gb.db.commit()
    page = feedback_page(root, "dave")
    assert annotate_feedback("hw", root, "dave", url) == [page]
    assert annotate_feedback("hw", root, "dave", url) == []
    text = page.read_text()
    assert text.count(deadlines.NOTE_ID) == 1
    assert "Due 2027-02-02 07:59 UTC; submitted 2027-02-03 10:04 UTC" in text
    assert "late by 1 day 2 h 5 min" in text and "late penalty on this notebook: 3 points" in text
    assert lateness("hw", "dave", url).penalties == {"nb": 3.0}


def test_feedback_of_an_on_time_submission_says_so(run):
    """Does the feedback of a submission on time (thanks to an extension) say so, and name the extension?"""
    root = run / "course"
    assert cli.main(["extend", "erin", "hw", "--hours", "48", "--out", str(run), "--new-student"]) == 0
    record(root, "gradebook.db", "erin", DUE + dt.timedelta(hours=30))
    page = feedback_page(root, "erin")
    annotate_feedback("hw", root, "erin", f"sqlite:///{root / 'gradebook.db'}")
    text = page.read_text()
    assert "with your extension of 2 days" in text and "on time" in text and "late by" not in text


# ------------------------------------------------------------------ end to end, through nbgrader


@pytest.fixture(scope="module")
def graded_late(tmp_path_factory) -> dict:
    """``course release --due`` then ``course autograde`` (same ``--out``) of one submission, homework 2's
    notebook 01 with the reference answers, made 1 day 2 h after the due date."""
    out = tmp_path_factory.mktemp("late")
    assert cli.main(["release", ASSIGNMENT, "--out", str(out), "--due", DUE_TEXT]) == 0
    folder = out / "submissions" / "late_student" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / NB1).write_bytes((course.source_dir(ASSIGNMENT) / NB1).read_bytes())
    write_timestamp(folder, DUE + dt.timedelta(days=1, hours=2))
    code = cli.main(["autograde", ASSIGNMENT, str(out / "submissions"), "--out", str(out), "--cell-timeout", "120"])
    assert code == 0
    return {"out": out, "url": f"sqlite:///{out / 'course' / 'gradebook.db'}"}


def test_autograde_records_how_late_and_the_configured_penalty(graded_late):
    """Does nbgrader's autograde record the submission as 26 h late against the due date of
    ``course release --due``, and take the penalty the course's late policy sets for 2 started days?"""
    with Gradebook(graded_late["url"], course.COURSE_ID) as gb:
        sub = gb.find_submission(ASSIGNMENT, "late_student")
        assert sub.assignment.duedate == DUE
        assert sub.total_seconds_late == 26 * 3600
        nb = gb.find_submission_notebook(Path(NB1).stem, ASSIGNMENT, "late_student")
        score, penalty = nb.score, nb.late_submission_penalty
    assert score > 0
    policy = LatePenalty(config=course_config())
    assert penalty == pytest.approx(policy.late_submission_penalty("late_student", score, 26 * 3600))
    assert 0 < penalty < score


def test_feedback_of_the_late_submission_says_so(graded_late):
    """Does the student's feedback page say the submission was 1 day 2 h late and what it cost, beside
    nbgrader's own penalty line?"""
    page = graded_late["out"] / "feedback" / "late_student" / f"{Path(NB1).stem}.html"
    text = page.read_text()
    assert "late by 1 day 2 h</strong>" in text
    assert "Late submission penalty" in text  # nbgrader's template
    with Gradebook(graded_late["url"], course.COURSE_ID) as gb:
        penalty = gb.find_submission_notebook(Path(NB1).stem, ASSIGNMENT, "late_student").late_submission_penalty
    assert f"late penalty on this notebook: {penalty:g} points" in text


def test_kit_readme_names_the_due_date(graded_late):
    """Does the student kit's README of a release with ``--due`` give the due date?"""
    import zipfile

    with zipfile.ZipFile(graded_late["out"] / f"{ASSIGNMENT}_student_kit.zip") as kit:
        readme = kit.read(f"{ASSIGNMENT}/README.md").decode()
    assert "Due: 2027-02-02 07:59 UTC" in readme


def test_report_term_and_canvas_give_grades_csv_total_after_the_penalty(graded_late, tmp_path):
    """For a submission graded late through nbgrader, do the class report, the term page and the Canvas
    file all give grades.csv's total (score less late penalty), and the report say how late it was?"""
    import csv
    import json

    out = graded_late["out"]
    with (out / "grades.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["student_id"] == "late_student"]
    total = sum(float(r["score"]) - float(r["late_penalty"]) for r in rows)
    assert sum(float(r["late_penalty"]) for r in rows) > 0
    assert cli.main(["report", ASSIGNMENT, "--out", str(out), "--dest", str(tmp_path / "report")]) == 0
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    (row,) = summary["per_student"]
    assert row["total"] == pytest.approx(total) and row["penalty"] > 0
    assert (row["seconds_late"], row["days_late"]) == (26 * 3600, 2)
    assert summary["lateness"]["late"] == 1
    assert "1 day 2 h" in (tmp_path / "report" / "index.html").read_text()
    assert cli.main(["report", "--term", "--out", str(out), "--dest", str(tmp_path / "term")]) == 0
    with (tmp_path / "term" / "term.csv").open() as f:
        (term,) = list(csv.DictReader(f))
    assert float(term[ASSIGNMENT]) == pytest.approx(total, abs=0.006) and term["late_days"] == "2"
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name,canvas_id\nlate_student,\"Late, Lou\",4711\n")
    assert cli.main(["export", ASSIGNMENT, "--out", str(out), "--format", "canvas", "--roster", str(roster)]) == 0
    with (out / f"{ASSIGNMENT}_canvas.csv").open() as f:
        canvas = list(csv.reader(f))
    assert canvas[2][-1] == f"{total:.2f}".rstrip("0").rstrip(".")
