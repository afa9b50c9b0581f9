"""Feedback hints (autograder.hints): failure signatures, unambiguous matches, leave-one-out precision.

Signatures are computed in-process (the notebook's cells run in order, each check probed and judged
as nbgrader's run does) for the cheap notebooks of homework 2; the library itself is built by
``python -m autograder.hints build`` and checked here against what it was computed from.
"""

from __future__ import annotations

import re
import shutil

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbgrader.preprocessors import ClearSolutions

from autograder import hints
from autograder.course import source_dir
from autograder.hints import ALL_MUTANTS, Entry, Library
from autograder.report import CellOutcome
from autograder.submissions.hw1_vae import HW1_MUTANTS, HW1_VARIANTS, NB3
from autograder.submissions.hw2_world_models import HW2_MUTANTS, HW2_VARIANTS, W2, W3

HW2 = "hw2_world_models"
#: Mutants whose notebooks run in a fraction of a second in-process.
CHEAP = sorted(name for name, m in ALL_MUTANTS.items() if m.notebook in (W2, W3))


@pytest.fixture(scope="module")
def library() -> Library:
    return hints.load_library()


def _entry(library: Library, name: str) -> Entry:
    return next(e for e in library.entries if e.name == name)


def _outcomes(notebook: str, sig: hints.Signature) -> list[CellOutcome]:
    """The outcomes nbgrader's process logs for a notebook of homework 2 that fails with ``sig``."""
    failed = dict(sig)
    out = []
    for cell in nbformat.read(source_dir(HW2) / notebook, as_version=4).cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if not cell.metadata.get("nbgrader", {}).get("grade"):
            continue
        test = failed.get(grade_id)
        if test is None:
            out.append(CellOutcome(notebook, grade_id, True))
        elif " at " in test:  # a visible test's line: "AssertionError at w3_encode:12"
            ename, _, site = test.partition(" at ")
            out.append(CellOutcome(notebook, grade_id, False, ename, "raised", site))
        elif ":" in test:  # a judge's site
            out.append(CellOutcome(notebook, grade_id, False, "CheckFailed", "wrong", test))
        else:
            out.append(CellOutcome(notebook, grade_id, False, test, "raised"))
        assert test is None or hints.decided_by(out[-1]) == test
    return out


def test_the_library_is_up_to_date(library):
    """Was the stored library computed from the current checks, source notebooks and mutants?"""
    assert library.fingerprint == hints.fingerprint(), (
        f"autograder/{hints.LIBRARY_PATH.name} is out of date (the checks, the source notebooks or the "
        f"mutants changed): regenerate it with `{hints.BUILD_COMMAND}`"
    )
    assert {e.name for e in library.entries} | set(library.unstable) == set(ALL_MUTANTS)


def test_every_mutant_fails_the_cells_it_declares(library):
    """Does each stored signature fail exactly the cells its mutant or variant declares?"""
    for entry in library.entries:
        assert {grade_id for grade_id, _ in entry.signature} == ALL_MUTANTS[entry.name].fails, entry.name


@pytest.mark.parametrize("name", CHEAP)
def test_signatures_are_stable_across_seeds(library, name):
    """Is a mutant's signature the same for other seeds than the library's, and the stored one?"""
    first, second = hints.mutant_signatures(name, seeds=(5, 777))
    assert first == second == _entry(library, name).signature


def test_a_held_out_variant_gets_its_bugs_hint(library):
    """Does a variant left out of the library, judged afresh, get the hint of its own bug?"""
    name = "w2_floor_after_batch_mean_two_steps"
    (sig,) = hints.mutant_signatures(name, seeds=(31,))
    rest = Library(tuple(e for e in library.entries if e.name != name))
    bug = (HW1_VARIANTS | HW2_VARIANTS)[name].bug
    assert rest.hint(sig, HW2, W2) == HW2_MUTANTS[bug].hint != ""


def test_an_ambiguous_signature_gets_no_hint(library):
    """Does a signature that mutants of two different bugs share get no hint, though each alone would?"""
    entry = _entry(library, "w2_floor_after_batch_mean")
    assert library.hint(entry.signature, HW2, W2) is not None
    other = Entry("twin", "w2_kl_detached", HW2, W2, entry.signature)
    assert hints.match(entry.signature, HW2, W2, (*library.entries, other)) is None
    assert Library((*library.entries, other)).hint(entry.signature, HW2, W2) is None


def test_a_hint_below_the_precision_threshold_is_not_shown():
    """Is a bug's hint withheld when held-out mutants show it wrongly too often, even for a signature
    only that bug has?"""
    unique, shared = frozenset({("w2_recon", "m:1")}), frozenset({("w2_kl_floor", "m:2")})
    bug, other = "w2_mean_over_pixels", "w2_kl_detached"
    entries = (
        Entry("a", bug, HW2, W2, unique),
        Entry("b", bug, HW2, W2, unique),
        Entry("c", bug, HW2, W2, shared),
        Entry("d", other, HW2, W2, shared),
    )
    tally = hints.leave_one_out(entries)[bug]
    assert (tally.shown, tally.right, tally.wrong) == (3, 2, 1)
    assert Library(entries, threshold=0.9).hint(unique, HW2, W2) is None
    assert Library(entries, threshold=0.6).hint(unique, HW2, W2) == HW2_MUTANTS[bug].hint


@pytest.mark.parametrize("notebook", [W2, W3])
def test_a_correct_answer_and_the_blank_release_get_no_hint(library, notebook):
    """Do the source's answers (no failure) and the release's blank answers (unanswered) get no hint?"""
    (correct,) = hints.answer_signatures(HW2, notebook, seeds=(3,))
    assert correct == frozenset() and library.hint(correct, HW2, notebook) is None
    nb, _ = ClearSolutions().preprocess(nbformat.read(source_dir(HW2) / notebook, as_version=4), {})
    blank = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution") and not c.metadata["nbgrader"].get("grade")
    }
    (unanswered,) = hints.answer_signatures(HW2, notebook, blank, seeds=(3,))
    assert unanswered and hints.UNANSWERED in {site for _, site in unanswered}
    assert library.hint(unanswered, HW2, notebook) is None


def test_hints_never_hold_the_checks_inputs():
    """Does every hint hold no number but 0, 1 and 2 (the range [0, 1], exp(logvar / 2)), so none of
    the inputs a check draws or the values it expects, and is every bug given one?"""
    for name, mutant in ALL_MUTANTS.items():
        if mutant.bug is None:
            assert mutant.hint.endswith(".") and len(mutant.hint) > 20, name
            assert set(re.findall(r"\d+(?:\.\d+)?", mutant.hint)) <= {"0", "1", "2"}, name
        else:
            assert mutant.hint == "" and ALL_MUTANTS[mutant.bug].bug is None, name


def test_the_annotated_notebook_carries_the_hint_in_its_first_failing_cell(library, tmp_path):
    """Does annotate put "Likely cause: ..." after the error of the first failed cell (once, however
    often it runs), which the feedback's HTML then shows, and return it by grade_id?"""
    shutil.copy(source_dir(HW2) / W2, tmp_path / W2)
    sig = _entry(library, "w2_floor_after_batch_mean").signature
    outcomes = _outcomes(W2, sig)
    first = next(o.cell for o in outcomes if not o.passed)
    hint = HW2_MUTANTS["w2_floor_after_batch_mean"].hint
    for _ in range(2):
        assert hints.annotate(HW2, tmp_path, outcomes, library) == {first: hint}
    nb = nbformat.read(tmp_path / W2, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == first)
    added = [o for o in cell.outputs if o.get("metadata", {}).get(hints.OUTPUT_MARK)]
    assert len(added) == 1 and added[0] is cell.outputs[-1]
    assert added[0]["data"]["text/plain"] == f"Likely cause: {hint}"
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "Likely cause:" in html and hint in html
    others = [c for c in nb.cells if c is not cell and c.cell_type == "code"]
    assert not any(o.get("metadata", {}).get(hints.OUTPUT_MARK) for c in others for o in c.get("outputs", []))


def test_annotate_leaves_passing_and_unmatched_notebooks_alone(library, tmp_path):
    """Does a notebook that passes, or fails in a way no bug explains, get no hint and stay unchanged?"""
    shutil.copy(source_dir(HW2) / W2, tmp_path / W2)
    before = (tmp_path / W2).read_text()
    passing = _outcomes(W2, frozenset())
    site = "autograder.checks.hw2_world_models.loss:1"
    unknown = _outcomes(W2, frozenset({("w2_recon", site), ("w2_kl_floor", "NameError")}))
    assert hints.annotate(HW2, tmp_path, passing + unknown, library) == {}
    assert (tmp_path / W2).read_text() == before


def test_every_hint_shown_meets_the_precision_threshold(library):
    """Is every hint the library shows measured (shown at least once, leave-one-out) with a precision
    of at least the threshold, and do several bugs have one?"""
    tallies = library.tallies()
    shown = library.shown_bugs()
    assert len(shown) >= 5, tallies
    for bug in shown:
        assert tallies[bug].shown > 0 and tallies[bug].precision >= hints.PRECISION_THRESHOLD, bug
    for bug, tally in tallies.items():
        if bug not in shown:
            assert tally.precision is None or tally.precision < hints.PRECISION_THRESHOLD, bug


def test_a_stale_or_broken_library_gives_no_hints(monkeypatch, tmp_path):
    """After an edit of the checks (the library's fingerprint no longer matches) or with a corrupt
    library file, does grading get an empty library and the reason, rather than hints whose sites may
    name other tests?"""
    real_load = hints.load_library
    hints.current_library.cache_clear()
    try:
        with monkeypatch.context() as patch:
            patch.setattr(hints, "fingerprint", lambda: "edited")
            library, why = hints.current_library()
            assert library.entries == () and "out of date" in why and hints.BUILD_COMMAND in why
        hints.current_library.cache_clear()
        broken = tmp_path / "hint_library.json"
        broken.write_text("{not json")
        with monkeypatch.context() as patch:
            patch.setattr(hints, "load_library", lambda: real_load(broken))
            library, why = hints.current_library()
            assert library.entries == () and f"{broken} is not a hint library" in why
    finally:
        hints.current_library.cache_clear()
    library, why = hints.current_library()
    assert why is None and library.entries  # the shipped library is current


def test_a_visible_tests_error_is_named_by_its_line_in_a_real_kernel():
    """In a real IPython kernel's traceback, is an error raised by a line of a test cell's visible code
    named by that line, and one raised in a function of another cell, or in the hidden tests, not?"""
    from nbclient import NotebookClient

    test = '"""Check that ..."""\nx = [19, 81]\nassert max(x) <= 20, x\n### BEGIN HIDDEN TESTS\nassert False'
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("def answer():\n    assert False, 'inside the answer'"),
        nbformat.v4.new_code_cell(test),
        nbformat.v4.new_code_cell('"""Check that ..."""\nanswer()'),
        nbformat.v4.new_code_cell(test.replace("assert max(x) <= 20, x", "pass")),
    ]
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=60).execute()
    sites = []
    for cell in nb.cells[1:]:
        (error,) = [o for o in cell.outputs if o.output_type == "error"]
        sites.append(hints.visible_site("a3_reset_pattern", cell.source, cell.execution_count, error.traceback))
    assert sites == ["a3_reset_pattern:3", None, None]


def test_the_demos_reset_bug_gets_its_hint(library):
    """Do the outcomes nbgrader's run logs for the demo's reset bug (the homework template's loop: the
    visible assert on the episode lengths fails, every other cell passes) get that bug's hint?"""
    (sig,) = {e.signature for e in library.entries if e.bug == "a3_template_reset_bug"}
    assert sig == frozenset({("a3_reset_pattern", "AssertionError at a3_reset_pattern:7")})
    outcomes = [
        CellOutcome(NB3, "a3_reset_pattern", False, "AssertionError", "[19, 81]", "a3_reset_pattern:7"),
        *(CellOutcome(NB3, cell, True) for cell in ("a3_frames", "a4_angles", "a4_count")),
    ]
    hint = library.hint(hints.signature(outcomes), "hw1_vae", NB3)
    assert hint == HW1_MUTANTS["a3_template_reset_bug"].hint != ""


def test_every_bug_is_written_two_ways_and_each_unique_signature_has_its_hint(library):
    """Is every known bug written at least two ways (so its hint's precision is measured), and does
    every bug whose signature no other bug shares get its hint in the feedback?"""
    for bug in [*hints.MUTANTS_OF["hw1_vae"], *hints.MUTANTS_OF["hw2_world_models"]]:
        assert sum(e.bug == bug for e in library.entries) >= 2, bug
    why = hints.coverage(library)
    assert len(why) == len(hints.MUTANTS_OF["hw1_vae"]) + len(hints.MUTANTS_OF["hw2_world_models"])
    assert {bug: reason for bug, reason in why.items() if reason is not None and "is also" not in reason} == {}
