"""Practice with instant feedback: small auto-checked questions and "predict, then run" cells.

Ungraded. Each question of the lessons is declared once, in :data:`QUESTIONS`, with its prompt, how
its answer is computed and the usual mistakes. :func:`check` says at once whether an answer is right
and, when it is not, what is wrong (too high or too low, by how much, and a hint for a known mistake)
without giving the answer away. :func:`compare` scores a prediction against what the notebook then
measures. The questions follow the style of the end-of-section exercises of "Dive into Deep Learning"
(Zhang, Lipton, Li & Smola, https://d2l.ai), with the feedback in the notebook itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mistake:
    """A wrong answer students often give, and the hint it gets (which never states the answer)."""

    value: float
    hint: str


@dataclass(frozen=True)
class Numeric:
    """A question whose answer is a number.

    Attributes:
        prompt: the question, as the notebook asks it.
        solve: computes the answer (so that it is derived, not typed in).
        rel_tol: relative tolerance of a right answer.
        unit: the answer's unit, for the messages ("nats", "pixels").
        mistakes: known wrong answers and their hints, matched with the same tolerance.
    """

    prompt: str
    solve: Callable[[], float]
    rel_tol: float = 0.01
    unit: str = ""
    mistakes: tuple[Mistake, ...] = ()


@dataclass(frozen=True)
class Choice:
    """A multiple-choice question.

    Attributes:
        prompt: the question.
        options: ``{letter: option}``.
        correct: the letter of the right option.
        why_not: ``{letter: why this option is wrong}`` for the wrong ones (a nudge, not the answer).
    """

    prompt: str
    options: dict[str, str]
    correct: str
    why_not: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Feedback:
    """What :func:`check` or :func:`compare` says about an answer; shown as Markdown in a notebook."""

    correct: bool
    message: str

    def __str__(self) -> str:
        return f"{'✓' if self.correct else '✗'} {self.message}"

    def _repr_markdown_(self) -> str:
        colour = "green" if self.correct else "#b35900"
        return f'<span style="color:{colour}">**{"✓" if self.correct else "✗"}**</span> {self.message}'


def _kl_normal(mu: float, variance: float) -> float:
    """KL(N(mu, variance) || N(0, 1)) in nats: 0.5 * (mu^2 + var - log var - 1) (Kingma & Welling 2014, app. B)."""
    return 0.5 * (mu**2 + variance - math.log(variance) - 1.0)


def _conv_out(n: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Output size of a convolution: floor((n + 2p - k) / s) + 1 (PyTorch's Conv2d)."""
    return (n + 2 * padding - kernel) // stride + 1


#: Every practice question of the lessons, by name.
QUESTIONS: dict[str, Numeric | Choice] = {
    "ae_compression": Numeric(
        "A 64x64 RGB frame is encoded into a code of 16 numbers. How many times fewer numbers does the "
        "code hold than the frame?",
        lambda: 3 * 64 * 64 / 16,
        mistakes=(Mistake(64 * 64 / 16, "count every colour channel of every pixel: a frame is (3, 64, 64)"),),
    ),
    "kl_normal": Numeric(
        "What is KL( N(2, 0.25) || N(0, 1) ) in nats, where 0.25 is the variance of the first Gaussian?",
        lambda: _kl_normal(2.0, 0.25),
        unit="nats",
        mistakes=(
            Mistake(_kl_normal(2.0, 0.0625), "0.25 is the variance sigma^2, not sigma"),
            Mistake(2 * _kl_normal(2.0, 0.25), "check the factor 1/2 in front of the sum"),
            Mistake(0.5 * (4 + 0.25 + math.log(0.25) - 1), "-log(sigma^2) is positive for sigma^2 < 1"),
        ),
    ),
    "beta_sigma": Numeric(
        "With beta = 0.1, what pixel noise standard deviation sigma does the Gaussian decoder assume?",
        lambda: math.sqrt(0.1 / 2),
        mistakes=(
            Mistake(0.1 / 2, "that is the variance sigma^2; the question asks for sigma"),
            Mistake(math.sqrt(0.1), "beta = 2 sigma^2, not sigma^2"),
            Mistake(0.1, "beta is not sigma: beta = 2 sigma^2"),
        ),
    ),
    "conv_output": Numeric(
        "A Conv2d with kernel_size=4, stride=2 and no padding takes a 64x64 image. How many pixels wide "
        "is its output?",
        lambda: _conv_out(64, 4, 2),
        rel_tol=0.0,
        unit="pixels",
        mistakes=(
            Mistake(32, "that is a stride-2 convolution with padding 1; this one has no padding"),
            Mistake(30, "count the positions of the kernel: (n - k) / s, plus one for the first position"),
        ),
    ),
    "conv_transpose_output": Numeric(
        "A ConvTranspose2d with kernel_size=6, stride=2 and no padding takes a 13x13 feature map. How many "
        "pixels wide is its output?",
        lambda: (13 - 1) * 2 + 6,
        rel_tol=0.0,
        unit="pixels",
        mistakes=(
            Mistake(26, "a transposed convolution is not just an upsampling by the stride: add the kernel's overhang"),
            Mistake(_conv_out(13, 6, 2), "that is what a plain convolution does; a transposed one goes the other way"),
        ),
    ),
    "upright_filter": Choice(
        "In ordinary CartPole-v1 episodes, why does the filter |theta| <= 0.3 rad remove no frame?",
        {
            "a": "A random policy keeps the pole close to upright.",
            "b": "CartPole-v1 ends an episode once |theta| > 0.2094 rad, so a loop that resets on termination "
            "never renders a state beyond 0.3 rad.",
            "c": "0.3 rad is 12 degrees, exactly the termination threshold.",
            "d": "preprocess_frame crops the pole away when it leans.",
        },
        correct="b",
        why_not={
            "a": "look at notebook 03's episode lengths: the pole falls within about 20 steps",
            "c": "convert 0.3 rad to degrees, and compare with theta_threshold_radians",
            "d": "the crop is the same for every frame; it never depends on the state",
        },
    ),
    "buggy_resets": Numeric(
        "The submitted loop of notebook 04 runs 300 steps with `if frame_idx == 20: env.reset()` and never sets "
        "frame_idx back. How many times does it call env.reset() inside the loop?",
        lambda: 1,
        rel_tol=0.0,
        mistakes=(Mistake(15, "that is what the loop meant to do; is frame_idx ever equal to 20 a second time?"),),
    ),
    "kl_floor": Numeric(
        "World Models floors each frame's KL at kl_tolerance * z_size. With kl_tolerance = 0.5 and 32 latent "
        "dimensions, how many nats per frame are free?",
        lambda: 0.5 * 32,
        unit="nats",
        mistakes=(Mistake(0.5, "the floor is per frame, summed over the 32 dimensions"),),
    ),
    "blurry_mean": Choice(
        "A VAE trained on the squared error draws a kerb stripe whose exact position it cannot know from z. "
        "What does it draw?",
        {
            "a": "One of the possible positions, picked at random.",
            "b": "The most frequent position, sharp.",
            "c": "The average over the possible positions: a blurred stripe.",
        },
        correct="c",
        why_not={
            "a": "the decoder is a deterministic function of z: nothing in it draws at random",
            "b": "which single prediction minimises the expected squared error over the possible positions?",
        },
    ),
    "mdn_outputs": Numeric(
        "An MDN-RNN predicts, for each of 32 latent dimensions, a mixture of K = 5 Gaussians (a logit, a mean "
        "and a log standard deviation per component). How many numbers does its head output per step?",
        lambda: 32 * 5 * 3,
        rel_tol=0.0,
        mistakes=(Mistake(32 * 5 * 2, "each component has a mixture logit too, not only a mean and a scale"),),
    ),
}


def ask(name: str) -> str:
    """The prompt of question ``name`` (with its options for a multiple choice).

    Raises:
        KeyError: if there is no such question (the message lists them).
    """
    question = _question(name)
    if isinstance(question, Choice):
        return question.prompt + "\n" + "\n".join(f"  ({k}) {v}" for k, v in question.options.items())
    return question.prompt


def _question(name: str) -> Numeric | Choice:
    if name not in QUESTIONS:
        raise KeyError(f"no practice question {name!r}; the questions are {sorted(QUESTIONS)}")
    return QUESTIONS[name]


def _close(a: float, b: float, rel_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def check(name: str, answer: float | str | None) -> Feedback:
    """Check an answer to question ``name``; never reveals the right one.

    Args:
        name: a key of :data:`QUESTIONS`.
        answer: a number for a numeric question, an option letter for a multiple choice; ``None``
            (an answer not given yet) gets a reminder.

    Returns:
        A :class:`Feedback`: right, or what is wrong (a known mistake's hint; otherwise too high or
        too low, and by roughly how much).

    Raises:
        KeyError: if there is no such question.
    """
    question = _question(name)
    if answer is None or answer is ...:
        return Feedback(False, "no answer yet: replace the `None` with yours and run the cell again.")
    if isinstance(question, Choice):
        letter = str(answer).strip().lower().strip("()")
        if letter not in question.options:
            return Feedback(False, f"answer with one of the letters {', '.join(question.options)}.")
        if letter == question.correct:
            return Feedback(True, f"right: ({letter}) {question.options[letter]}")
        return Feedback(False, f"not ({letter}): {question.why_not.get(letter, 'read the options again')}.")
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return Feedback(False, f"the answer should be a number, got {answer!r}.")
    if not math.isfinite(value):
        return Feedback(False, f"the answer should be a finite number, got {value}.")
    right = float(question.solve())
    unit = f" {question.unit}" if question.unit else ""
    if _close(value, right, question.rel_tol):
        return Feedback(True, f"right: {value:g}{unit}.")
    for mistake in question.mistakes:
        if _close(value, mistake.value, max(question.rel_tol, 1e-6)):
            return Feedback(False, f"not {value:g}{unit}. Hint: {mistake.hint}.")
    return Feedback(False, f"not {value:g}{unit}: {_how_far(value, right)}.")


def _how_far(value: float, right: float) -> str:
    """'too high' or 'too low', and roughly by how much, without the right value."""
    direction = "too high" if value > right else "too low"
    if right == 0 or value == 0 or (value > 0) != (right > 0):
        return f"{direction} (check the sign and the formula)"
    ratio = max(value / right, right / value)
    if ratio < 1.2:
        return f"{direction}, but close (within 20 %)"
    if ratio < 3:
        return f"{direction}, by less than a factor of 3"
    return f"{direction}, by a factor of {ratio:.0f} or so"


def compare(prediction: float | None, measured: float, what: str) -> Feedback:
    """Score a prediction made before running a cell against what the cell then measured.

    Args:
        prediction: the student's guess (``None``: not made).
        measured: what the notebook measured.
        what: what was measured, with its unit ("the KL at beta = 1, in nats per frame").

    Returns:
        A :class:`Feedback`: right within 25 % (or 0.5 absolute), else how far off and in which direction.
    """
    if prediction is None:
        return Feedback(False, f"no prediction for {what}; the notebook measured {measured:.3g}.")
    close = abs(prediction - measured) <= max(0.25 * abs(measured), 0.5)
    verdict = "close" if close else _how_far(prediction, measured)
    return Feedback(close, f"{what}: you predicted {prediction:.3g}, the notebook measured {measured:.3g} ({verdict}).")
