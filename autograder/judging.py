"""The grader's side of the hidden checks: nonces into test cells, verdicts from their records.

Runs in nbgrader's process (:class:`autograder.nbgrader_ext.RestartingExecute`), never in the student's
kernel: :func:`arm` writes a fresh nonce into a graded cell's call of its check before the cell runs, and
:func:`judge_cell` decides from the one record it must then hold, with inputs recomputed from the nonce.
A record that is missing, foreign or inconsistent fails the cell and is reported for review, since honest
code never leaves one. ``docs/grading.md`` ("Who decides") explains the design.
"""

from __future__ import annotations

import ast
import importlib
import secrets
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from nbformat import NotebookNode

from autograder import checks, records
from autograder.checks import CheckFailed
from autograder.hints import visible_site
from autograder.records import RecordError
from autograder.report import CellOutcome
from autograder.tamper import TAMPERING


@dataclass(frozen=True)
class Armed:
    """A test cell ready to run: its check, the nonce written into it, and its original source."""

    grade_id: str
    nonce: str
    source: str


@dataclass(frozen=True)
class Finding:
    """Something a cell's records showed that honest code never does; reported for review.

    ``severity`` is :data:`~autograder.tamper.TAMPERING`: the cell failed because its test did not run
    as written, or ran beside code the notebook installed, or left a record no honest probe writes.
    """

    notebook: str
    cell: str
    severity: str
    message: str

    def __str__(self) -> str:
        return f"{self.notebook}: {self.cell} {self.message}"


def write_nonce(source: str, grade_id: str, nonce: str) -> str:
    """``source`` with ``nonce="..."`` added to its one call of the check ``grade_id``.

    Raises:
        ValueError: if ``source`` does not call that check exactly once (a course bug; the tests
            check every source notebook).
    """
    tree = ast.parse(source)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) == grade_id or getattr(node.func, "id", None) == grade_id)
    ]
    if len(calls) != 1:
        raise ValueError(f"the test cell {grade_id} calls its check {len(calls)} times, expected once")
    call = calls[0]
    lines = source.encode().splitlines(keepends=True)
    start = sum(len(line) for line in lines[: call.lineno - 1]) + call.col_offset
    end = sum(len(line) for line in lines[: call.end_lineno - 1]) + call.end_col_offset
    call.keywords.append(ast.keyword(arg="nonce", value=ast.Constant(nonce)))
    raw = source.encode()
    return (raw[:start] + ast.unparse(call).encode() + raw[end:]).decode()


def _grade_id(cell: NotebookNode) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta.get("grade_id") if meta.get("grade") and cell.get("cell_type") == "code" else None


_prefetched: list[threading.Thread] = []


def prefetch() -> None:
    """Import the checks and the reference answers (PyTorch, gymnasium) in a background thread, once
    per process: nbgrader's process waits for the kernel to start and to run the setup cells
    anyway, so the first judge no longer pays seconds of imports. A judge that needs a module
    before the thread has loaded it waits for that import (Python's import lock), no longer."""
    if _prefetched:
        return

    def load() -> None:
        try:
            checks.registry()
            for name in ("hw1", "hw2", "conv_vae"):
                importlib.import_module(f"course_lib.solutions.{name}")
        except Exception:  # a judge that needs what failed here raises it itself
            pass

    thread = threading.Thread(target=load, name="prefetch-judges", daemon=True)
    _prefetched.append(thread)
    thread.start()


def arm(cell: NotebookNode) -> Armed | None:
    """Write a fresh nonce into a graded code cell's call of its check; ``None`` for other cells.

    ``checks.a1_structure(MyVAE)`` becomes ``checks.a1_structure(MyVAE, nonce="9f2c...")``. The source is
    nbgrader's copy from the gradebook (``OverwriteCells``), so it is the instructor's code; the caller puts
    :attr:`Armed.source` back after the cell has run, so feedback never shows a nonce. The check is looked
    up only when its record is judged (:func:`prefetch` has usually loaded it by then).
    """
    grade_id = _grade_id(cell)
    if grade_id is None:
        return None
    armed = Armed(grade_id, secrets.token_hex(8), cell.source)
    try:
        cell.source = write_nonce(cell.source, grade_id, armed.nonce)
    except (SyntaxError, ValueError):  # a graded cell without a hidden check: its asserts decide
        return None
    return armed


def _failed(cell: NotebookNode) -> bool:
    return any(output.get("output_type") == "error" for output in cell.get("outputs", []))


def _fail(cell: NotebookNode, message: str) -> None:
    error = {"output_type": "error", "ename": "CheckFailed", "evalue": message}
    cell.outputs.append(NotebookNode(**error, traceback=[f"CheckFailed: {message}"]))


NO_POINTS = "this cell earns no points, and the submission is reported for review"


@dataclass(frozen=True)
class _Verdict:
    failure: str | None = None  # shown to the student
    tampering: str | None = None  # the finding reported for review
    notes: tuple[str, ...] = ()  # code the kernel reports the notebook installed
    site: str | None = None  # the judge's failing test (CheckFailed.site)


def _verdict(armed: Armed, found: list[object]) -> _Verdict:
    """What a cell's records show (see :class:`_Verdict`)."""
    decoded, notes = [], []
    for raw in found:
        try:
            grade_id, nonce, values, kernel = records.decode(raw)
        except RecordError as err:
            message = f"left a malformed probe record ({err})"
            return _Verdict(f"the hidden check {message}; {NO_POINTS}", message, tuple(notes))
        notes += kernel
        if grade_id != armed.grade_id or nonce != armed.nonce:
            message = f"holds a record of {grade_id} that does not carry this run's nonce (made elsewhere)"
            return _Verdict(f"the hidden check found a record it did not make; {NO_POINTS}", message, tuple(notes))
        decoded.append(values)
    if len(decoded) != 1:
        message = (
            "left no record of its hidden check although it raised nothing: the test cell did not run as "
            "written (emptied, skipped or its check replaced)"
            if not decoded
            else f"left {len(decoded)} records of its hidden check, expected one"
        )
        return _Verdict(f"this test cell {message}; {NO_POINTS}", message, tuple(notes))
    check = checks.find(armed.grade_id)
    if check is None:  # a course bug (tests/test_checks.py declares a check for every test cell)
        return _Verdict(f"the grader has no check {armed.grade_id}; tell the instructor", None, tuple(notes))
    try:
        check.verdict(check.inputs(checks.seed_of(armed.nonce)), decoded[0])
    except CheckFailed as err:
        return _Verdict(str(err), None, tuple(notes), err.site)
    except checks.Inconsistent as err:
        message = f"left a record whose values are not what its own layers, weights or logs compute ({err})"
        return _Verdict(f"the hidden check's record contradicts itself; {NO_POINTS}", message, tuple(notes))
    except RecordError as err:
        message = f"left a record its check does not write ({err})"
        return _Verdict(f"the hidden check's record is inconsistent; {NO_POINTS}", message, tuple(notes))
    except Exception as err:  # values the judge cannot compare; never the grading run
        message = f"left a record the judge could not read ({type(err).__name__}: {err})"
        return _Verdict(f"the hidden check could not judge this cell; {NO_POINTS}", message, tuple(notes))
    return _Verdict(notes=tuple(notes))


def judge_cell(
    cell: NotebookNode, armed: Armed | None, notebook: str
) -> tuple[list[Finding], CellOutcome | None]:
    """Judge a cell that has just run; drop its records (from every cell, so they never reach the feedback).

    A cell that raised has failed already. Otherwise it must hold exactly one record of its check carrying
    ``armed``'s nonce, which the check's judge decides from. A wrong answer, and a missing, repeated,
    foreign, malformed or inconsistent record, or one whose kernel reports code the notebook installed
    beside the checks (:func:`autograder.checks.kernel_notes`), append a ``CheckFailed`` error output
    (nbgrader scores the cell zero); all but a wrong answer are also a :class:`Finding`: the test cell did
    not run as written (emptied by an input transformer, skipped by a hook, its check replaced).

    Returns:
        ``(findings, outcome)``: what to report for review, and how the cell ended if it is a graded
        test cell (``None`` for other cells).
    """
    if cell.get("cell_type") != "code":
        return [], None
    found = records.records_in(cell.get("outputs", []))
    cell.outputs = records.without_records(cell.get("outputs", []))
    grade_id = armed.grade_id if armed else _grade_id(cell)
    name = grade_id or f"cell {cell.get('id', '?')}"
    if armed is None:
        findings = [] if not found else [
            Finding(notebook, name, TAMPERING, f"emitted {len(found)} probe record(s) outside a test cell (dropped)")
        ]
        return findings, _outcome(cell, notebook, grade_id)
    if _failed(cell):
        return [], _outcome(cell, notebook, grade_id)
    verdict = _verdict(armed, found)
    failure = verdict.failure
    findings = [Finding(notebook, name, TAMPERING, verdict.tampering)] if verdict.tampering else []
    if verdict.notes:  # a verdict never rests on a record made beside code the notebook slipped in
        hooks = ", ".join(sorted(set(verdict.notes)))
        findings.append(Finding(notebook, name, TAMPERING, f"ran beside code the notebook installed: {hooks}"))
        failure = failure or f"this test cell ran beside code the notebook installed in the kernel; {NO_POINTS}"
    if failure is not None:
        _fail(cell, failure)
    site = verdict.site if failure == verdict.failure else None
    return findings, _outcome(cell, notebook, grade_id, site)


class JudgeTimeoutError(BaseException):
    """A judge ran past its budget (:func:`budget`); a ``BaseException``, so that no judge's own
    ``except Exception`` can swallow it."""


@contextmanager
def budget(seconds: float | None) -> Iterator[None]:
    """Stop the block with :class:`JudgeTimeoutError` after ``seconds`` of wall-clock time.

    Uses ``SIGALRM``, so only in the main thread (where nbgrader's process judges); elsewhere, or with
    ``None``, the block runs unbounded. A single long operation in C ends before the signal is handled.
    """
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise JudgeTimeoutError(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fail_unjudged(cell: NotebookNode, armed: Armed, notebook: str, message: str) -> CellOutcome | None:
    """Fail a graded cell that could not be judged (its judge ran past its budget): its records are
    dropped, it gets a ``CheckFailed`` error with ``message``; returns how it ended."""
    cell.outputs = records.without_records(cell.get("outputs", []))
    _fail(cell, message)
    return _outcome(cell, notebook, armed.grade_id)


def _outcome(cell: NotebookNode, notebook: str, grade_id: str | None, site: str | None = None) -> CellOutcome | None:
    """How a graded cell ended, from its outputs (the last error decides, as for nbgrader)."""
    if grade_id is None:
        return None
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return CellOutcome(notebook, grade_id, passed=True)
    last = errors[-1]
    # a visible test's error: the line of the test cell that raised it (hints.visible_site), not a judge's
    source, count = cell.get("source", ""), cell.get("execution_count")
    site = site or visible_site(grade_id, source, count, last.get("traceback", []))
    return CellOutcome(notebook, grade_id, False, last.get("ename"), str(last.get("evalue", ""))[:300], site)
