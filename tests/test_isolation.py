"""A class graded by an ordinary account: nothing of the grader or the class reaches a student, a regrade
keeps the class, and a fault of the machine is nobody's zero.

The grader account (no privilege) grades an honest student and a spy whose answer dumps its environment,
its descriptors and ``/proc/1/environ`` and searches the whole filesystem for other students' notebooks,
gradebooks and feedback, which it would run to earn their points. The submissions lie in the grader's
home, the ``--out`` under ``/tmp`` and an earlier run's output elsewhere, with secrets in the grader's
environment. Then one student is regraded into the same ``--out``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from accounts import GRADER, run_as, shared_folder, user

from autograder import cli, course, pipeline
from autograder.course import GraderFaultError
from autograder.sandbox import Limits
from autograder.submissions import replace_answer
from autograder.submissions.hw1_vae import HW1_MUTANTS

pytestmark = pytest.mark.slow(seconds=300)
ASSIGNMENT = "hw1_vae"
NB5 = "05_other_environment.ipynb"
SECRETS = {
    "PGPASSWORD": "pg-password-6e1f",
    "COURSE_DB": "postgresql://grader:url-password-93ab@db.example.org/course",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-5c2d",
    "JUPYTERHUB_API_TOKEN": "hub-token-0a7b",
}
#: The spy's answer: what it sees, then a classmate's answer run as its own if it found one.
SPY = r'''
import json, os, sys
print("ENV", json.dumps(dict(os.environ)))
print("PID1", open("/proc/1/environ").read().replace("\0", " "))
descriptors = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        descriptors[fd] = os.readlink("/proc/self/fd/" + fd)
    except OSError:
        pass
print("FDS", json.dumps(descriptors))
skip = (sys.prefix, sys.base_prefix, "/usr", "/proc", "/sys", "/dev")
found = []
for top, dirs, files in os.walk("/", onerror=lambda err: None):
    if top.startswith(skip):
        dirs[:] = []
        continue
    found += [os.path.join(top, f) for f in files if f.endswith((".ipynb", ".db", ".csv", ".html"))]
print("FOUND", json.dumps(found))
classmates = [path for path in found if path.endswith("05_other_environment.ipynb")]
if not classmates:
    raise NotImplementedError("no classmate's notebook to copy")
cells = json.load(open(classmates[0]))["cells"]
answer = next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == "a5_collect_other_frames")
exec("".join(answer["source"]))
'''


def _rows(path: Path, student: str) -> list[dict]:
    return [row for row in csv.DictReader(path.open()) if row["student_id"] == student]


@pytest.fixture(scope="module")
def graded(installation):
    """The class graded by the grader account with secrets set (an honest student, the spy, and a student
    with a known bug), then the spy regraded alone."""
    grader = user(GRADER)
    source = course.source_dir(ASSIGNMENT) / NB5
    term = Path(tempfile.mkdtemp(prefix="term-", dir=grader.home))  # private to the grader, as a home is
    subs = term / "subs"
    for student in ("honest", "spy", "buggy"):
        (subs / student).mkdir(parents=True, exist_ok=True)
        (subs / student / NB5).write_bytes(source.read_bytes())
    replace_answer(subs / "spy" / NB5, "a5_collect_other_frames", SPY)
    replace_answer(subs / "buggy" / NB5, "a5_collect_other_frames", HW1_MUTANTS["a5_wrong_environment"].code)
    earlier = shared_folder("course-earlier-", owner=grader)  # another run's output, elsewhere
    for name in ("feedback/honest/05_other_environment.html", "course/autograded/honest/hw1_vae/" + NB5):
        (earlier / name).parent.mkdir(parents=True, exist_ok=True)
        (earlier / name).write_bytes(source.read_bytes())
    (earlier / "course" / "gradebook.db").write_bytes(b"")
    out = shared_folder("course-out-", owner=grader) / "out"
    for path in [term, *term.rglob("*"), *earlier.rglob("*")]:
        os.chown(path, grader.uid, grader.gid)
    command = [str(installation / ".venv/bin/course"), "autograde", ASSIGNMENT]
    limits = ["--out", str(out), "--cell-timeout", "60", "--timeout", "300"]
    first = run_as(grader, [*command, str(subs), *limits], env=SECRETS)
    before = {name: (out / name).read_text() for name in ("grades.csv", "cells.csv")}
    honest_feedback = (out / "feedback" / "honest" / "05_other_environment.html").read_bytes()
    spy_feedback = (out / "feedback" / "spy" / "05_other_environment.html").read_text()
    buggy_feedback = (out / "feedback" / "buggy" / "05_other_environment.html").read_text()
    first_report = (out / "report.txt").read_text()
    # the spy's extension: a corrected upload, regraded alone into the same --out
    regrade = term / "regrade"
    (regrade / "spy").mkdir(parents=True)
    (regrade / "spy" / NB5).write_bytes(source.read_bytes())
    for path in [regrade, *regrade.rglob("*")]:
        os.chown(path, grader.uid, grader.gid)
    second = run_as(grader, [*command, str(regrade), *limits], env=SECRETS)
    yield {
        "out": out,
        "log": first.stdout + first.stderr + second.stdout + second.stderr,
        "before": before,
        "honest_feedback": honest_feedback,
        "spy_feedback": spy_feedback,
        "buggy_feedback": buggy_feedback,
        "first_report": first_report,
    }
    shutil.rmtree(term)


def test_the_spy_finds_nothing_and_earns_nothing(graded):
    """Does the spy's search of the whole filesystem find no notebook, gradebook, export or feedback of
    anybody (its kernel sees the Python environment, its own home and /tmp), and earn no point?"""
    found = re.search(r"FOUND (\[.*?\])", graded["spy_feedback"])
    assert found and json.loads(found[1].replace("&quot;", '"')) == [], graded["spy_feedback"][-3000:]
    spy = {row["grade_id"]: float(row["score"]) for row in csv.DictReader(graded["before"]["cells.csv"].splitlines())
           if row["student_id"] == "spy" and row["grade_id"].startswith("a5")}
    assert spy and set(spy.values()) == {0.0}, spy
    assert "no classmate&#x27;s notebook to copy" in graded["spy_feedback"] or "no classmate" in graded["spy_feedback"]


def test_no_secret_of_the_grader_reaches_anything_written(graded):
    """Do the grader's secrets (a gradebook password and URL, a cloud key, a hub token) appear nowhere in
    what the run wrote, the spy's feedback with its dumped environment, descriptors and /proc/1/environ
    included?"""
    assert "ENV {" in graded["spy_feedback"] and "PID1 " in graded["spy_feedback"] and "FDS {" in graded["spy_feedback"]
    for path in graded["out"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for name, secret in SECRETS.items():
                assert secret.encode() not in data, f"{name} in {path}"
    assert "JUPYTERHUB_API_TOKEN" not in graded["spy_feedback"] and "AWS_SECRET" not in graded["spy_feedback"]


def test_a_regrade_of_one_student_keeps_the_class(graded):
    """After the spy alone is regraded into the same --out, do grades.csv, cells.csv, report.txt and the
    class report hold the whole class, the honest student's rows and feedback unchanged, and the spy's new
    grade?"""
    out = graded["out"]
    for name in ("grades.csv", "cells.csv"):
        assert _rows(out / name, "honest") == [
            row for row in csv.DictReader(graded["before"][name].splitlines()) if row["student_id"] == "honest"
        ]
    assert (out / "feedback" / "honest" / "05_other_environment.html").read_bytes() == graded["honest_feedback"]
    spy = [row for row in _rows(out / "grades.csv", "spy") if row["notebook"] == "05_other_environment"]
    assert [float(row["score"]) for row in spy] == [6.0], graded["log"]
    report = (out / "report.txt").read_text()
    assert re.search(r"^honest: ", report, re.M) and re.search(r"^spy: ", report, re.M), report
    summary = json.loads((out / "report" / "report.json").read_text())
    assert summary["students"] == ["buggy", "honest", "spy"]


def test_a_known_bug_gets_its_hint_when_an_ordinary_user_grades(graded):
    """Does the grader account, which cannot write nbgrader's read-only autograded notebooks in place, still
    add a known bug's hint to its feedback, with no problem reported?"""
    assert "Likely cause:" in graded["buggy_feedback"]
    assert HW1_MUTANTS["a5_wrong_environment"].hint.split(":")[0][:40] in graded["buggy_feedback"]
    line = next(line for line in graded["first_report"].splitlines() if line.startswith("buggy: "))
    assert "hints" not in line, line


def test_a_kernel_that_cannot_start_stops_the_run_and_scores_nobody(tmp_path, capsys):
    """When the machine cannot start a grading kernel (here: a memory limit too small for Python), does
    the run stop with the cause, as an error of the grader, with no score written for the student?"""
    subs = tmp_path / "subs" / "someone"
    subs.mkdir(parents=True)
    (subs / NB5).write_bytes((course.source_dir(ASSIGNMENT) / NB5).read_bytes())
    with pytest.raises(GraderFaultError, match=r"someone: a grading kernel could not start") as raised:
        pipeline.autograde(ASSIGNMENT, subs.parent, tmp_path / "out", limits=Limits(memory_bytes=32 * 2**20))
    assert "not the submission's" in str(raised.value) and "course doctor" in str(raised.value)
    assert not (tmp_path / "out" / "grades.csv").exists()
    assert not (tmp_path / "out" / "course" / "gradebooks.json").exists()


def test_a_shard_without_students_says_so_and_succeeds(tmp_path, capsys):
    """With more shards than students (an Indexed Job with more pods), does the empty shard say so and exit
    0 without writing anything?"""
    (tmp_path / "subs" / "only").mkdir(parents=True)
    code = cli.main(["autograde", ASSIGNMENT, str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--shard", "2/2"])
    assert code == 0 and "shard 2/2: no students to grade" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
