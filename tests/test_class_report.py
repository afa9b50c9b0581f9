"""The class report and the term view (autograder.class_report, autograder.term_report) on generated
classes: their totals against grades.csv and the Canvas file, lateness, manual grading, the student
table in a browser, escaping, and what they say about files they cannot read.

The classes are real nbgrader gradebooks (sqlite, and PostgreSQL for the term view) filled through
nbgrader's API with due dates, extensions, late penalties of the course's policy and manual grades
(benchmarks/bench_report.generate_class), so no kernel runs here. Classes graded through nbgrader are
reported in tests/test_grading.py (sqlite, in a browser), tests/test_late.py (late, with a penalty)
and tests/test_tamper.py (PostgreSQL).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

from autograder import cli
from autograder.class_report import score_histograms
from autograder.course import COURSE_ID, source_dir
from autograder.report import CellOutcome, Problem, load_report, save_report
from autograder.tamper import REVIEW

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_report import ASSIGNMENT, canvas_gradebook_export, generate_class  # the benchmark's generator

pytestmark = pytest.mark.slow(seconds=90)
HW2 = "hw2_world_models"


def possible(assignment: str) -> float:
    """The points of every graded cell (autograded and manual) of the assignment's source notebooks."""
    notebooks = sorted(source_dir(assignment).glob("*.ipynb"))
    cells = [cell for path in notebooks for cell in nbformat.read(path, as_version=4).cells]
    return sum(float(cell.metadata.get("nbgrader", {}).get("points", 0) or 0) for cell in cells)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("class")
    generate_class(out, 12, seed=3)
    return out


@pytest.fixture(scope="module")
def generated_hw2(tmp_path_factory) -> Path:
    """Homework 2 of the same term: the first 8 students of :func:`generated`."""
    out = tmp_path_factory.mktemp("class_hw2")
    generate_class(out, 8, seed=4, assignment=HW2)
    return out


def grades_csv_totals(out: Path) -> dict[str, float]:
    """Each student's total in ``<out>/grades.csv``: the notebooks' scores less their late penalties."""
    totals: dict[str, float] = defaultdict(float)
    with (out / "grades.csv").open() as f:
        for row in csv.DictReader(f):
            totals[row["student_id"]] += float(row["score"]) - float(row["late_penalty"])
    return dict(totals)


def canvas_totals(path: Path) -> dict[str, str]:
    """The grade column of a Canvas import file, by the SIS login id's part before @ (lower-cased)."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return {row[3].split("@")[0].lower(): row[-1] for row in rows[2:]}


def standings(out: Path, assignment: str = ASSIGNMENT) -> dict[str, tuple[float, bool]]:
    """``student -> (seconds late, has an extension)`` as nbgrader's API gives them."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}", COURSE_ID) as gb:
        subs = gb.find_assignment(assignment).submissions
        return {s.student.id: (s.total_seconds_late, s.extension is not None) for s in subs}


def test_totals_are_the_gradebooks_after_late_penalties(generated, tmp_path, capsys):
    """Is each student's total in the report the one grades.csv and the Canvas file give (after the
    late penalty), are the penalty and the lateness shown per student and summarised, and are
    autograded and manual points apart, with how many students are graded by hand yet?"""
    assert cli.main(["export", ASSIGNMENT, "--out", str(generated)]) == 0
    roster = canvas_gradebook_export(tmp_path / "canvas_export.csv", [f"student_{k:04d}" for k in range(12)])
    canvas_out = tmp_path / "canvas"
    shutil.copytree(generated / "course", canvas_out / "course")
    canvas_args = ["--format", "canvas", "--roster", str(roster)]
    assert cli.main(["export", ASSIGNMENT, "--out", str(canvas_out), *canvas_args]) == 0
    assert cli.main(["report", ASSIGNMENT, "--out", str(generated), "--dest", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "report.json").read_text())
    rows = {r["student"]: r for r in summary["per_student"]}
    expected = grades_csv_totals(generated)
    canvas = canvas_totals(canvas_out / f"{ASSIGNMENT}_canvas.csv")
    assert set(rows) == set(expected) and len(rows) == 12
    for student, total in expected.items():
        assert rows[student]["total"] == pytest.approx(total, abs=1e-9), student
        assert canvas[student] == f"{total:.2f}".rstrip("0").rstrip("."), student
        assert rows[student]["score"] - rows[student]["penalty"] == pytest.approx(total)
    assert summary["scores"]["total"]["points"] == [rows[s]["total"] for s in summary["students"]]

    held = standings(generated)
    late = {s for s, (seconds, _) in held.items() if seconds > 0}
    assert late and {s for s, r in rows.items() if r["seconds_late"] > 0} == late
    assert {s for s, r in rows.items() if r["penalty"] > 0} <= late
    lateness = summary["lateness"]
    assert lateness["late"] == len(late) and lateness["due"] == "2027-02-02 07:59 UTC"
    assert lateness["extensions"] == sum(ext for _, ext in held.values()) > 0
    assert lateness["penalty_points"] == pytest.approx(sum(r["penalty"] for r in rows.values()))

    with (generated / "cells.csv").open() as f:
        cells = list(csv.DictReader(f))
    manual_cells = {(c["notebook"], c["grade_id"]) for c in cells if c["kind"] == "manual"}
    pending = {c["student_id"] for c in cells if c["kind"] == "manual" and c["needs_manual_grade"] == "True"}
    manual = summary["manual"]
    assert manual["cells"] == len(manual_cells) and manual["graded"] == 12 - len(pending) and 0 < len(pending) < 12
    assert sorted(manual["pending"]) == sorted(pending)
    for student, row in rows.items():
        auto = sum(float(c["score"]) for c in cells if c["student_id"] == student and c["kind"] == "autograded")
        assert row["autograded"] == pytest.approx(auto) and row["manual"] == pytest.approx(row["score"] - auto)
    page = (tmp_path / "index.html").read_text()
    assert f"{manual['graded']} of 12 students graded yet" in page
    assert f"{len(late)} of 12 submissions late" in page


def test_histograms_count_whole_students_and_points(generated, tmp_path):
    """Are the histograms' ticks whole students and whole points, each bin one point wide?"""
    assert cli.main(["report", ASSIGNMENT, "--out", str(generated), "--dest", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "report.json").read_text())
    fig = score_histograms(summary)
    try:
        drawn = [ax for ax in fig.axes if ax.patches]
        assert len(drawn) == len(summary["scores"])
        for ax in drawn:
            assert all(float(t).is_integer() for t in ax.get_yticks()), ax.get_title()
            assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_title()
            widths = {round(p.get_width(), 6) for p in ax.patches}
            assert widths == {1.0}, ax.get_title()
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_a_visible_tests_failure_is_shown_by_what_it_checks(generated, tmp_path):
    """Is a failed visible assert shown by its test's description and the assert's line, not as the bare
    list of numbers it printed ("[19, 81]")?"""
    out = tmp_path / "class"
    shutil.copytree(generated, out)
    report = load_report(out / "course" / "results" / "student_0002.json")
    outcome = CellOutcome(
        "03_curating_cartpole.ipynb", "a3_reset_pattern", False, "AssertionError", "[19, 81]", "a3_reset_pattern:7"
    )
    report.outcomes = [o for o in report.outcomes if o.cell != "a3_reset_pattern"] + [outcome]
    save_report(report, out / "course")
    assert cli.main(["report", ASSIGNMENT, "--out", str(out)]) == 0
    summary = json.loads((out / "report" / "report.json").read_text())
    cell = next(c for c in summary["cells"] if c["grade_id"] == "a3_reset_pattern")
    failure = next(f for f in cell["failures"] if f["test"] == "AssertionError at a3_reset_pattern:7")
    assert failure["check"] == "Check that every episode contributes at most episode_length frames."
    assert failure["assertion"] == "assert max(env.episode_lengths()) <= 20, env.episode_lengths()"
    assert failure["message"] == "AssertionError: [19, 81]"
    page = (out / "report" / "index.html").read_text()
    assert "<i>Check that every episode contributes at most episode_length frames.</i> failed at <code>" in page


def test_every_student_is_listed_sortable_with_links_to_their_feedback(generated, tmp_path):
    """Does the page list every student with links to their feedback pages, and sort the table by a
    column in chromium when its title is clicked (again: the other way)?"""
    from browser_helpers import launch_chromium
    from playwright.sync_api import sync_playwright

    out = tmp_path / "class"
    shutil.copytree(generated, out)
    for student in ("student_0000", "student_0007"):
        (out / "feedback" / student).mkdir(parents=True)
        (out / "feedback" / student / "01_autoencoder_and_vae.html").write_text("<p>feedback</p>")
    assert cli.main(["report", ASSIGNMENT, "--out", str(out)]) == 0
    summary = json.loads((out / "report" / "report.json").read_text())
    totals = {r["student"]: r["total"] for r in summary["per_student"]}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto((out / "report" / "index.html").as_uri())
            rows = page.locator("#students tbody tr")
            assert rows.count() == 12
            link = page.locator("#students a", has_text="01_autoencoder_and_vae")
            assert link.count() == 2
            assert link.first.get_attribute("href") == "../feedback/student_0000/01_autoencoder_and_vae.html"
            column = page.locator("#students th").all_inner_texts().index(f"total (of {possible(ASSIGNMENT):g})")
            page.get_by_role("button", name=f"total (of {possible(ASSIGNMENT):g})").click()
            shown = [page.locator("#students tbody tr").nth(k).locator("td").first.inner_text() for k in range(12)]
            assert [totals[s] for s in shown] == sorted(totals.values())
            page.get_by_role("button", name=f"total (of {possible(ASSIGNMENT):g})").click()
            shown = [page.locator("#students tbody tr").nth(k).locator("td").first.inner_text() for k in range(12)]
            assert [totals[s] for s in shown] == sorted(totals.values(), reverse=True)
            cell = page.locator("#students tbody tr").first.locator("td").nth(column).inner_text()
            assert float(cell) == max(totals.values())
            shot = tmp_path / "class_report_students.png"
            page.locator("#students").screenshot(path=str(shot))
        finally:
            browser.close()
    if os.environ.get("COURSE_ARTIFACTS"):
        dest = Path(os.environ["COURSE_ARTIFACTS"]) / "browser"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)


def test_student_text_is_escaped_and_unreadable_reports_are_named(generated, tmp_path):
    """Is a message, a student id or an answer holding HTML shown as text, a similar pair shown side by
    side with its shared lines marked, and a corrupt saved report named under Warnings while the others
    are reported?"""
    out = tmp_path / "class"

    shutil.copytree(generated, out)
    report = load_report(out / "course" / "results" / "student_0000.json")
    report.outcomes.append(
        CellOutcome("01_autoencoder_and_vae.ipynb", "a1_structure", False, "ValueError", "<script>x</script>")
    )
    save_report(report, out / "course")
    (out / "course" / "results" / "student_0001.json").write_text("{not json")
    pair = {"notebook": "01_autoencoder_and_vae", "cell": "a1_myvae", "score": 0.9}
    similarity = {
        "assignment": ASSIGNMENT,
        "threshold": 0.5,
        "students": 12,
        "against": ["<i>2025</i>"],
        "pairs": [
            {
                "a": "student_0002",
                "b": "<i>2025</i>/<b>bob</b>",
                "score": 0.9,
                "earlier": True,
                "cells": [
                    {**pair, "answer_a": "x = <b>1</b>\ny = 2", "answer_b": "y = 1", "matched_a": [[1, 1]]}
                ],
            }
        ],
    }
    (out / "similarity.json").write_text(json.dumps(similarity))
    assert cli.main(["report", ASSIGNMENT, "--out", str(out)]) == 0
    page = (out / "report" / "index.html").read_text()
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<mark>x = &lt;b&gt;1&lt;/b&gt;</mark>\ny = 2" in page
    assert "student_0002 and &lt;i&gt;2025&lt;/i&gt;/&lt;b&gt;bob&lt;/b&gt;" in page and "<b>bob" not in page
    summary = json.loads((out / "report" / "report.json").read_text())
    assert any("student_0001.json is not a saved grading report" in w for w in summary["warnings"])
    assert any("no saved grading report for 1 student(s): student_0001" in w for w in summary["warnings"])


def test_a_folder_without_a_graded_run_is_a_clear_error(tmp_path, capsys):
    """Does `course report` on a folder that holds no graded run say so, and how to make one; and
    `course report` without an assignment or --term say what it needs?"""
    assert cli.main(["report", ASSIGNMENT, "--out", str(tmp_path)]) == 2
    assert "run `course autograde` first or pass --db" in capsys.readouterr().err
    assert cli.main(["report", "--out", str(tmp_path)]) == 2
    assert "name the assignment, or pass --term" in capsys.readouterr().err
    assert cli.main(["report", "--term", "--out", str(tmp_path)]) == 2
    assert "no gradebook in" in capsys.readouterr().err


# ---------------------------------------------------------------- the term view


def read_term(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def test_term_view_adds_up_each_assignments_grades(generated, generated_hw2, tmp_path):
    """Does `course report --term` give, per student, each assignment's total as its grades.csv has it
    (empty without a submission), the term's total, the late days used (started days, added up), the
    extensions and the flagged submissions, from the sqlite gradebooks of two runs?"""
    for out in (generated, generated_hw2):
        assignment = ASSIGNMENT if out == generated else HW2
        assert cli.main(["export", assignment, "--out", str(out)]) == 0
    dest = tmp_path / "term"
    args = ["report", "--term", "--out", str(generated), "--runs", str(generated_hw2), "--dest", str(dest)]
    assert cli.main(args) == 0
    term = read_term(dest / "term.csv")
    hw1, hw2 = grades_csv_totals(generated), grades_csv_totals(generated_hw2)
    late1, late2 = standings(generated), standings(generated_hw2, HW2)
    assert set(term) == set(hw1) and set(hw2) < set(hw1)
    flagged = defaultdict(int)
    for out in (generated, generated_hw2):
        for path in (out / "course" / "results").glob("*.json"):
            report = load_report(path)
            flagged[report.student_id] += any(p.kind in ("repaired", REVIEW) for p in report.problems)
    for student, row in term.items():
        assert float(row[ASSIGNMENT]) == pytest.approx(hw1[student], abs=0.006)
        assert row[HW2] == "" if student not in hw2 else float(row[HW2]) == pytest.approx(hw2[student], abs=0.006)
        assert float(row["total"]) == pytest.approx(hw1[student] + hw2.get(student, 0.0), abs=0.011)
        assert float(row["possible"]) == possible(ASSIGNMENT) + possible(HW2)
        days = [-(-int(s) // 86400) for s, _ in (late1[student], late2.get(student, (0, False))) if s > 0]
        assert int(row["late_days"]) == sum(days), student
        assert int(row["extensions"]) == late1[student][1] + late2.get(student, (0, False))[1]
        assert int(row["flagged"]) == flagged[student]
    summary = json.loads((dest / "term.json").read_text())
    assert [a["name"] for a in summary["assignments"]] == [ASSIGNMENT, HW2]
    assert [a["submissions"] for a in summary["assignments"]] == [12, 8] and summary["warnings"] == []
    page = (dest / "index.html").read_text()
    assert "The term: 12 students, 2 assignment(s)" in page and "no submission" in page


def test_term_view_reads_a_shared_postgresql_gradebook(postgres, tmp_path):
    """Does the term view read every assignment of a shared PostgreSQL gradebook (--db), each total the
    one `course export --db` writes to grades.csv?"""
    url = postgres.create_database()
    runs = {}
    for assignment, students, seed in ((ASSIGNMENT, 5, 7), (HW2, 4, 8)):
        runs[assignment] = tmp_path / assignment
        generate_class(runs[assignment], students, seed=seed, assignment=assignment, url=url)
        assert cli.main(["export", assignment, "--out", str(tmp_path / f"csv_{assignment}"), "--db", url]) == 0
    flagged_hw2 = load_report(runs[HW2] / "course" / "results" / "student_0001.json")  # flagged in hw2 only
    flagged_hw2.problems.append(Problem(REVIEW, "a test cell ran beside code the notebook installed"))
    save_report(flagged_hw2, runs[HW2] / "course")
    dest = tmp_path / "term"
    args = ["report", "--term", "--out", str(runs[ASSIGNMENT]), "--runs", str(runs[HW2]), "--db", url]
    assert cli.main([*args, "--dest", str(dest)]) == 0
    term = read_term(dest / "term.csv")
    for assignment in (ASSIGNMENT, HW2):
        expected = grades_csv_totals(tmp_path / f"csv_{assignment}")
        assert {s for s, row in term.items() if row[assignment]} == set(expected)
        for student, total in expected.items():
            assert float(term[student][assignment]) == pytest.approx(total, abs=0.006)
    flagged = defaultdict(int)  # each run's saved reports are its own homework's
    for run in runs.values():
        for path in (run / "course" / "results").glob("*.json"):
            report = load_report(path)
            flagged[report.student_id] += any(p.kind in ("repaired", REVIEW) for p in report.problems)
    assert {s: int(row["flagged"]) for s, row in term.items()} == {s: flagged[s] for s in term}
    assert flagged["student_0001"] >= 1
    summary = json.loads((dest / "term.json").read_text())
    assert any(source.startswith("postgresql://") for source in summary["sources"])
    assert summary["warnings"] == []
