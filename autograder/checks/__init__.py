"""Hidden checks, called by one-line hidden test cells (``autograder.checks.hw1.a1_structure(MyVAE)``).

A check raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader scores the cell zero)
with a message that says what was wrong and what was expected. Checks run in the student's kernel
and never load the reference answers there (the sandbox hides ``course_lib/solutions``): they
check properties of the student's objects on inputs drawn from the checks' seeds, and where an
answer must match the reference they :func:`record` the student's outputs, which
:mod:`autograder.judges` compares with the reference in the grader's own process.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from autograder import records


class CheckFailed(AssertionError):  # noqa: N818 - reads as what happened, in feedback
    """A hidden check found a wrong answer; the message is shown in the feedback."""


def expect(condition: object, message: str) -> None:
    """Raise :class:`CheckFailed` with ``message`` unless ``condition`` is true."""
    if not condition:
        raise CheckFailed(message)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with PyTorch's and NumPy's global generators seeded, then restore them."""
    import torch  # here, so that the grader process (judges, nbgrader_ext) need not load torch

    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()
    torch.manual_seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(numpy_state)


_FORBIDDEN_MODULES = ("course_lib.solutions", "autograder")


def _origin(obj: object) -> str:
    module = getattr(obj, "__module__", None) or ""
    if isinstance(obj, type(sys)):
        module = obj.__name__
    return module


def require_student_code(obj: object, name: str) -> None:
    """Fail unless ``obj`` (a function or class) was defined in the student's notebook.

    Refuses objects imported from elsewhere, subclasses of the reference, and functions or
    methods that call into ``course_lib.solutions`` or ``autograder`` (a wrapper of the reference).
    """
    expect(_origin(obj) == "__main__", f"{name} must be defined in this notebook; it comes from {_origin(obj)!r}")
    if isinstance(obj, type):
        for base in obj.__mro__:
            expect(
                not _origin(base).startswith(_FORBIDDEN_MODULES),
                f"{name} must not build on the reference or the grader ({base.__module__}.{base.__qualname__})",
            )
        functions = [v for v in vars(obj).values() if inspect.isfunction(v)]
    else:
        functions = [obj] if inspect.isfunction(obj) else []
    for fn in functions:
        referenced = [fn.__globals__.get(n) for n in fn.__code__.co_names]
        referenced += [c.cell_contents for c in (fn.__closure__ or ()) if c.cell_contents is not None]
        for ref in referenced:
            expect(
                ref is None or not _origin(ref).startswith(_FORBIDDEN_MODULES),
                f"{name} uses {_origin(ref)} (the reference answers or the grader), which is not allowed",
            )


@contextmanager
def student_code(what: str) -> Iterator[None]:
    """Turn an exception raised by the student's code into a :class:`CheckFailed` naming ``what``."""
    try:
        yield
    except CheckFailed:
        raise
    except Exception as err:
        raise CheckFailed(f"{what} raised {type(err).__name__}: {err}") from None


def record(check: str, **values: object) -> None:
    """Hand the outputs a check measured to the judge, which compares them with the reference.

    While nbgrader autogrades (``NBGRADER_EXECUTION=autograde``), the record becomes a
    ``display_data`` output of the hidden test cell, read and judged by the grader process
    (:class:`autograder.nbgrader_ext.RestartingExecute`). Anywhere else (an instructor running the
    source notebook, the notebook tests), the judge runs right here if the reference is importable.

    Args:
        check: ``"<module>.<check>"``, e.g. ``"hw2.w1_encode_decode"``; a judge of that name
            exists in :mod:`autograder.judges`.
        values: name -> tensor, array or number (see :func:`autograder.records.encode`).

    Raises:
        CheckFailed: outside autograding, when the judge finds a difference from the reference.
    """
    payload = records.encode(check, values)
    if os.environ.get("NBGRADER_EXECUTION") != "autograde":
        from autograder import judges

        try:
            judge = judges.find(check)
        except ImportError:  # the reference is not here (a sandbox): leave the record for the grader
            judge = None
        if judge is not None:
            judge(records.decode(payload)[1])
            return
    from IPython.display import display

    display({records.MIME: payload}, raw=True)
