"""The students' loop through nbgrader's exchange, and ``course watch``: feedback minutes after submitting.

The instructor releases hw1 to a real exchange folder; students fetch it and submit with nbgrader's
own commands (each with a HOME of their own); the watcher collects, grades in the sandbox and
releases feedback, which the students fetch. Submissions hold notebook 05 only (the fastest), so the
other notebooks are reported missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autograder import course, exchange, gradebook, release, watch
from autograder.submissions import replace_answer

pytestmark = pytest.mark.slow(seconds=300)
ASSIGNMENT = "hw1_vae"
COURSE = "vae101"
NB5 = "05_other_environment.ipynb"
SETTINGS = watch.WatchSettings(cell_timeout=40, submission_timeout=240, workers=2, interval=0.5)


def _submit(name: str, tmp: Path, exchange_dir: Path, answer: str | None = None, text: str | None = None) -> None:
    """Fetch hw1 as ``name``, put an answer into notebook 05 (or replace the file by ``text``), submit."""
    home = tmp / "homes" / name
    if not (home / ASSIGNMENT).exists():
        exchange.as_student("fetch_assignment", ASSIGNMENT, name, home, exchange_dir, COURSE)
    for other in (home / ASSIGNMENT).glob("*.ipynb"):
        if other.name != NB5:
            other.unlink()  # grading notebook 05 alone is quicker; the others are reported missing
    notebook = home / ASSIGNMENT / NB5
    if text is not None:
        notebook.write_text(text)
    else:
        notebook.write_bytes((course.source_dir(ASSIGNMENT) / NB5).read_bytes())
        if answer is not None:
            replace_answer(notebook, "a5_collect_other_frames", answer)
    exchange.as_student("submit", ASSIGNMENT, name, home, exchange_dir, COURSE)


def _feedback(name: str, tmp: Path, exchange_dir: Path) -> list[str]:
    """The feedback pages ``name`` fetches, newest submission last."""
    home = tmp / "homes" / name
    exchange.as_student("fetch_feedback", ASSIGNMENT, name, home, exchange_dir, COURSE)
    return [p.read_text() for p in exchange.fetched_feedback(ASSIGNMENT, home)]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exchange")
    exchange_dir = tmp / "exchange"
    paths = release.release(ASSIGNMENT, tmp / "instructor")
    outbound = exchange.release_assignment(ASSIGNMENT, paths["root"], exchange_dir, COURSE)
    assert sorted(p.name for p in outbound.glob("*.ipynb")) == course.notebook_names(ASSIGNMENT)
    return tmp, exchange_dir


@pytest.fixture(scope="module")
def first_round(released):
    """Three students at once: a correct notebook, one that is not a notebook, one whose answer hangs."""
    tmp, exchange_dir = released
    _submit("alice", tmp, exchange_dir)
    _submit("bob", tmp, exchange_dir, text="{this is not a notebook")
    _submit("dave", tmp, exchange_dir, answer="import time\ntime.sleep(600)")
    lines: list[str] = []
    start = time.perf_counter()
    ledger = watch.watch(ASSIGNMENT, exchange_dir, tmp / "watch", COURSE, SETTINGS, once=True, log=lines.append)
    return {"ledger": ledger, "lines": lines, "seconds": time.perf_counter() - start, "tmp": tmp}


def test_students_fetch_the_released_assignment(released):
    """Does a student's fetch_assignment bring the released notebooks, without solutions or hidden tests?"""
    tmp, exchange_dir = released
    home = tmp / "homes" / "erin"
    exchange.as_student("fetch_assignment", ASSIGNMENT, "erin", home, exchange_dir, COURSE)
    text = (home / ASSIGNMENT / NB5).read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text and "raise NotImplementedError()" in text


def test_each_submission_is_graded_once_and_logged(first_round):
    """Are the three waiting submissions each graded once, with a log line when picked up and when done?"""
    history = first_round["ledger"].history
    assert sorted(h["student"] for h in history) == ["alice", "bob", "dave"]
    done = [line for line in first_round["lines"] if "graded in" in line]
    assert len(done) == 3 and all("feedback released" in line for line in done)
    assert sum("grading the submission" in line for line in first_round["lines"]) == 3, first_round["lines"]


def test_workers_collecting_at_once_only_read_the_gradebook(first_round, released):
    """Once the watcher has added the exchange's course to a new gradebook (``gradebook.add_course``),
    do the workers' nbgrader collects, run at the same moment, all succeed and leave the gradebook
    byte for byte as it was? nbgrader collect adds a missing course itself, and several at once then
    fail with "UNIQUE constraint failed: course.id" (4 tries in 5 here with four at once, once in CI)."""
    tmp, exchange_dir = released
    root = course.prepare_course(ASSIGNMENT, tmp / "collect_at_once")
    url = gradebook.db_url(root, "gradebook.db")
    gradebook.add_course(url, course.COURSE_ID)  # nbgrader's tables and the project's course, as a new course root has
    gradebook.add_course(url, COURSE)
    before = (root / "gradebook.db").read_bytes()
    students = sorted(first_round["ledger"].latest)
    with ThreadPoolExecutor(len(students)) as pool:
        collected = list(pool.map(lambda s: exchange.collect(ASSIGNMENT, root, exchange_dir, COURSE, s), students))
    assert sorted(p.name for p in collected[0].iterdir()) == students
    assert (root / "gradebook.db").read_bytes() == before, "nbgrader collect wrote to the gradebook"


def test_correct_submission_gets_its_feedback_with_the_score(first_round, released):
    """Does the correct student fetch feedback that shows notebook 05's full score?"""
    tmp, exchange_dir = released
    pages = _feedback("alice", tmp, exchange_dir)
    assert len(pages) == 1 and "05_other_environment" in pages[0]
    assert first_round["ledger"].latest["alice"].score == 6.0


def test_broken_and_hanging_submissions_get_feedback_saying_what_went_wrong(first_round, released):
    """Do a file that is not a notebook and an answer that hangs get feedback naming the problem,
    without stopping the watcher or the others?"""
    tmp, exchange_dir = released
    (bob,) = _feedback("bob", tmp, exchange_dir)
    assert "is not a readable notebook" in bob
    (dave,) = _feedback("dave", tmp, exchange_dir)
    assert "CellTimeoutError" in dave or "cell limit" in dave
    report = (tmp / "watch" / "report.txt").read_text()
    assert "bob: " in report and "not a readable notebook" in report
    assert "a5_collect_other_frames ran past the 40 s cell limit" in report


def test_a_resubmission_is_graded_again_and_only_the_latest_counts(first_round, released):
    """Is a second submission graded, and do the CSVs hold the latest one's score?"""
    tmp, exchange_dir = released
    _submit("alice", tmp, exchange_dir, answer="raise NotImplementedError()")
    ledger = watch.watch(ASSIGNMENT, exchange_dir, tmp / "watch", COURSE, SETTINGS, once=True, log=lambda _: None)
    assert [h["student"] for h in ledger.history].count("alice") == 2
    assert ledger.latest["alice"].score == 0.0
    rows = (tmp / "watch" / "grades.csv").read_text().splitlines()
    alice = [r for r in rows if r.startswith("alice,05_other_environment")]
    assert len(alice) == 1 and alice[0].split(",")[2] == "0.0"
    assert len(_feedback("alice", tmp, exchange_dir)) == 2  # one page per submission


def test_a_killed_watcher_started_again_loses_nothing_and_grades_nothing_twice(first_round, released):
    """Is a submission whose grading was cut off by killing the watcher graded exactly once when the
    same command is started again?"""
    tmp, exchange_dir = released
    _submit("carol", tmp, exchange_dir)
    out = tmp / "watch"
    cmd = [sys.executable, "-m", "autograder.cli", "watch", ASSIGNMENT, "--out", str(out)]
    cmd += ["--exchange", str(exchange_dir), "--course-id", COURSE, "--interval", "0.5", "--cell-timeout", "40"]
    watcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in watcher.stdout:
            if "carol: grading" in line:
                time.sleep(3)  # into the grading
                break
    finally:
        os.killpg(watcher.pid, signal.SIGKILL)
        watcher.wait()
    assert "carol" not in watch.Ledger(out / "watch.json").latest
    again = subprocess.run([*cmd, "--once"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    history = json.loads((out / "watch.json").read_text())["history"]
    assert [h["student"] for h in history].count("carol") == 1
    assert sum(h["student"] == "alice" for h in history) == 2  # nothing graded again
