"""The lessons' practice questions: instant feedback that says what is wrong without giving the answer."""

from __future__ import annotations

import math
import re
from pathlib import Path

import nbformat
import pytest
import torch

from course_lib import practice
from course_lib.losses import gaussian_kl

ROOT = Path(__file__).resolve().parents[1]
NUMERIC = sorted(n for n, q in practice.QUESTIONS.items() if isinstance(q, practice.Numeric))
CHOICE = sorted(n for n, q in practice.QUESTIONS.items() if isinstance(q, practice.Choice))


@pytest.mark.parametrize("name", NUMERIC)
def test_the_right_answer_passes_and_nothing_reveals_it(name):
    """Is the computed answer accepted, and does no message for a wrong one (a known mistake, far off,
    close) print the right value?"""
    question = practice.QUESTIONS[name]
    right = question.solve()
    assert practice.check(name, right).correct
    shown = f"{right:g}"
    wrong = [m.value for m in question.mistakes] + [right * 3.7 + 1, right * 1.1 + 0.1, -right - 1]
    for value in wrong:
        feedback = practice.check(name, value)
        assert not feedback.correct, (name, value)
        assert shown not in feedback.message.replace(f"{value:g}", ""), feedback.message


@pytest.mark.parametrize("name", NUMERIC)
def test_known_mistakes_get_their_hint(name):
    """Does each declared mistake get its own hint, not the generic too high / too low?"""
    for mistake in practice.QUESTIONS[name].mistakes:
        assert mistake.hint in practice.check(name, mistake.value).message


@pytest.mark.parametrize("name", CHOICE)
def test_choices_say_why_an_option_is_wrong(name):
    """Is only the right letter accepted, with a reason for each wrong one and a clear word for a non-option?"""
    question = practice.QUESTIONS[name]
    for letter in question.options:
        feedback = practice.check(name, letter.upper())
        assert feedback.correct == (letter == question.correct)
        if letter != question.correct:
            assert question.why_not[letter] in feedback.message
    assert "one of the letters" in practice.check(name, "z").message


def test_the_kl_question_matches_the_library():
    """Is the KL question's answer what course_lib.losses.gaussian_kl computes for N(2, 0.25)?"""
    kl = gaussian_kl(torch.tensor([[2.0]]), torch.tensor([[math.log(0.25)]])).item()
    assert practice.check("kl_normal", kl).correct


def test_the_conv_questions_match_pytorch():
    """Are the two output sizes the ones PyTorch's layers produce?"""
    out = torch.nn.Conv2d(3, 1, 4, 2)(torch.zeros(1, 3, 64, 64)).shape[-1]
    up = torch.nn.ConvTranspose2d(1, 1, 6, 2)(torch.zeros(1, 1, 13, 13)).shape[-1]
    assert practice.check("conv_output", out).correct and practice.check("conv_transpose_output", up).correct


def test_unanswered_and_malformed_answers_are_named():
    """Do a missing answer, a text for a number and an unknown question get messages that say so?"""
    assert "no answer yet" in practice.check("kl_floor", None).message
    assert "should be a number" in practice.check("kl_floor", "sixteen").message
    with pytest.raises(KeyError, match="kl_floor"):
        practice.check("nope", 1)


def test_compare_scores_a_prediction():
    """Is a prediction within 25 % called close, and one 4x off called too high by that factor?"""
    assert practice.compare(3.5, 3.1, "KL").correct
    far = practice.compare(12.0, 3.0, "KL")
    assert not far.correct and "too high" in far.message and "factor of 4" in far.message


def test_every_question_is_asked_in_a_lesson_and_every_lesson_asks():
    """Is every declared question checked in some lesson, and does each lesson hold at least one
    practice cell (a question or a prediction)?"""
    asked = set()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        found = set(re.findall(r"check\(\"(\w+)\"", code))
        assert found or "compare(" in code, f"{path.name} has no practice cell"
        asked |= found
    assert asked == set(practice.QUESTIONS), set(practice.QUESTIONS) ^ asked
