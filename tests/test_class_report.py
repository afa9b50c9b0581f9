"""The class report (autograder.class_report) on a generated class: its numbers, its escaping, and what
it says about files it cannot read. Classes graded through nbgrader are reported in
tests/test_grading.py (sqlite, in a browser) and tests/test_tamper.py (PostgreSQL)."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest

from autograder import cli
from autograder.report import CellOutcome, load_report, save_report

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_report import ASSIGNMENT, generate_class  # the benchmark's generator, in one place

pytestmark = pytest.mark.slow(seconds=40)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("class")
    generate_class(out, 12, seed=3)
    return out


def test_numbers_are_those_of_the_gradebook_and_the_saved_reports(generated, tmp_path):
    """Does report.json hold every student, each cell's pass rate as cells.csv has it, and each failure
    group with the number of students whose saved report names that test?"""
    assert cli.main(["export", ASSIGNMENT, "--out", str(generated)]) == 0
    assert cli.main(["report", ASSIGNMENT, "--out", str(generated), "--dest", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "report.json").read_text())
    assert len(summary["students"]) == 12 and summary["warnings"] == []

    rows = [r for r in csv.DictReader((generated / "cells.csv").open()) if r["kind"] == "autograded"]
    reports = [load_report(p) for p in sorted((generated / "course" / "results").glob("*.json"))]
    for cell in summary["cells"]:
        mine = [r for r in rows if r["grade_id"] == cell["grade_id"]]
        assert cell["pass_rate"] == round(sum(float(r["score"]) >= float(r["max_score"]) for r in mine) / 12, 4)
        for failure in cell["failures"]:
            named = [
                o
                for r in reports
                for o in r.outcomes
                if o.cell == cell["grade_id"] and not o.passed and (o.site or o.ename) == failure["test"]
            ]
            assert failure["students"] == len(named) > 0
    points = summary["scores"]["total"]["points"]
    assert summary["scores"]["total"]["mean"] == pytest.approx(sum(points) / 12, abs=1e-3)
    assert {"scores.png", "pass_rate.png", "grading_time.png"} <= {p.name for p in tmp_path.iterdir()}


def test_student_text_is_escaped_and_unreadable_reports_are_named(generated, tmp_path):
    """Is a message or an answer holding HTML shown as text, a similar pair shown side by side, and a
    corrupt saved report named under Warnings while the others are reported?"""
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
        "pairs": [
            {
                "a": "student_0002",
                "b": "student_0003",
                "score": 0.9,
                "cells": [{**pair, "answer_a": "x = <b>1</b>", "answer_b": "y = 1"}],
            }
        ],
    }
    (out / "similarity.json").write_text(json.dumps(similarity))
    assert cli.main(["report", ASSIGNMENT, "--out", str(out)]) == 0
    page = (out / "report" / "index.html").read_text()
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "x = &lt;b&gt;1&lt;/b&gt;" in page and "student_0002 and student_0003" in page
    summary = json.loads((out / "report" / "report.json").read_text())
    assert any("student_0001.json is not a saved grading report" in w for w in summary["warnings"])
    assert any("no saved grading report for 1 student(s): student_0001" in w for w in summary["warnings"])


def test_a_folder_without_a_graded_run_is_a_clear_error(tmp_path, capsys):
    """Does `course report` on a folder that holds no graded run say so, and how to make one?"""
    assert cli.main(["report", ASSIGNMENT, "--out", str(tmp_path)]) == 2
    assert "run `course autograde` first or pass --db" in capsys.readouterr().err
