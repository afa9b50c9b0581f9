"""How long ``course report`` takes on a class of 500: the class report summarised in seconds.

A gradebook of 500 students is generated in a real nbgrader sqlite gradebook: hw1 is recorded with
nbgrader's ``generate_assignment``, every student gets a submission through nbgrader's API with random
scores (seeded), and a saved grading report (``<out>/course/results/<student>.json``) whose failed
cells carry outcomes like those the grader logs. The clock runs around ``course report`` (the real
command, in its own process, imports included); the anchor is ``course export`` on the same gradebook
in the same run (the CSVs every run writes already).

Target: at most 10 s for 500 students on a 2-core machine.

Usage: ``python benchmarks/bench_report.py [--students 500]``
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import conditions, emit, log, machine

from autograder.course import COURSE_ID, prepare_course
from autograder.release import generate_assignment
from autograder.report import CellOutcome, Problem, StudentReport, save_report

ASSIGNMENT = "hw1_vae"
TARGET_S = 10.0


def generate_class(out: Path, students: int, seed: int = 0) -> list[str]:
    """A graded-looking class of ``students`` in ``<out>/course`` (gradebook, index, saved reports)."""
    from nbgrader.api import Gradebook

    rng = random.Random(seed)
    root = prepare_course(ASSIGNMENT, out)
    generate_assignment(ASSIGNMENT, root)
    ids = [f"student_{k:04d}" for k in range(students)]
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", COURSE_ID) as gb:
        for student in ids:
            gb.update_or_create_student(student)
            report = StudentReport(student, seconds=rng.uniform(35, 70))
            submission = gb.add_submission(ASSIGNMENT, student)
            for nb in submission.notebooks:
                for grade in nb.grades:
                    cell = grade.cell
                    if cell.cell_type != "code":
                        continue
                    passed = rng.random() < 0.8
                    grade.auto_score = cell.max_score if passed else 0.0
                    grade.needs_manual_grade = False
                    failure = rng.choice(["autograder.checks.hw1:120", "autograder.checks.hw1:131", None])
                    report.outcomes.append(
                        CellOutcome(
                            f"{nb.name}.ipynb",
                            cell.name,
                            passed,
                            None if passed else ("CheckFailed" if failure else "NotImplementedError"),
                            None if passed else f"off by {rng.random():.3f}",
                            None if passed else failure,
                        )
                    )
            if rng.random() < 0.05:
                report.problems.append(Problem("repaired", "01.ipynb was graded as 01_autoencoder.ipynb"))
            save_report(report, root)
        gb.db.commit()
    (root / "gradebooks.json").write_text(json.dumps({"gradebook.db": ids}))
    return ids


def _course(*args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autograder.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"course {args[0]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=500)
    args = parser.parse_args()
    before = conditions()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        out = Path(tmp)
        log(f"generating a gradebook of {args.students} students")
        start = time.perf_counter()
        generate_class(out, args.students)
        generated = time.perf_counter() - start
        log(f"generated in {generated:.1f} s; timing course export and course report")
        export_s = _course("export", ASSIGNMENT, "--out", str(out))
        report_s = _course("report", ASSIGNMENT, "--out", str(out))
        summary = json.loads((out / "report" / "report.json").read_text())
        assert len(summary["students"]) == args.students, "the report lost students"
    emit(
        {
            "benchmark": "report",
            "machine": machine(),
            "conditions_before": before,
            "conditions_after": conditions(),
            "students": args.students,
            "course_report_s": round(report_s, 2),
            "anchor_course_export_s": round(export_s, 2),
            "target_s": TARGET_S,
            "meets_target": report_s <= TARGET_S,
            "generating_the_gradebook_s": round(generated, 1),
        }
    )


if __name__ == "__main__":
    main()
