"""Self-test of homework 2's grading, through real nbgrader (release, autograde, feedback).

Known submissions are graded in one run: the source (full marks), the blank release (zero), correct
answers written differently from the reference (full marks), an answer that reaches for the
reference (it earns what its own code earns), and the mutants of
:data:`autograder.submissions.HW2_MUTANTS`, grouped into student folders by
:func:`~autograder.submissions.mutant_students` (each notebook of hw2 holds one activity, so a folder
must fail exactly the union of its mutants' cells, and only in its mutants' activities).
"""

from __future__ import annotations

import zipfile

import nbformat
import pytest
from attacks import made_up_payload, smuggled, structures
from autograded import cell_errors

from autograder import course, gradebook, pipeline, release
from autograder.submissions import copy_notebooks, make_mutant_student, mutant_students, replace_answer
from autograder.submissions.hw2_world_models import HW2_ALTERNATIVES, HW2_CLAMPED_OUTPUT_BUG, HW2_MUTANTS

pytestmark = pytest.mark.slow(seconds=280)
ASSIGNMENT = "hw2_world_models"
SOURCE = course.source_dir(ASSIGNMENT)
NB1, NB2, NB3 = "01_data_and_conv_vae.ipynb", "02_vae_loss.ipynb", "03_train_and_rnn_dataset.ipynb"

# An answer that looks for the reference instead of being finished. It carries a bug that only a
# hidden check finds (a clamp where the decoder's sigmoid should be) and hands over to the reference
# where it can reach it: by importing it under a disguised name, or by looking through the callers'
# frames for the reference model (where a hidden check that compared in the kernel would hold it).
# The looking is smuggled in pickled bytes (tests/attacks.py), so the static scan only reports it for
# review and the defenses behind the scan are what is tested: the sandbox hides the reference, and the
# judge compares outside the kernel.
PEEKS_AT_REFERENCE = {
    (NB1, "w1_conv_vae"): HW2_CLAMPED_OUTPUT_BUG
    + smuggled(
        """
import inspect, runpy


class PeekingVAE(ConvVAE):
    def decode(self, z):
        frame = inspect.currentframe().f_back
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if type(value).__name__ == "ConvVAE" and type(value).__module__ != "__main__":
                    return value.decode(z)
            frame = frame.f_back
        return super().decode(z)


try:
    ConvVAE = runpy.run_module("course_lib.solutions.conv_vae")["ConvVAE"]
    ConvVAE.__module__ = "__main__"
except ImportError:
    ConvVAE = PeekingVAE
"""
    ),
}
#: What that answer's bug costs: the checks that compare its decoder with the reference.
PEEKS_AT_REFERENCE_FAILS = {"w1_encode_decode", "w1_sampling"}
PEEKS_AT_REFERENCE_STUDENT = "peeks_at_reference"


def _notebook_cells() -> dict[str, set[str]]:
    """grade_ids of the autograded (code) test cells of each source notebook."""
    cells = {}
    for path in sorted(SOURCE.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells[path.name] = {
            c.metadata["nbgrader"]["grade_id"]
            for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
        }
    return cells


MUTANT_STUDENTS = mutant_students(HW2_MUTANTS)
#: The blank release with a payload that replaces every probe with records made up without an answer.
MADE_UP_STUDENT = "forges_made_up"


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("hw2")
    released = release.release(ASSIGNMENT, out / "release_run")
    subs = out / "submissions"
    copy_notebooks(SOURCE, subs / "solutions")
    copy_notebooks(released["release"], subs / "blank")
    alt = copy_notebooks(SOURCE, subs / "alternative")
    for (notebook, grade_id), code in HW2_ALTERNATIVES.items():
        replace_answer(alt / notebook, grade_id, code)
    for student, names in MUTANT_STUDENTS.items():
        make_mutant_student(SOURCE, subs / student, [HW2_MUTANTS[name] for name in names])
    peeks = subs / PEEKS_AT_REFERENCE_STUDENT
    peeks.mkdir()
    for (notebook, grade_id), code in PEEKS_AT_REFERENCE.items():
        (peeks / notebook).write_bytes((SOURCE / notebook).read_bytes())
        replace_answer(peeks / notebook, grade_id, code)
    forger = copy_notebooks(released["release"], subs / MADE_UP_STUDENT)
    payload = smuggled(made_up_payload(structures(ASSIGNMENT)))
    for notebook in (NB1, NB2, NB3):
        nb = nbformat.read(forger / notebook, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution"))
        first.source = payload + first.source
        nbformat.write(nb, forger / notebook)
    reports = pipeline.autograde(ASSIGNMENT, subs, out / "grades", cell_timeout=120, submission_timeout=600, workers=2)
    return {
        "out": out,
        "released": released,
        "reports": {r.student_id: r for r in reports},
        "cells": gradebook.cell_scores(out / "grades" / "cells.csv"),
        "activities": gradebook.activity_scores(out / "grades" / "cells.csv"),
    }


def test_test_cells_are_named_after_their_activity():
    """Does every notebook hold test cells of exactly one activity (w1, w2, w3), in order?"""
    cells = _notebook_cells()
    assert sorted(cells) == [NB1, NB2, NB3]
    assert [{gid.split("_")[0] for gid in ids} for ids in cells.values()] == [{"w1"}, {"w2"}, {"w3"}]


def test_source_scores_full_marks(graded):
    """Does the source notebook (the solutions) earn every autograded point, in every activity?"""
    cells = graded["cells"]["solutions"]
    assert set(cells) == set().union(*_notebook_cells().values())
    lost = {gid: s for gid, s in cells.items() if s[0] != s[1]}
    assert not lost, lost
    assert not graded["reports"]["solutions"].problems


def test_blank_release_scores_zero(graded):
    """Does the blank release earn no point at all?"""
    earned = {gid: s for gid, s in graded["cells"]["blank"].items() if s[0] != 0}
    assert not earned, earned


def test_made_up_records_of_every_check_earn_nothing_and_are_named(graded):
    """Does a payload that replaces every probe of homework 2 with records of the right structure made
    without an answer (a correct answer's shapes, statistics, descriptions and traces) earn nothing,
    and is it named?"""
    cells = graded["cells"][MADE_UP_STUDENT]
    assert set().union(*_notebook_cells().values()) <= set(cells)
    earned = {gid: s for gid, s in cells.items() if s[0] != 0}
    assert not earned, earned
    problems = graded["reports"][MADE_UP_STUDENT].summary()
    assert "for review" in problems and "unpickles data (pickle)" in problems, problems


def test_alternative_correct_answers_score_full_marks(graded):
    """Does a correct answer with other names, layer order and idioms still earn every point of its cells?"""
    cells = graded["cells"]["alternative"]
    lost = {gid: s for gid, s in cells.items() if s[0] != s[1]}
    assert not lost, lost


def test_reaching_for_the_reference_gains_nothing(graded):
    """Does an answer that imports the reference under a disguised name, or finds it in the hidden
    check's frames, earn only what its own code earns (the reference is neither on disk in the
    sandbox nor in the kernel: the judge compares outside it)?"""
    cells = graded["cells"][PEEKS_AT_REFERENCE_STUDENT]
    own = _notebook_cells()[NB1]
    failed = {gid for gid in own if cells[gid][0] != cells[gid][1]}
    assert failed == PEEKS_AT_REFERENCE_FAILS, {gid: cells[gid] for gid in own}
    assert all(cells[gid][0] == 0 for gid in failed)
    problems = graded["reports"][PEEKS_AT_REFERENCE_STUDENT].summary()
    assert "for review" in problems and "unpickles data (pickle)" in problems, problems
    assert "tampering suspected" not in problems, problems


@pytest.mark.parametrize("student", sorted(MUTANT_STUDENTS))
def test_mutants_fail_exactly_their_cells(graded, student):
    """Does each folder of mutants fail exactly the cells its bugs break, and keep every other cell of
    the notebooks it submitted?"""
    mutants = [HW2_MUTANTS[name] for name in MUTANT_STUDENTS[student]]
    own = set().union(*(_notebook_cells()[m.notebook] for m in mutants))
    cells = graded["cells"][student]
    failed = {gid for gid in own if cells[gid][0] < cells[gid][1]}
    expected = set().union(*(m.fails for m in mutants))
    assert failed == expected, (
        {gid: cells[gid] for gid in own},
        cell_errors(graded["out"] / "grades", student, ASSIGNMENT, failed ^ expected),
        graded["reports"][student].summary(),
    )


def test_grading_builds_the_rnn_dataset(graded):
    """Does grading the source run notebook 03 to its end: training, then one .npz per recorded rollout?"""
    autograded = course.step_dir(graded["out"] / "grades" / "course", "autograded", "solutions", ASSIGNMENT) / NB3
    nb = nbformat.read(autograded, as_version=4)
    outputs = {
        c.metadata.get("nbgrader", {}).get("grade_id"): "".join(o.get("text", "") for o in c.get("outputs", []))
        for c in nb.cells
        if c.cell_type == "code"
    }
    assert "validation MSE" in outputs["train"] and "mean-image baseline" in outputs["train"]
    rollouts = int(outputs["setup"].split(" rollouts")[0].split()[-1])
    assert f"{rollouts} files in data/rnn_" in outputs["build_rnn_dataset"], outputs["build_rnn_dataset"]


LEAKS = ("autograder", "course_lib.solutions", "BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "checks.w")
#: Feedback shows the student's own cells, so submissions made from the source hold its solution
#: markers; everything else must stay out (tracebacks are cut at the hidden-test marker).
FEEDBACK_LEAKS = ("autograder", "course_lib.solutions", "BEGIN HIDDEN TESTS", "checks.w")
#: Fragments of the solutions that must not appear in any released code cell.
SOLUTION_CODE = ("torch.exp(0.5 * logvar)", "fc_decode", "torch.clamp(kl", "np.savez(path")


def _assert_no_leak(text: str, where: str, leaks: tuple[str, ...] = LEAKS) -> None:
    for marker in leaks:
        assert marker not in text, f"{marker!r} appears in {where}"


def test_release_and_kit_hold_no_solutions_or_checks(graded):
    """Do the released notebooks and the student kit leave out the solutions, the checks and the data?"""
    release_dir = graded["released"]["release"]
    assert sorted(p.name for p in release_dir.iterdir()) == [NB1, NB2, NB3]
    for nb_path in release_dir.glob("*.ipynb"):
        _assert_no_leak(nb_path.read_text(), nb_path.name)
        nb = nbformat.read(nb_path, as_version=4)
        assert any("raise NotImplementedError()" in c.source for c in nb.cells)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        for fragment in SOLUTION_CODE:
            assert fragment not in code, f"{fragment!r} appears in the code of the released {nb_path.name}"
    with zipfile.ZipFile(graded["released"]["kit"]) as kit:
        for name in kit.namelist():
            if name.endswith(".ipynb"):
                _assert_no_leak(kit.read(name).decode(), name)
    with zipfile.ZipFile(graded["released"]["wheel"]) as wheel:
        files = wheel.namelist()
    assert not [f for f in files if "solutions" in f or f.startswith("autograder")], files


def test_feedback_shows_messages_not_checks(graded):
    """Does the feedback say why a check failed, without the hidden tests' code or the reference?"""
    feedback = graded["out"] / "grades" / "feedback"
    pages = sorted(feedback.glob("*/*.html"))
    assert len(pages) >= 3 * 3 + sum(len({HW2_MUTANTS[m].notebook for m in ms}) for ms in MUTANT_STUDENTS.values())
    for page in pages:
        _assert_no_leak(page.read_text(), str(page.relative_to(feedback)), FEEDBACK_LEAKS)
        if page.parent.name == "blank":
            assert "BEGIN SOLUTION" not in page.read_text(), page.name
    # The visible test fails first for some bugs, the hidden check for others: either message will do.
    expected = {
        "w1_logvar_as_logsigma": "logvar is the log of the variance",
        "w2_floor_after_batch_mean": "floor each sample",
        "w2_mean_over_pixels": "sum the squared error over the pixels",
        "w3_sampled_z": "not a sampled z",
        "w3_shifted_actions": "aligned with its frames",
        "w1_leftover_layer": "4,349,603 parameters",
    }
    for mutant, message in expected.items():
        page = (feedback / _student_of(mutant) / HW2_MUTANTS[mutant].notebook.replace(".ipynb", ".html")).read_text()
        assert message in page, mutant
    # mean over pixels passes the visible gradient test (it only looks at mu); the hidden check says why it fails
    hidden = (feedback / _student_of("w2_mean_over_pixels") / NB2.replace(".ipynb", ".html")).read_text()
    assert "CheckFailed" in hidden and "with respect to x_hat differs" in hidden
    assert "nonce" not in hidden and "vnd.course.probe" not in hidden
    # the likely bug (autograder.hints), after the first failed cell of a notebook with one known bug
    floor, hint = _student_of("w2_floor_after_batch_mean"), HW2_MUTANTS["w2_floor_after_batch_mean"].hint
    assert graded["reports"][floor].hints.get("w2_kl_floor") == hint
    assert f"Likely cause:</strong> {hint}" in (feedback / floor / NB2.replace(".ipynb", ".html")).read_text()
    assert not graded["reports"]["blank"].hints and not graded["reports"]["solutions"].hints


def _student_of(mutant: str) -> str:
    return next(student for student, mutants in MUTANT_STUDENTS.items() if mutant in mutants)
