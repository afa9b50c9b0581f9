"""Self-test of homework 1's grading, through real nbgrader (release, autograde, feedback).

Known submissions are graded in one run: the source (full marks), the blank release (zero), correct
answers written differently from the reference (full marks, arriving as a careless upload), the
mutants of :data:`autograder.submissions.HW1_MUTANTS` (each graded cell has one that its visible
tests let through and its hidden check catches), and broken submissions (reported by name, zero,
without stopping the others). Mutants of different answer cells share a student folder
(:func:`~autograder.submissions.mutant_students`), which must then fail exactly the union of their
cells; each mutant is also checked alone, in-process, by ``tests/test_checks.py``.
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest
from autograded import cell_errors
from nbformat.v4 import new_output

from autograder import course, gradebook, pipeline, release, rubrics
from autograder.report import load_report
from autograder.submissions import copy_notebooks, make_mutant_student, mutant_students, replace_answer
from autograder.submissions.hw1_vae import HW1_ALTERNATIVES, HW1_MUTANTS, TEMPLATE_RESET_BUG

pytestmark = pytest.mark.slow(seconds=360)
ASSIGNMENT = "hw1_vae"
SOURCE = course.source_dir(ASSIGNMENT)
MUTANT_STUDENTS = mutant_students(HW1_MUTANTS)


def _as_a_careless_upload(folder: Path) -> None:
    """Damage a correct submission in the repairable ways real uploads are damaged: notebook 01 saved
    by an old Jupyter (nbformat 3), two cells of 03 sharing an id, 05 renamed by a browser download
    and carrying 6 MB of stored output."""
    nb1 = folder / "01_autoencoder_and_vae.ipynb"
    nbformat.write(nbformat.convert(nbformat.read(nb1, as_version=4), 3), nb1)
    nb3 = folder / "03_curating_cartpole.ipynb"
    raw = json.loads(nb3.read_text())
    raw["cells"][2]["id"] = raw["cells"][1]["id"]
    nb3.write_text(json.dumps(raw))
    nb5 = folder / "05_other_environment.ipynb"
    nb = nbformat.read(nb5, as_version=4)
    next(c for c in nb.cells if c.cell_type == "code").outputs = [new_output("stream", text="x" * 6_000_000)]
    nbformat.write(nb, folder / "05_other_environment (1).ipynb")
    nb5.unlink()


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("hw1")
    released = release.release(ASSIGNMENT, out / "release_run")
    subs = out / "submissions"
    copy_notebooks(SOURCE, subs / "solutions")
    copy_notebooks(released["release"], subs / "blank")
    alt = copy_notebooks(SOURCE, subs / "alternative")
    for (notebook, grade_id), code in HW1_ALTERNATIVES.items():
        replace_answer(alt / notebook, grade_id, code)
    _as_a_careless_upload(alt)
    for student, names in MUTANT_STUDENTS.items():
        make_mutant_student(SOURCE, subs / student, [HW1_MUTANTS[name] for name in names])
    broken = subs / "broken_json"
    broken.mkdir()
    (broken / "01_autoencoder_and_vae.ipynb").write_text("{this is not json")
    (broken / "notes.ipynb").write_text("{}")
    reset = subs / "demo_reset_bug"  # the reset bug of `course demo`, alone in its notebook: it gets its hint
    reset.mkdir()
    shutil.copy(SOURCE / "03_curating_cartpole.ipynb", reset / "03_curating_cartpole.ipynb")
    replace_answer(reset / "03_curating_cartpole.ipynb", "a3_collect_frames", TEMPLATE_RESET_BUG)
    crash = subs / "kernel_crash"
    crash.mkdir()
    (crash / "05_other_environment.ipynb").write_bytes((SOURCE / "05_other_environment.ipynb").read_bytes())
    replace_answer(crash / "05_other_environment.ipynb", "a5_collect_other_frames", "import os\nos._exit(1)")
    reports = pipeline.autograde(ASSIGNMENT, subs, out / "grades", cell_timeout=120, submission_timeout=600, workers=2)
    return {
        "out": out,
        "released": released,
        "reports": {r.student_id: r for r in reports},
        "cells": gradebook.cell_scores(out / "grades" / "cells.csv"),
        "activities": gradebook.activity_scores(out / "grades" / "cells.csv"),
    }


def test_source_scores_full_marks(graded):
    """Does the source notebook (the solutions) earn every autograded point?"""
    cells = graded["cells"]["solutions"]
    assert set(cells) == {
        c.metadata["nbgrader"]["grade_id"]
        for nb in SOURCE.glob("*.ipynb")
        for c in nbformat.read(nb, as_version=4).cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
    }
    lost = {gid: s for gid, s in cells.items() if s[0] != s[1]}
    assert not lost, lost


def test_blank_release_scores_zero(graded):
    """Does the blank release earn no point at all?"""
    earned = {gid: s for gid, s in graded["cells"]["blank"].items() if s[0] != 0}
    assert not earned, earned


def test_alternative_correct_answers_score_full_marks(graded):
    """Does a correct answer written differently from the reference still earn full marks, even from
    an old-format, duplicate-id, renamed, bloated upload (:func:`_as_a_careless_upload`)?"""
    lost = {gid: s for gid, s in graded["cells"]["alternative"].items() if s[0] != s[1]}
    assert not lost, lost


def test_repaired_upload_problems_are_reported_by_file(graded):
    """Is each repair of the careless upload named, with its file, in the report?"""
    problems = graded["reports"]["alternative"].summary()
    assert "01_autoencoder_and_vae.ipynb was upgraded from nbformat 3 to 4" in problems
    assert "03_curating_cartpole.ipynb had 1 duplicate cell id(s)" in problems
    assert "05_other_environment (1).ipynb was graded as 05_other_environment.ipynb" in problems
    assert "stored outputs dropped before grading" in problems
    assert "ignored unexpected" not in problems


@pytest.mark.parametrize("student", sorted(MUTANT_STUDENTS))
def test_mutants_fail_exactly_their_cells(graded, student):
    """Does each student of mutants fail exactly the cells its bugs break, and keep every other cell
    of the notebooks it submitted (so a bug costs only its own activity's points)?"""
    mutants = [HW1_MUTANTS[name] for name in MUTANT_STUDENTS[student]]
    submitted = {m.notebook for m in mutants}
    cells = {gid: s for gid, s in graded["cells"][student].items() if _notebook_of(graded, gid) in submitted}
    failed = {gid for gid, (score, top) in cells.items() if score < top}
    expected = set().union(*(m.fails for m in mutants))
    assert failed == expected, (
        cells,
        cell_errors(graded["out"] / "grades", student, ASSIGNMENT, failed ^ expected),
        graded["reports"][student].summary(),
    )
    assert not graded["reports"][student].problems or all(
        p.kind == "missing" for p in graded["reports"][student].problems
    ), graded["reports"][student].problems


def _notebook_of(graded, grade_id: str) -> str:
    with (graded["out"] / "grades" / "cells.csv").open() as f:
        for row in csv.DictReader(f):
            if row["grade_id"] == grade_id:
                return row["notebook"] + ".ipynb"
    raise KeyError(grade_id)


def test_broken_submission_is_reported_by_name(graded):
    """Is a notebook that is not JSON reported by student and file, scored zero, with missing notebooks named too?"""
    problems = graded["reports"]["broken_json"].summary()
    assert "01_autoencoder_and_vae.ipynb is not a readable notebook" in problems
    assert "03_curating_cartpole.ipynb is missing" in problems
    assert "notes.ipynb" in problems
    assert all(s[0] == 0 for s in graded["cells"]["broken_json"].values())
    report = (graded["out"] / "grades" / "report.txt").read_text()
    assert "broken_json:" in report


def test_kernel_crash_is_reported_and_others_graded(graded):
    """Does a submission whose kernel dies score zero for that notebook while the others are graded?"""
    a5 = {gid: s for gid, s in graded["cells"]["kernel_crash"].items() if gid.startswith("a5")}
    assert a5 and all(s[0] == 0 for s in a5.values())
    assert graded["reports"]["kernel_crash"].problems
    assert graded["activities"]["solutions"]["a5"][0] == graded["activities"]["solutions"]["a5"][1]


def test_grades_csv_has_one_row_per_student_and_notebook(graded):
    """Does grades.csv list every student and notebook with the documented columns?"""
    with (graded["out"] / "grades" / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == gradebook.GRADES_FIELDS
    students = {r["student_id"] for r in rows}
    assert {"solutions", "blank", "alternative", "broken_json", *MUTANT_STUDENTS} <= students
    assert len(rows) == len(students) * 3


# What the course adds must never reach students. (Submissions made from the source notebook
# contain its solutions themselves, so "BEGIN SOLUTION" is checked on the blank student only.)
LEAKS = ("autograder", "course_lib.solutions", "BEGIN HIDDEN TESTS", "checks.a")


def _assert_no_leak(text: str, where: str) -> None:
    for marker in LEAKS:
        assert marker not in text, f"{marker!r} appears in {where}"


def test_release_and_kit_hold_no_solutions_or_checks(graded):
    """Do the released notebooks and the student kit leave out the solutions and the hidden checks?"""
    release_dir = graded["released"]["release"]
    for nb_path in release_dir.glob("*.ipynb"):
        _assert_no_leak(nb_path.read_text(), nb_path.name)
        assert "BEGIN SOLUTION" not in nb_path.read_text()
        nb = nbformat.read(nb_path, as_version=4)
        assert any("raise NotImplementedError()" in c.source for c in nb.cells)
    with zipfile.ZipFile(graded["released"]["kit"]) as kit:
        names = kit.namelist()
        assert any(n.endswith(".whl") for n in names) and any(n.endswith("environment.yml") for n in names)
        for name in names:
            if name.endswith(".ipynb"):
                _assert_no_leak(kit.read(name).decode(), name)
    with zipfile.ZipFile(graded["released"]["wheel"]) as wheel:
        files = wheel.namelist()
    assert any(f.startswith("course_lib/") for f in files)
    assert not [f for f in files if "solutions" in f or f.startswith("autograder")], files


def test_feedback_shows_messages_not_checks(graded):
    """Does the feedback HTML show why a check failed without the hidden tests' code or the reference?"""
    feedback = graded["out"] / "grades" / "feedback"
    pages = sorted(feedback.glob("*/*.html"))
    assert len(pages) >= 3 * 3
    for page in pages:
        _assert_no_leak(page.read_text(), str(page.relative_to(feedback)))
    for page in (feedback / "blank").glob("*.html"):
        assert "BEGIN SOLUTION" not in page.read_text()
    # the wrong-environment mutant passes the visible asserts, so the hidden check speaks
    student = next(s for s, names in MUTANT_STUDENTS.items() if "a5_wrong_environment" in names)
    mutant_page = (feedback / student / "05_other_environment.html").read_text()
    assert "CheckFailed" in mutant_page and "renders of CartPole-v1" in mutant_page
    assert "nonce" not in mutant_page and "vnd.course.probe" not in mutant_page


def _rubrics() -> dict[tuple[str, str], str]:
    """``{(notebook, grade_id): rubric}``: the mark scheme of each written question of the source."""
    found = {}
    for path in sorted(SOURCE.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if rubrics.is_rubric(cell):
                scheme = cell.source.split(rubrics.BEGIN)[1].split(rubrics.END)[0].strip(" =\n")
                found[path.name, cell.metadata["nbgrader"]["grade_id"]] = scheme
    return found


def _formgrader_page(autograded: Path) -> str:
    """The HTML that nbgrader's formgrader serves for a graded notebook (its ``SubmissionHandler``:
    nbconvert's HTMLExporter with formgrader's ``formgrade`` template)."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": ASSIGNMENT, "notebook_id": autograded.stem, "submission_id": "x", "index": 0}
    resources |= {"total": 1, "base_url": "/", "student": "blank", "last_name": "", "first_name": ""}
    resources["notebook_path"] = str(autograded)
    html, _ = HTMLExporter(config=config).from_filename(str(autograded), resources=resources)
    return html


def test_rubrics_reach_the_grader_not_the_student(graded):
    """Does each written answer's rubric (nbgrader's mark scheme, in a 0-point task cell) stay out of the
    released notebooks and the feedback, but appear in the graded notebook that formgrader shows the
    grader, without leaving a blank submission waiting for a manual grade?"""
    schemes = _rubrics()
    written = {
        c.metadata["nbgrader"]["grade_id"]
        for nb in SOURCE.glob("*.ipynb")
        for c in nbformat.read(nb, as_version=4).cells
        if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")
    }
    assert {gid.removesuffix("_rubric") for _, gid in schemes} == written
    root = graded["out"] / "grades"
    for (notebook, _), scheme in schemes.items():
        released = (graded["released"]["release"] / notebook).read_text()
        assert "MARK SCHEME" not in released and scheme[:60] not in released, notebook
        autograded = course.step_dir(root / "course", "autograded", "blank", ASSIGNMENT) / notebook
        assert scheme in "\n".join(c.source for c in nbformat.read(autograded, as_version=4).cells), notebook
        criterion = scheme.split("1 point for ")[1][:20]  # plain words of the rubric, as HTML shows them
        assert criterion in _formgrader_page(autograded), f"formgrader's page of {notebook} lacks its rubric"
        for student in ("blank", "solutions"):
            page = (root / "feedback" / student / notebook.replace(".ipynb", ".html")).read_text()
            assert "MARK SCHEME" not in page and scheme[:60] not in page, (student, notebook)
    with (root / "grades.csv").open() as f:
        blank = [r for r in csv.DictReader(f) if r["student_id"] == "blank"]
    assert blank and all(r["needs_manual_grade"] == "False" for r in blank), blank


def test_class_report_summarises_the_class(graded):
    """Does the class report written by `course autograde` hold every student, each cell's pass rate as
    cells.csv has it, the mutants' failures grouped by the hidden test that decided, and the repaired
    and crashed submissions with links to their feedback?"""
    out = graded["out"] / "grades"
    summary = json.loads((out / "report" / "report.json").read_text())
    assert summary["students"] == sorted(graded["reports"]) and summary["warnings"] == []
    for cell in summary["cells"]:
        scores = [cells[cell["grade_id"]] for cells in graded["cells"].values()]
        assert cell["pass_rate"] == round(sum(s >= top for s, top in scores) / len(scores), 4), cell
    saved = {p.stem: load_report(p) for p in (out / "course" / "results").glob("*.json")}
    assert set(saved) == set(graded["reports"])
    for student, names in MUTANT_STUDENTS.items():  # each saved report names the cells its bugs fail
        failed = {o.cell for o in saved[student].outcomes if not o.passed}
        assert set().union(*(HW1_MUTANTS[name].fails for name in names)) <= failed, student
    # the hidden checks' verdicts are grouped by the test that decided, the visible tests' by their error
    tests = {f["test"] for c in summary["cells"] for f in c["failures"]}
    assert any(t.startswith("autograder.checks.") for t in tests) and "NotImplementedError" in tests
    total = summary["scores"]["total"]
    autograded = sum(top for _, top in graded["cells"]["solutions"].values())  # written answers: by hand
    assert total["points"][summary["students"].index("solutions")] == autograded < total["max"]
    listed = {what: [entry["student"] for entry in entries] for what, entries in summary["listed"].items()}
    assert "alternative" in listed["repaired"] and "kernel_crash" in listed["kernel died"]
    assert "broken_json" in listed["missing or unreadable notebooks"]
    page = (out / "report" / "index.html").read_text()
    assert "../feedback/kernel_crash/05_other_environment.html" in page
    assert (out / "feedback" / "kernel_crash" / "05_other_environment.html").exists()
    assert set(summary["seconds"]) == set(graded["reports"])


def test_class_report_opens_in_a_browser_with_its_plots(graded, tmp_path):
    """Does the class report open in chromium with all of its plots drawn (screenshot kept)?"""
    from browser_helpers import launch_chromium
    from playwright.sync_api import sync_playwright

    page_path = graded["out"] / "grades" / "report" / "index.html"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_path.as_uri())
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert len(widths) == 3 and all(w > 300 for w in widths), widths
            assert page.locator("h1").inner_text() == "hw1_vae: class report"
            shot = tmp_path / "class_report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    if os.environ.get("COURSE_ARTIFACTS"):
        dest = Path(os.environ["COURSE_ARTIFACTS"]) / "browser"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)


def test_the_demos_reset_bug_gets_its_hint_in_the_feedback(graded):
    """Does the homework template's reset loop (the bug of `course demo`) fail its visible assert, named
    by its line, and get its bug's hint in the report and on its feedback page?"""
    report = graded["reports"]["demo_reset_bug"]
    (outcome,) = [o for o in report.outcomes if not o.passed]
    assert (outcome.cell, outcome.ename, outcome.site) == ("a3_reset_pattern", "AssertionError", "a3_reset_pattern:7")
    hint = HW1_MUTANTS["a3_template_reset_bug"].hint
    assert report.hints == {"a3_reset_pattern": hint}
    page = (graded["out"] / "grades" / "feedback" / "demo_reset_bug" / "03_curating_cartpole.html").read_text()
    assert "Likely cause:" in page and html.escape(hint, quote=False) in page


def _machine_paths(graded) -> list[str]:
    """The grading machine's folders that no page a student gets back may name."""
    paths = {str(course.REPO), sys.prefix, sys.base_prefix, str(Path.home()), str(graded["out"].resolve())}
    paths |= {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib")}
    paths |= {str(Path(p).resolve()) for p in list(paths)}
    return [*sorted(p for p in paths if len(Path(p).parts) > 1), "/tmp/ipykernel_"]


def test_feedback_pages_name_no_folder_of_the_grading_machine(graded):
    """Does no feedback page of the class (the demo's reset bug's gymnasium warnings, tracebacks through
    torch and numpy, a crashed kernel, unreadable notebooks) name a folder of the grading machine,
    its site-packages, its Python, the repository, the run's folder or the home?"""
    pages = sorted((graded["out"] / "grades" / "feedback").glob("*/*.html"))
    assert len(pages) >= 3 * 3
    named = {
        (page.parent.name, page.name, path)
        for page in pages
        for path in _machine_paths(graded)
        if path in page.read_text()
    }
    assert named == set()
    warned = (graded["out"] / "grades" / "feedback" / "demo_reset_bug" / "03_curating_cartpole.html").read_text()
    assert "&lt;site-packages&gt;/gymnasium/" in warned  # the warning is kept, its path hidden


def test_feedback_math_renders_in_chromium_with_the_network_off(graded, tmp_path):
    """Does a feedback page opened in chromium, offline and with every request off the machine refused,
    show its formulas rendered (MathML laid out by the browser, no LaTeX left), asking for nothing?"""
    from browser_helpers import launch_chromium
    from playwright.sync_api import sync_playwright

    page_path = graded["out"] / "grades" / "feedback" / "solutions" / "01_autoencoder_and_vae.html"
    asked: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1100, "height": 900})

            def off_machine(route) -> None:
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    asked.append(route.request.url)
                    route.abort()

            context.route("**/*", off_machine)
            page = context.new_page()
            page.goto(page_path.as_uri())
            formulas = page.evaluate(
                """() => Array.from(document.querySelectorAll('.rendered_html math')).map(m => [
                    m.namespaceURI, getComputedStyle(m).display, m.getBoundingClientRect().width])"""
            )
            text = "\n".join(page.locator(".text_cell_render").all_inner_texts())  # the markdown cells
            page.locator(".rendered_html math").first.scroll_into_view_if_needed()
            shot = tmp_path / "feedback_math_offline.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert asked == []
    assert len(formulas) > 10
    for namespace, display, width in formulas:
        assert namespace == "http://www.w3.org/1998/Math/MathML" and display in ("math", "block math") and width > 0
    assert "\\mathcal" not in text and "\\sigma" not in text and "$" not in text
    if os.environ.get("COURSE_ARTIFACTS"):
        dest = Path(os.environ["COURSE_ARTIFACTS"]) / "browser"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, dest / shot.name)
