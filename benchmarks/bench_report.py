"""How long ``course report`` and ``course report --term`` take on a class of 500, and whether their
totals are those of grades.csv and the Canvas file, student by student.

Gradebooks of 500 students are generated in real nbgrader sqlite gradebooks, one run per homework:
each assignment is recorded with nbgrader's ``generate_assignment``, every student gets a submission
through nbgrader's API with random scores (seeded), a timestamp against the due date (late ones
penalised by the course's late policy), an extension for one in ten, manual grades for half of them,
and a saved grading report (``<out>/course/results/<student>.json``) whose failed cells carry outcomes
like those the grader logs. The clock runs around ``course report`` and ``course report --term`` (the
real commands, in their own processes, imports included); the anchor is ``course export`` on the same
gradebook (the CSVs every run writes already). Then each student's total is compared between
grades.csv (score less late penalty), the class report, the term page and the Canvas file that
``course export --format canvas`` writes with a Canvas gradebook export, as Canvas writes it, for roster.

Target: at most 10 s for 500 students on a 2-core machine, and no disagreement.

Usage: ``python benchmarks/bench_report.py [--students 500]``
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import conditions, emit, log, machine

from autograder.course import ASSIGNMENTS, COURSE_ID, prepare_course
from autograder.deadlines import set_due
from autograder.gradebook import db_url, redact, write_index
from autograder.late import LatePenalty
from autograder.release import generate_assignment
from autograder.report import CellOutcome, Problem, StudentReport, save_report
from autograder.tamper import REVIEW

ASSIGNMENT = "hw1_vae"
HW2 = "hw2_world_models"
TARGET_S = 10.0
#: The module of activity 1's checks, where the generated failures are sited.
AE_CHECKS = "autograder.checks.hw1_vae.autoencoder"


#: The due date of the generated classes (naive UTC, as nbgrader stores it).
DUE = dt.datetime(2027, 2, 2, 7, 59)


def _late_policy() -> LatePenalty:
    """The course's late policy, configured as ``assignments/nbgrader_config.py`` configures nbgrader."""
    from traitlets.config import PyFileConfigLoader

    return LatePenalty(config=PyFileConfigLoader("nbgrader_config.py", path=str(ASSIGNMENTS)).load_config())


def generate_class(
    out: Path,
    students: int,
    seed: int = 0,
    assignment: str = ASSIGNMENT,
    due: dt.datetime | None = DUE,
    url: str | None = None,
) -> list[str]:
    """A graded-looking class of ``students`` in ``<out>/course`` (gradebook, index, saved reports);
    with ``url``, its gradebook is that server's (``postgresql://...``) instead of ``gradebook.db``.

    With ``due``: a due date in the gradebook; about 70% of the submissions on time, 20% late by 1 to
    80 hours, 10% without a timestamp (an LMS zip); one in ten students with an extension of 24 or 48
    hours; late notebooks penalised by the course's late policy (:class:`autograder.late.LatePenalty`,
    as nbgrader's ``AssignLatePenalties`` would). Half the students have their written answers graded
    by hand, the others wait for the formgrader. A few saved reports flag the submission for review.
    """
    from nbgrader.api import Gradebook

    rng = random.Random(seed)
    policy = _late_policy()
    root = prepare_course(assignment, out)
    generate_assignment(assignment, root, url)
    book = url or "gradebook.db"
    if due is not None:
        set_due(assignment, due, root, [book])
    ids = [f"student_{k:04d}" for k in range(students)]
    with Gradebook(db_url(root, book), COURSE_ID) as gb:
        for student in ids:
            gb.update_or_create_student(student)
            report = StudentReport(student, seconds=rng.uniform(35, 70))
            draw = rng.random()
            timestamp = None
            if due is not None and draw < 0.9:
                hours = -rng.uniform(1, 100) if draw < 0.7 else rng.uniform(1, 80)
                timestamp = due + dt.timedelta(hours=hours)
            submission = gb.add_submission(assignment, student, timestamp=timestamp)
            if rng.random() < 0.1:
                submission.extension = dt.timedelta(hours=rng.choice([24, 48]))
            graded_by_hand = rng.random() < 0.5
            for nb in submission.notebooks:
                score = 0.0
                for grade in nb.grades:
                    cell = grade.cell
                    if cell.cell_type != "code":  # a written answer: graded in the formgrader, or not yet
                        grade.needs_manual_grade = not graded_by_hand
                        if graded_by_hand:
                            grade.manual_score = float(rng.randint(0, int(cell.max_score)))
                            score += grade.manual_score
                        continue
                    passed = rng.random() < 0.8
                    grade.auto_score = cell.max_score if passed else 0.0
                    grade.needs_manual_grade = False
                    score += grade.auto_score
                    failure = rng.choice([f"{AE_CHECKS}:120", f"{AE_CHECKS}:131", None])
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
                late = submission.total_seconds_late
                penalty = policy.late_submission_penalty(student, score, late) if late > 0 else None
                nb.late_submission_penalty = None if penalty is None else min(max(penalty, 0.0), score)
            if rng.random() < 0.05:
                report.problems.append(Problem("repaired", "01.ipynb was graded as 01_autoencoder.ipynb"))
            if rng.random() < 0.03:
                report.problems.append(Problem(REVIEW, "a test cell ran beside code the notebook installed"))
            save_report(report, root)
        gb.db.commit()
    write_index(root, {redact(book): ids})
    return ids


def canvas_gradebook_export(path: Path, students: list[str], extra: int = 2) -> Path:
    """A file as Canvas' Grades > Export writes it for these students (and ``extra`` who never submitted):
    a byte-order mark, ``Student, ID, SIS User ID, SIS Login ID, Section``, an assignment column and the
    total columns, the ``Manual Posting`` and ``Points Possible`` rows, names "Last, First", SIS login ids
    that are e-mail addresses whose part before @ is the gradebook id, and Canvas' test student last."""
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Quiz 1 (55001)"]
    header += ["Current Score", "Unposted Current Score", "Final Score", "Unposted Final Score"]
    rows = [header, ["", "", "", "", "", "Manual Posting", "", "", "", ""]]
    rows.append(["    Points Possible", "", "", "", "", "10", *["(read only)"] * 4])
    everyone = [*students, *(f"dropped_{k}" for k in range(extra))]
    for k, student in enumerate(everyone):
        name = f"{student.title().replace('_', ' ')}, Pat"
        rows.append([name, str(9000 + k), f"S{k:05d}", f"{student.upper()}@uni.example", f"Section {k % 3 + 1}"])
        rows[-1] += [str(k % 11), "", "", "", ""]
    rows.append(["Student, Test", "9999", "", "", "Section 1", "", "", "", "", ""])
    with Path(path).open("w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows(rows)
    return Path(path)


def _course(*args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "autograder.cli", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"course {args[0]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _totals(out: Path) -> dict[str, float]:
    """Each student's total in ``<out>/grades.csv``: the notebooks' scores less their late penalties."""
    totals: dict[str, float] = {}
    with (out / "grades.csv").open() as f:
        for row in csv.DictReader(f):
            totals[row["student_id"]] = (
                totals.get(row["student_id"], 0.0) + float(row["score"]) - float(row["late_penalty"])
            )
    return totals


def disagreements(out: Path, assignment: str, term: dict[str, dict[str, str]], canvas: Path) -> dict[str, list[str]]:
    """The students whose total differs between ``grades.csv`` and the class report, the term page
    and the Canvas file (at the Canvas file's two decimals): ``{"report": [...], "term": [...], "canvas": [...]}``."""
    expected = _totals(out)
    report = {r["student"]: r["total"] for r in json.loads((out / "report" / "report.json").read_text())["per_student"]}
    with canvas.open(newline="", encoding="utf-8") as f:
        written = {row[3].split("@")[0].lower(): row[-1] for row in list(csv.reader(f))[2:]}
    return {
        "report": sorted(s for s, t in expected.items() if abs(report.get(s, -1.0) - t) > 1e-9),
        "term": sorted(s for s, t in expected.items() if abs(float(term[s][assignment] or -1) - t) > 0.0051),
        "canvas": sorted(s for s, t in expected.items() if written.get(s) != f"{t:.2f}".rstrip("0").rstrip(".")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=500)
    args = parser.parse_args()
    before = conditions()
    with tempfile.TemporaryDirectory(prefix="bench_report_") as tmp:
        runs = {ASSIGNMENT: Path(tmp) / "hw1", HW2: Path(tmp) / "hw2"}
        log(f"generating gradebooks of {args.students} students for {', '.join(runs)}")
        start = time.perf_counter()
        for k, (assignment, out) in enumerate(runs.items()):
            ids = generate_class(out, args.students, seed=k, assignment=assignment)
        generated = time.perf_counter() - start
        roster = canvas_gradebook_export(Path(tmp) / "canvas_gradebook_export.csv", ids)
        log(f"generated in {generated:.1f} s; timing course export, course report and course report --term")
        export_s = _course("export", ASSIGNMENT, "--out", str(runs[ASSIGNMENT]))
        report_s = _course("report", ASSIGNMENT, "--out", str(runs[ASSIGNMENT]))
        _course("export", HW2, "--out", str(runs[HW2]))
        _course("report", HW2, "--out", str(runs[HW2]))
        term_s = _course("report", "--term", "--out", str(runs[ASSIGNMENT]), "--runs", str(runs[HW2]))
        with (runs[ASSIGNMENT] / "term" / "term.csv").open() as f:
            term = {row["student_id"]: row for row in csv.DictReader(f)}
        differ = {}
        for assignment, out in runs.items():
            _course("export", assignment, "--out", str(out), "--format", "canvas", "--roster", str(roster))
            differ[assignment] = disagreements(out, assignment, term, out / f"{assignment}_canvas.csv")
        summary = json.loads((runs[ASSIGNMENT] / "report" / "report.json").read_text())
        assert len(summary["students"]) == args.students, "the report lost students"
        lateness = summary["lateness"]
    agree = all(not students for kinds in differ.values() for students in kinds.values())
    emit(
        {
            "benchmark": "report",
            "machine": machine(),
            "conditions_before": before,
            "conditions_after": conditions(),
            "students": args.students,
            "course_report_s": round(report_s, 2),
            "course_report_term_s": round(term_s, 2),
            "anchor_course_export_s": round(export_s, 2),
            "target_s": TARGET_S,
            "meets_target": report_s <= TARGET_S and term_s <= TARGET_S,
            "totals_agree": agree,
            "disagreements": differ,
            "late_submissions": lateness["late"],
            "extensions": lateness["extensions"],
            "generating_the_gradebooks_s": round(generated, 1),
        }
    )


if __name__ == "__main__":
    main()
