"""Hidden checks, called by one-line hidden test cells (``autograder.checks.hw1.a1_structure(MyVAE)``).

A check raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader scores the cell zero)
with a message that says what was wrong and what was expected. Checks compare the student's
object with ``course_lib.solutions`` on fixed seeds and check properties on inputs drawn at
grading time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


class CheckFailed(AssertionError):  # noqa: N818 - reads as what happened, in feedback
    """A hidden check found a wrong answer; the message is shown in the feedback."""


def expect(condition: object, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition`` is true."""
    if not condition:
        raise CheckFailed(message)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with PyTorch's and NumPy's global generators seeded, then restore them."""
    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()
    torch.manual_seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(numpy_state)


@contextmanager
def student_code(what: str) -> Iterator[None]:
    """Turn an exception raised by the student's code into a :class:`CheckFailed` naming ``what``."""
    try:
        yield
    except CheckFailed:
        raise
    except Exception as err:
        raise CheckFailed(f"{what} raised {type(err).__name__}: {err}") from None
