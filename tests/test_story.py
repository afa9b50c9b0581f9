"""Is the course one story? Consistency checks over the markdown of every lesson and homework notebook.

A small list of checks a reviewer would otherwise make by hand: stale phrases that contradicted the
rest of the course, the one notation (encoder q_phi(z|x), decoder p_theta(x|z), prior p(z)),
references a student can resolve, and the homework notebooks' opening (objectives, what to read
first, time) and closing (further reading).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from autograder import rubrics
from autograder.release import LESSONS

ROOT = Path(__file__).resolve().parents[1]
LESSON_FILES = sorted((ROOT / "notebooks").glob("*.ipynb"))
HOMEWORK_FILES = sorted((ROOT / "assignments" / "source").glob("*/*.ipynb"))
ALL = LESSON_FILES + HOMEWORK_FILES

#: Phrases that once contradicted the course or pointed at what students cannot open.
STALE = {
    "unit variance": "beta = 2 sigma^2: beta = 1 is a decoder variance of 1/2, not 1",
    "unit-variance": "beta = 2 sigma^2: beta = 1 is a decoder variance of 1/2, not 1",
    "homework template": "students do not have the original template; quote the lines instead",
    "homework's template": "students do not have the original template; quote the lines instead",
    "CNN-VAE lesson": "a lesson students never see",
    "Keras version": "a version students never see",
    "notebooks/": "the kit has lessons/, not the repository's notebooks/",
    "0.1 nats": "an active unit is Burda et al.'s Var(mu_j) > 0.01 (course_lib.diagnostics), nothing else",
    "trains its controller in such dreams": "for CarRacing the paper trains the controller in the real environment",
}
#: The one notation: each pattern is a symbol written another way.
NOTATION = {
    r"f_\\phi|g_\\theta": "the encoder is enc_phi / q_phi(z|x), the decoder dec_theta / p_theta(x|z)",
    r"(?<![_\\])q\(z ?(\\mid|\|)": "the encoder's distribution is q_\\phi(z \\mid x)",
    r"(?<![_\\a-z])p\(x \\mid z\)": "the decoder's distribution is p_\\theta(x \\mid z)",
}


def _markdown(path: Path) -> str:
    return "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_no_stale_phrase(path):
    """Is the notebook's text free of the phrases that contradicted the course or cannot be resolved?"""
    text = _markdown(path)
    found = {phrase: why for phrase, why in STALE.items() if phrase in text}
    assert not found, f"{path.name}: {found}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_one_notation(path):
    """Does the notebook write the encoder, decoder and prior with the course's symbols?"""
    text = _markdown(path)
    found = {pattern: why for pattern, why in NOTATION.items() if re.search(pattern, text)}
    assert not found, f"{path.name}: {found}"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_lessons_named_exist(path):
    """Does every "lesson NN" the notebook names exist, with every section it cites?"""
    text = _markdown(path)
    headings = {}
    for lesson in LESSON_FILES:
        sections = re.findall(r"^## (\d+)\.", _markdown(lesson), flags=re.M)
        headings[lesson.name[:2]] = {int(s) for s in sections}
    for number, rest in re.findall(r"[Ll]esson (\d\d)((?:, sections? [\d–, and]+)?)", text):
        assert number in headings, f"{path.name} names lesson {number}, which does not exist"
        cited = {int(n) for n in re.findall(r"\d+", rest)}
        if "–" in rest:
            lo, hi = (int(n) for n in re.findall(r"(\d+)–(\d+)", rest)[0])
            cited |= set(range(lo, hi + 1))
        assert cited <= headings[number], f"{path.name} cites sections {cited - headings[number]} of lesson {number}"


@pytest.mark.parametrize("path", HOMEWORK_FILES, ids=lambda p: p.name)
def test_homework_opens_with_what_to_read_and_closes_with_further_reading(path):
    """Does each homework notebook say what to read first (lessons of its kit or of homework 1's) and
    how long it takes, and end with further reading naming Kingma & Welling and Ha & Schmidhuber?"""
    text = _markdown(path)
    head = "\n".join(text.splitlines()[:40])
    assert re.search(r"[Ll]esson \d\d", head), f"{path.name} does not say which lessons to read first"
    assert re.search(r"\d+ min", head), f"{path.name} does not say how long its activities take"
    reading = text.split("## Further reading")[-1] if "## Further reading" in text else ""
    assert "Kingma & Welling" in reading and "Ha & Schmidhuber" in reading, f"{path.name} has no further reading"
    kit = {name[:2] for names in LESSONS.values() for name in names}
    assert set(re.findall(r"[Ll]esson (\d\d)", text)) <= kit


def test_every_lesson_is_in_a_kit():
    """Is every lesson of notebooks/ carried by some homework's kit (course map, autograder.release.LESSONS)?"""
    carried = {name for names in LESSONS.values() for name in names}
    assert carried == {p.stem for p in LESSON_FILES}


@pytest.mark.parametrize("path", HOMEWORK_FILES, ids=lambda p: p.name)
def test_written_answers_have_a_rubric_for_the_grader_only(path):
    """Is every manually graded answer preceded by its question as a 0-point task cell whose rubric is
    nbgrader's mark scheme (formgrader shows it, the student version does not), with no rubric left in
    the answer cell?"""
    cells = nbformat.read(path, as_version=4).cells
    for i, cell in enumerate(cells):
        meta = cell.metadata.get("nbgrader", {})
        if not (cell.cell_type == "markdown" and meta.get("grade")):
            continue
        question = cells[i - 1]
        assert rubrics.is_rubric(question), f"{path.name}: the question of {meta['grade_id']} is not a rubric cell"
        assert question.metadata["nbgrader"]["grade_id"] == f"{meta['grade_id']}_rubric"
        scheme = question.source.split(rubrics.BEGIN)
        assert len(scheme) == 2 and rubrics.END in scheme[1] and "Rubric" in scheme[1], question.source
        assert "**Question" in scheme[0] and "Rubric" not in scheme[0] and "Rubric" not in cell.source
