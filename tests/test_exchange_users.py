"""The students' loop with real accounts: a grader and two students who are different ordinary users.

As on JupyterHub, the grader account releases homework 1 to nbgrader's exchange and runs ``course
watch``; each student fetches, submits and fetches feedback with nbgrader's own commands, as
themselves, in their own home folder. The exchange keeps nbgrader's permissions: a student can
submit but not list the submissions, and fetches only their own feedback.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from accounts import GRADER, OTHER_STUDENT, STUDENT, THIRD_STUDENT, run_as, shared_folder, user

from autograder import course

pytestmark = pytest.mark.slow(seconds=150)
ASSIGNMENT = "hw1_vae"
COURSE = "vae101"
NB5 = "05_other_environment.ipynb"


def _new_folder(who) -> Path:
    """A new folder in ``who``'s home, owned by them."""
    folder = Path(tempfile.mkdtemp(prefix="course-", dir=who.home))
    os.chown(folder, who.uid, who.gid)
    return folder


@pytest.fixture(scope="module")
def loop(installation):
    """Release, one student's fetch and submit, the grader's ``course watch --once``, the feedback fetched."""
    grader, student, other, attacker = user(GRADER), user(STUDENT), user(OTHER_STUDENT), user(THIRD_STUDENT)
    bin_dir = installation / ".venv" / "bin"
    site = shared_folder("course-hub-", owner=grader)
    exchange = site / "exchange"
    answers = shared_folder("course-answers-")  # the answers student A types, readable by A
    (answers / NB5).write_bytes((course.source_dir(ASSIGNMENT) / NB5).read_bytes())
    os.chmod(answers / NB5, 0o644)
    on_exchange = ["--exchange", str(exchange), "--course-id", COURSE]
    course_command = str(bin_dir / "course")
    runs = _new_folder(grader)
    released = run_as(grader, [course_command, "release", ASSIGNMENT, "--out", str(runs / "hw1"), *on_exchange])

    # each student works in a new folder of their home (their home itself is private, mode 0700)
    work = {who.name: _new_folder(who) for who in (student, other, attacker)}

    def nbgrader(who, command: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(bin_dir / "nbgrader"), command, ASSIGNMENT, f"--course={COURSE}", f"--Exchange.root={exchange}"]
        return run_as(who, argv, cwd=work[who.name], env={"JUPYTER_PLATFORM_DIRS": "1"}, check=check)

    def fetch_notebook_5(who) -> None:
        nbgrader(who, "fetch_assignment")
        for name in course.notebook_names(ASSIGNMENT):
            if name != NB5:  # notebook 05 alone grades fastest; the others are reported missing
                run_as(who, ["rm", str(work[who.name] / ASSIGNMENT / name)])

    fetch_notebook_5(student)
    run_as(student, ["cp", str(answers / NB5), str(work[student.name] / ASSIGNMENT / NB5)])
    nbgrader(student, "submit")
    # the attacker submits, then turns its notebook into a link to the course's source (the solutions,
    # which only the grader can read) and adds a FIFO, knowing its submission's name
    fetch_notebook_5(attacker)
    nbgrader(attacker, "submit")
    (inbound,) = [p for p in (exchange / COURSE / "inbound").iterdir() if p.name.startswith(THIRD_STUDENT)]
    solutions = runs / "hw1" / "course" / "source" / ASSIGNMENT / NB5
    run_as(attacker, ["ln", "-sf", str(solutions), str(inbound / NB5)])
    run_as(attacker, ["mkfifo", str(inbound / "frames.npz")])
    limits = ["--once", "--cell-timeout", "60", "--timeout", "300", "--interval", "0.5"]
    watch = [course_command, "watch", ASSIGNMENT, "--out", str(runs / "watch"), *on_exchange, *limits]
    watched = run_as(grader, watch)
    fetched = nbgrader(student, "fetch_feedback")
    return {
        "grader": grader,
        "student": student,
        "other": other,
        "exchange": exchange / COURSE,
        "work": work,
        "runs": runs,
        "attacker": attacker,
        "nbgrader": nbgrader,
        "log": released.stdout + watched.stdout + fetched.stdout,
    }


def test_the_student_fetches_feedback_graded_by_the_grader_account(loop):
    """Does the student fetch, as themselves, the feedback that ``course watch`` graded and released as the
    grader account, with notebook 05's full score?"""
    pages = sorted((loop["work"][STUDENT] / ASSIGNMENT / "feedback").glob("*/*.html"))
    assert [p.name for p in pages] == ["05_other_environment.html"], loop["log"]
    assert pages[0].stat().st_uid == loop["student"].uid
    grades = (loop["runs"] / "watch" / "grades.csv").read_text()
    assert f"{STUDENT},05_other_environment,6.0,8.0" in grades, grades  # 6 autograded, 2 graded by hand


def test_the_exchange_has_nbgraders_permissions(loop):
    """Can students write the inbound folder but not list it, read the outbound one, and only pass through
    the feedback folder; does the inbound folder keep one student from removing another's submission?"""
    modes = {name: (loop["exchange"] / name).stat().st_mode for name in ("inbound", "outbound", "feedback")}
    assert modes["inbound"] & 0o007 == 0o003 and modes["inbound"] & 0o1000, oct(modes["inbound"])
    assert modes["outbound"] & 0o007 == 0o005 and modes["feedback"] & 0o007 == 0o001


def test_a_second_student_reads_nothing_of_the_first(loop):
    """Can another student list the submissions or the feedback, read the first student's files, or fetch
    their feedback? (nbgrader hides a submission behind its name, which only a listing would give.)"""
    other = loop["other"]
    for folder in ("inbound", "feedback"):
        listed = run_as(other, ["ls", str(loop["exchange"] / folder)], check=False)
        assert listed.returncode != 0 and "Permission denied" in listed.stderr, listed
    read = run_as(other, ["cat", str(loop["work"][STUDENT] / ASSIGNMENT / NB5)], check=False)
    assert read.returncode != 0 and "Permission denied" in read.stderr
    submitted = next(p for p in (loop["exchange"] / "inbound").iterdir() if p.name.startswith(STUDENT))
    removed = run_as(other, ["rm", "-rf", str(submitted)], check=False)
    assert removed.returncode != 0 and submitted.exists()
    loop["nbgrader"](other, "fetch_feedback", check=False)
    assert not list(loop["work"][OTHER_STUDENT].glob(f"{ASSIGNMENT}/feedback/*/*.html"))
    graded = run_as(other, ["ls", str(loop["runs"] / "watch")], check=False)
    assert graded.returncode != 0 and "Permission denied" in graded.stderr


def test_links_in_a_submission_are_refused_at_collect(loop):
    """Is a submission whose notebook became a link to the course's solutions (which the grader could
    read and the student could not), with a FIFO beside it, collected without following the link or
    opening the FIFO: zero points, the refusal on the attacker's line of the report, the watcher done?"""
    grades = (loop["runs"] / "watch" / "grades.csv").read_text()
    assert f"{THIRD_STUDENT},05_other_environment,0.0,8.0" in grades, grades
    collected = loop["runs"] / "watch" / "course" / "collected" / THIRD_STUDENT / ASSIGNMENT
    assert not (collected / NB5).exists() and not (collected / "frames.npz").exists()
    report = (loop["runs"] / "watch" / "report.txt").read_text().splitlines()
    (line,) = [x for x in report if x.startswith(THIRD_STUDENT)]
    assert "05_other_environment.ipynb is a symbolic link; it was refused when collected" in line, line
    assert "frames.npz is a FIFO (named pipe); it was refused when collected" in line, line
