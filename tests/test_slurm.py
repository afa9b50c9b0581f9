"""Grading on a real Slurm cluster as an ordinary user: the shipped ``docs/cluster/grade.sbatch``.

A one-node Slurm (Debian's ``slurm-wlm`` and ``munge``, :mod:`tests.slurm_cluster`) runs the script as
a job array submitted by the ordinary grader account, each task grading its shard in the sandbox into
a real PostgreSQL gradebook; the export job of docs/clusters.md runs once the array has succeeded.
Its CSVs must be serial grading's.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from accounts import GRADER, run_as, shared_folder, user

from autograder import course
from autograder.submissions import replace_answer

pytestmark = pytest.mark.slow(seconds=240)
ASSIGNMENT = "hw1_vae"
NB5 = "05_other_environment.ipynb"
REPO = Path(__file__).resolve().parents[1]


def _digests(out: Path) -> list[str]:
    return [hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("cells.csv", "grades.csv")]


@pytest.fixture(scope="module")
def class_of_two():
    """Notebook 05 of two students, in a folder of the grader account: the solution, and the answer
    left unwritten."""
    grader = user(GRADER)
    subs = shared_folder("course-slurm-subs-", owner=grader)
    for student in ("solutions", "unanswered"):
        (subs / student).mkdir()
        (subs / student / NB5).write_bytes((course.source_dir(ASSIGNMENT) / NB5).read_bytes())
    replace_answer(subs / "unanswered" / NB5, "a5_collect_other_frames", "raise NotImplementedError()")
    for path in [subs, *subs.rglob("*")]:
        os.chown(path, grader.uid, grader.gid)
    return grader, subs


def test_the_shipped_sbatch_script_grades_a_class_as_an_ordinary_user(slurm, postgres, installation, class_of_two):
    """Submitted by an ordinary user with --array=0-1 against a real PostgreSQL gradebook, do the two
    array tasks each grade their shard in the sandbox, and does the export job that waits on the array
    (docs/clusters.md) write the CSVs that serial grading writes?"""
    grader, subs = class_of_two
    script = installation / "docs" / "cluster" / "grade.sbatch"
    assert script.read_bytes() == (REPO / "docs" / "cluster" / "grade.sbatch").read_bytes()  # the shipped file
    course_command = str(installation / ".venv" / "bin" / "course")
    serial = shared_folder("course-slurm-serial-", owner=grader)
    run_as(grader, [course_command, "autograde", ASSIGNMENT, str(subs), "--out", str(serial / "out")])

    url = postgres.create_database()
    env = {**slurm.env(), "COURSE_DB": url, "PATH": "/usr/bin:/bin"}
    run_as(grader, ["rm", "-rf", "grades"], cwd=installation)
    submitted = run_as(
        grader,
        ["sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", "--mem=3G", str(script), ASSIGNMENT, str(subs)],
        cwd=installation,
        env=env,
    )
    job = submitted.stdout.strip().split(";")[0]
    export = f".venv/bin/course export {ASSIGNMENT} --out grades/class --db $COURSE_DB"  # as docs/clusters.md
    exported = run_as(
        grader, ["sbatch", "--parsable", f"--dependency=afterok:{job}", "--wrap", export], cwd=installation, env=env
    )
    slurm.wait(job, timeout=900)
    slurm.wait(exported.stdout.strip(), timeout=300)
    logs = "\n".join(p.read_text()[-3000:] for p in sorted(installation.glob("grade-*.log")))
    for task, student in enumerate(["solutions", "unanswered"]):
        cells = (installation / "grades" / f"task-{task}" / "cells.csv").read_text()
        assert f"\n{student}," in cells and cells.count("\n") > 1, logs
    assert _digests(installation / "grades" / "class") == _digests(serial / "out"), logs
