"""Judges: compare what a hidden check recorded in the student's kernel with the reference answers.

They run in the grader's process (nbgrader's, outside the sandbox), where ``course_lib.solutions``
is importable; the sandboxed kernel cannot import it. A graded test cell whose source calls a
judged check (``checks.w1_encode_decode(ConvVAE)`` after ``from autograder.checks import hw2 as
checks``) must carry exactly one record of that check among its outputs
(:mod:`autograder.records`); the judge then recomputes the inputs from the checks' seeds, runs
the reference on them and compares. A missing, duplicated, malformed or differing record fails the
cell with a :class:`~autograder.checks.CheckFailed` message, never the grading run.

Since the judge derives the inputs itself, a forged record gains nothing: to pass, it must hold the
reference's outputs on those inputs, which only a correct answer computes.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

import numpy as np

from autograder import records
from autograder.checks import CheckFailed

#: Checks whose comparison with the reference happens here, by module of ``autograder.checks``.
JUDGED: dict[str, frozenset[str]] = {
    "hw2": frozenset({"w1_encode_decode", "w1_sampling", "w2_recon", "w2_kl_floor", "w2_gradients"}),
}

_IMPORT = re.compile(r"from\s+autograder\.checks\s+import\s+(\w+)\s+as\s+(\w+)")


def find(check: str) -> Callable[[dict[str, np.ndarray]], None] | None:
    """The judge of ``check`` (``"hw2.w1_sampling"``), or None if that check is not judged.

    Raises:
        ImportError: where the reference answers cannot be imported (inside the sandbox).
    """
    module, _, name = check.partition(".")
    if name not in JUDGED.get(module, ()):
        return None
    return getattr(importlib.import_module(f"autograder.judges.{module}"), name)


def checks_called(source: str) -> list[str]:
    """The judged checks a test cell's ``source`` calls, as ``"<module>.<check>"``, in order.

    Recognises the form every hidden test cell uses: ``from autograder.checks import hw2 as
    checks`` then ``checks.<check>(...)``.
    """
    called = []
    for module, alias in _IMPORT.findall(source):
        for name in re.findall(rf"\b{re.escape(alias)}\.(\w+)\s*\(", source):
            if name in JUDGED.get(module, ()) and f"{module}.{name}" not in called:
                called.append(f"{module}.{name}")
    return called


def judge_outputs(source: str, outputs: list[dict]) -> str | None:
    """Judge the records among a graded cell's ``outputs``; the failure message, or None if it passed.

    Every judged check that ``source`` calls must have exactly one record. Never raises for what
    the student's kernel produced: a malformed record or a judge that cannot compare it is a
    failure of the cell, with a message saying so.
    """
    expected = checks_called(source)
    if not expected:
        return None
    found: dict[str, list[dict[str, np.ndarray]]] = {check: [] for check in expected}
    for raw in records.records_in(outputs):
        try:
            check, values = records.decode(raw)
        except records.RecordError as err:
            return f"the hidden check's record is malformed ({err}); this cell earns no points"
        if check in found:
            found[check].append(values)
    for check, recorded in found.items():
        if len(recorded) != 1:
            return (
                f"the hidden check {check} left {len(recorded)} records of its measurements, expected one "
                "(was its output replaced or repeated?); this cell earns no points"
            )
        try:
            judge = find(check)
            assert judge is not None
            judge(recorded[0])
        except CheckFailed as err:
            return str(err)
        except KeyError as err:
            return f"the record of {check} lacks the value {err}; this cell earns no points"
        except Exception as err:  # a record whose arrays do not fit the reference's, e.g.
            return f"the judge of {check} could not compare the record ({type(err).__name__}: {err})"
    return None
