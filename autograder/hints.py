"""Feedback that names the likely bug: a notebook's failures matched against the library of known bugs.

A notebook's *signature* (its failed graded cells, each with the test that decided: :func:`decided_by`) is
matched against those of the self-test's mutants (:mod:`autograder.submissions`), classic bugs each with
a hint written for it. A hint is shown only for an unambiguous match (:func:`match`) from a bug whose
leave-one-out precision reaches :data:`PRECISION_THRESHOLD`; ``docs/grading.md`` ("Hints in the
feedback") explains why. The signatures take minutes to compute, so they are stored in
:data:`LIBRARY_PATH`; after editing the checks, the source notebooks or the mutants, run
``python -m autograder.hints build`` (``tests/test_hints.py`` fails, naming it, until then).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import nbformat

from autograder.course import source_dir
from autograder.report import CellOutcome
from autograder.submissions import Mutant
from autograder.submissions.hw1_vae import HW1_MUTANTS, HW1_VARIANTS
from autograder.submissions.hw2_world_models import HW2_MUTANTS, HW2_VARIANTS

#: Where :func:`build` writes the library of signatures.
LIBRARY_PATH = Path(__file__).with_name("hint_library.json")
#: The command that regenerates :data:`LIBRARY_PATH`.
BUILD_COMMAND = ".venv/bin/python -m autograder.hints build"
#: The seeds each mutant is judged with; its signature must be the same for all of them.
SEEDS = (1009, 2027, 40961)
#: A hint is shown only if its leave-one-out precision is at least this.
PRECISION_THRESHOLD = 0.9
#: What a failed cell's signature holds when the student's own code raised this: unanswered.
UNANSWERED = "NotImplementedError"
#: The assignment of each mutant library.
MUTANTS_OF = {"hw1_vae": HW1_MUTANTS, "hw2_world_models": HW2_MUTANTS}
#: Every known bug and variant, by name.
ALL_MUTANTS: dict[str, Mutant] = {**HW1_MUTANTS, **HW2_MUTANTS, **HW1_VARIANTS, **HW2_VARIANTS}
#: The metadata key that marks the output :func:`annotate` adds to a cell.
OUTPUT_MARK = "autograder_hint"

#: A notebook's failures: ``(grade_id, site)`` of each failed graded cell; the error's name for
#: a failure no judge decided (the student's code raised, a probe refused the answer).
Signature = frozenset[tuple[str, str]]


def decided_by(outcome: CellOutcome) -> str:
    """Which test decided a failed graded cell: the judge's site (``autograder.checks.episodes:236``), the
    error and the line of the test cell's visible code that raised it (``AssertionError at
    a3_reset_pattern:7``), or the error's name alone (raised deeper: the student's code, a library).

    It depends on which test decided, never on the numbers in the message, so a bug's signature is the
    same for every seed a grading run draws its inputs from (:func:`build` keeps only those that are)."""
    if outcome.site is None:
        return outcome.ename or "error"
    return outcome.site if outcome.ename == "CheckFailed" else f"{outcome.ename} at {outcome.site}"


def signature(outcomes: Iterable[CellOutcome]) -> Signature:
    """The failure signature of one notebook's graded cells (see :data:`Signature`)."""
    return frozenset((o.cell, decided_by(o)) for o in outcomes if not o.passed)


#: Where nbgrader's hidden tests begin in a test cell.
HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: A traceback frame of a notebook cell, as IPython writes it: ``Cell In[12], line 5``.
_CELL_FRAME = re.compile(r"Cell In\[(\d+)\], line (\d+)")
#: A traceback frame of a file, as IPython writes it: ``File /path/to/module.py:12, in f(x)``.
_FILE_FRAME = re.compile(r"File \S")


def visible_line(source: str, line: int) -> bool:
    """Is ``line`` (1-based) of a test cell's ``source`` in its visible code, above the hidden tests?"""
    lines = source.splitlines()
    hidden = next((n for n, text in enumerate(lines, start=1) if HIDDEN_TESTS in text), len(lines) + 1)
    return 1 <= line < hidden


def visible_site(grade_id: str, source: str, execution_count: int | None, traceback: list[str]) -> str | None:
    """``grade_id:line`` when a test cell's error was raised by a line of its own visible code (its
    innermost traceback frame is that cell, above the hidden tests); else ``None``.

    Args:
        grade_id: the test cell's ``grade_id``.
        source: the test cell's source as it ran.
        execution_count: the cell's execution count (IPython names its frames ``Cell In[count]``).
        traceback: the error output's ``traceback``, as IPython's kernel sends it (ANSI colours included).

    The visible asserts are the course's (nbgrader restores locked test cells before grading), so
    their line numbers name the same test in every submission.
    """
    frames = [_ANSI.sub("", entry).strip() for entry in traceback]
    frames = [f for f in frames if _CELL_FRAME.match(f) or _FILE_FRAME.match(f)]
    innermost = _CELL_FRAME.match(frames[-1]) if frames else None
    if innermost is None or execution_count is None or int(innermost.group(1)) != execution_count:
        return None
    line = int(innermost.group(2))
    return f"{grade_id}:{line}" if visible_line(source, line) else None


def bug_of(name: str) -> str:
    """The bug a mutant or variant of :data:`ALL_MUTANTS` writes: the name of the mutant stating it."""
    return ALL_MUTANTS[name].bug or name


def assignment_of(name: str) -> str:
    """The assignment of a mutant or variant of :data:`ALL_MUTANTS`."""
    bug = bug_of(name)
    return next(a for a, mutants in MUTANTS_OF.items() if bug in mutants)


@dataclass(frozen=True)
class Entry:
    """One mutant of the library: its name, its bug, where it is, its signature, and the
    :func:`mutant_digest` of the code it was computed from."""

    name: str
    bug: str
    assignment: str
    notebook: str
    signature: Signature
    digest: str = ""


def match(sig: Signature, assignment: str, notebook: str, entries: Iterable[Entry]) -> str | None:
    """The one bug whose signatures in ``entries`` equal ``sig`` for this notebook, or ``None``.

    Equality, not a subset: a bug that explains only some of the failed cells leaves the others
    unexplained, and a bug whose signature holds a cell the student passed is not the student's bug;
    either way the hint would be a guess. ``None`` also for a notebook without failures, or with a cell
    left unanswered (the student's own ``NotImplementedError``).
    """
    if not sig or any(site == UNANSWERED for _, site in sig):
        return None
    bugs = {e.bug for e in entries if (e.assignment, e.notebook, e.signature) == (assignment, notebook, sig)}
    return bugs.pop() if len(bugs) == 1 else None


@dataclass
class Tally:
    """How one bug's hint did with each mutant held out of the library in turn.

    Attributes:
        shown: times the hint was shown (to any held-out mutant).
        right: of which the held-out mutant had this bug.
        wrong: of which it had another bug.
        abstained: held-out mutants of this bug that got no hint at all.
    """

    shown: int = 0
    right: int = 0
    wrong: int = 0
    abstained: int = 0

    @property
    def precision(self) -> float | None:
        """``right / shown``; ``None`` if the hint was never shown."""
        return self.right / self.shown if self.shown else None


def leave_one_out(entries: Sequence[Entry]) -> dict[str, Tally]:
    """Hold each entry out, match its signature against the others: a :class:`Tally` per bug.

    A held-out mutant that gets another bug's hint counts as ``wrong`` for that hint (a hint is
    judged by what it claims), one that gets none as ``abstained`` for its own bug.
    """
    tallies = {e.bug: Tally() for e in entries}
    for held_out in entries:
        rest = [e for e in entries if e is not held_out]
        bug = match(held_out.signature, held_out.assignment, held_out.notebook, rest)
        if bug is None:
            tallies[held_out.bug].abstained += 1
            continue
        tallies[bug].shown += 1
        if bug == held_out.bug:
            tallies[bug].right += 1
        else:
            tallies[bug].wrong += 1
    return tallies


@dataclass(frozen=True)
class Library:
    """The signatures of the known bugs, and the hints precise enough to show.

    Attributes:
        entries: one per mutant whose signature is the same for every seed of :data:`SEEDS`.
        unstable: mutants left out because their signature changed with the seed: name -> the
            signatures seen (as sorted lists).
        fingerprint: :func:`fingerprint` of what the signatures were computed from.
        sources: :func:`sources_digest` of the checks and notebooks they were computed with.
        threshold: the precision a hint needs to be shown.
    """

    entries: tuple[Entry, ...]
    unstable: dict[str, list[list[list[str]]]] = field(default_factory=dict)
    fingerprint: str = ""
    sources: str = ""
    threshold: float = PRECISION_THRESHOLD

    def tallies(self) -> dict[str, Tally]:
        """:func:`leave_one_out` on the entries."""
        return leave_one_out(self.entries)

    def shown_bugs(self) -> set[str]:
        """The bugs whose hint was measured and has a precision of at least ``threshold``."""
        return {b for b, t in self.tallies().items() if t.precision is not None and t.precision >= self.threshold}

    def hint(self, sig: Signature, assignment: str, notebook: str) -> str | None:
        """The hint for a notebook with failures ``sig``, or ``None`` (no unambiguous match, or a
        hint below the threshold)."""
        bug = match(sig, assignment, notebook, self.entries)
        return ALL_MUTANTS[bug].hint if bug is not None and bug in self.shown_bugs() else None

    def to_json(self) -> dict[str, Any]:
        """The library as :data:`LIBRARY_PATH` stores it."""
        return {
            "regenerate": BUILD_COMMAND,
            "fingerprint": self.fingerprint,
            "sources": self.sources,
            "seeds": list(SEEDS),
            "entries": [
                {"name": e.name, "bug": e.bug, "assignment": e.assignment, "notebook": e.notebook}
                | {"signature": sorted(map(list, e.signature)), "digest": e.digest}
                for e in self.entries
            ],
            "unstable": self.unstable,
        }


def coverage(library: Library) -> dict[str, str | None]:
    """Why each known bug of :data:`MUTANTS_OF` has no hint in the feedback, or ``None`` if it has one.

    A bug gets its hint when its leave-one-out precision reaches the threshold (:meth:`Library.shown_bugs`),
    which needs at least two of its ways written with the same signature, shared with no other bug.
    The reasons given otherwise: it is written one way only (its precision cannot be measured), its
    ways fail at different tests (no two share a signature), its signature is another bug's too (which
    one), or its signature changes with the seed.
    """
    shown = library.shown_bugs()
    bugs = [bug for mutants in MUTANTS_OF.values() for bug in mutants]
    why: dict[str, str | None] = {}
    for bug in bugs:
        mine = [e for e in library.entries if e.bug == bug]
        unstable = [name for name in library.unstable if bug_of(name) == bug]
        if bug in shown:
            why[bug] = None
        elif unstable and len(mine) < 2:
            why[bug] = f"its signature changes with the seed ({', '.join(unstable)})"
        elif len(mine) < 2:
            why[bug] = "written one way only: its precision cannot be measured"
        elif len({(e.notebook, e.signature) for e in mine}) == len(mine):
            why[bug] = "its ways of writing fail at different tests: no two share a signature"
        else:
            others = sorted(
                {
                    e.bug
                    for e in library.entries
                    if e.bug != bug
                    for m in mine
                    if (e.notebook, e.signature) == (m.notebook, m.signature)
                }
            )
            why[bug] = f"its signature is also {', '.join(others)}'s" if others else "below the precision threshold"
    return why


@cache
def load_library(path: Path = LIBRARY_PATH) -> Library:
    """The library :func:`build` wrote to ``path``; an empty one (no hints) if there is none.

    Raises:
        ValueError: if the file is not such a library (named in the message).
    """
    if not Path(path).exists():
        return Library(())
    try:
        data = json.loads(Path(path).read_text())
        entries = tuple(
            Entry(
                e["name"], e["bug"], e["assignment"], e["notebook"], frozenset(map(tuple, e["signature"])), e["digest"]
            )
            for e in data["entries"]
        )
        return Library(entries, data["unstable"], data["fingerprint"], data["sources"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a hint library ({type(err).__name__}: {err}); run {BUILD_COMMAND}") from err


@cache
def current_library() -> tuple[Library, str | None]:
    """The library to grade with, read once per process: ``(library, None)`` when it was built from the
    checks, notebooks and mutants as they are now; else ``(an empty library, why)``.

    A stale library is not used: a judge's site is its line, and after an edit of the checks the
    line a signature names may hold another test, whose failures would get another bug's hint.
    """
    try:
        library = load_library()
    except ValueError as err:
        return Library(()), str(err)
    if library.entries and library.fingerprint != fingerprint():
        stale = "the hint library is out of date with the checks, notebooks or mutants"
        return Library(()), f"{stale}; run {BUILD_COMMAND}"
    return library, None


# ---------------------------------------------------------------- into the feedback
def annotate(
    assignment: str, autograded: Path, outcomes: Iterable[CellOutcome], library: Library | None = None
) -> dict[str, str]:
    """Add the hint of each notebook whose failures match a known bug to its first failed cell.

    The hint becomes a ``display_data`` output ("Likely cause: ...", Markdown and plain text) after
    the cell's error, in the autograded notebook ``autograded/<notebook>``, which nbgrader's
    ``generate_feedback`` then renders. Outputs an earlier call added are replaced. A notebook that
    is missing or unreadable is left alone: a hint never stops the grading.

    Args:
        assignment: the assignment's name.
        autograded: the student's autograded folder of the assignment.
        outcomes: how each graded test cell ended (:attr:`autograder.report.StudentReport.outcomes`).
        library: the signatures to match; :func:`current_library`'s by default.

    Returns:
        ``{grade_id: hint}`` for the cells that got one.
    """
    library = library or current_library()[0]
    by_notebook: dict[str, list[CellOutcome]] = {}
    for outcome in outcomes:
        by_notebook.setdefault(outcome.notebook, []).append(outcome)
    hints = {}
    for notebook, cells in by_notebook.items():
        hint = library.hint(signature(cells), assignment, notebook)
        if hint is None:
            continue
        first = next(o.cell for o in cells if not o.passed)
        if _add_output(Path(autograded) / notebook, first, hint):
            hints[first] = hint
    return hints


def hint_output(hint: str) -> nbformat.NotebookNode:
    """The output cell :func:`annotate` adds: "Likely cause: ``hint``"."""
    return nbformat.v4.new_output(
        "display_data",
        data={"text/markdown": f"**Likely cause:** {hint}", "text/plain": f"Likely cause: {hint}"},
        metadata={OUTPUT_MARK: True},
    )


def _add_output(path: Path, grade_id: str, hint: str) -> bool:
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return False
    for cell in nb.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id and "outputs" in cell:
            cell.outputs = [o for o in cell.outputs if not o.get("metadata", {}).get(OUTPUT_MARK)]
            cell.outputs.append(hint_output(hint))
            _replace_notebook(nb, path)
            return True
    return False


def _replace_notebook(nb: nbformat.NotebookNode, path: Path) -> None:
    """Write ``nb`` in place of ``path``, with its mode: nbgrader leaves autograded notebooks read-only
    (0444), which stops an ordinary user's write, though not root's; the folder is the grader's."""
    mode = path.stat().st_mode & 0o777
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".ipynb", delete=False, encoding="utf-8") as tmp:
        nbformat.write(nb, tmp)
    os.chmod(tmp.name, mode)
    os.replace(tmp.name, path)


# ---------------------------------------------------------------- building the library
def sources_digest() -> str:
    """A digest of what every signature depends on besides its mutant: the checks' code (their line
    numbers are the sites) and the code cells of both assignments' source notebooks. (The library the
    notebooks import, ``course_lib``, is left out: its changes rarely move a site, and would make the
    library out of date on every edit.)"""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).parent / "checks").rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode() + b"\0" + path.read_bytes())
    for assignment in MUTANTS_OF:
        for path in sorted(source_dir(assignment).glob("*.ipynb")):
            for cell in nbformat.read(path, as_version=4).cells:
                if cell.cell_type == "code":
                    digest.update(f"{path.name}\0{cell.source}\0".encode())
    return digest.hexdigest()


def mutant_digest(name: str) -> str:
    """A digest of the mutant or variant ``name``: its notebook, answer cell and code."""
    m = ALL_MUTANTS[name]
    return hashlib.sha256(json.dumps([m.notebook, m.answer, m.code]).encode()).hexdigest()


def fingerprint() -> str:
    """A digest of everything the library is computed from: :func:`sources_digest` and every
    mutant's name, bug and :func:`mutant_digest`."""
    mutants = sorted([name, bug_of(name), mutant_digest(name)] for name in ALL_MUTANTS)
    return hashlib.sha256(json.dumps([sources_digest(), mutants]).encode()).hexdigest()


def judged_site(grade_id: str, objects: Sequence[Any], seed: int) -> str | None:
    """Probe and judge one check in-process, as nbgrader would: what a failure's signature holds.

    Returns:
        ``None`` if the cell passes; the judge's :attr:`~autograder.checks.CheckFailed.site` if it
        failed the answer; the error's name if the probe raised (in nbgrader's run that happens in
        the student's kernel, where no site is recorded); ``CheckFailed`` for a record the judge
        refused otherwise (:mod:`autograder.judging` fails the cell without a site).

    Raises:
        KeyError: if no check is declared for ``grade_id``.
    """
    from autograder import checks, records

    check = checks.find(grade_id)
    if check is None:
        raise KeyError(f"no hidden check is declared for {grade_id!r}")
    nonce = f"{seed:08x}" + "0" * 8
    inputs = check.inputs(seed)
    try:  # in the kernel
        payload = records.encode(grade_id, nonce, check.probe(inputs, *objects))
    except Exception as err:  # the student's code raised or the probe refused it
        return type(err).__name__
    try:  # in the grader
        check.verdict(inputs, records.decode(payload)[2])
    except checks.CheckFailed as err:
        return err.site
    except Exception:
        return checks.CheckFailed.__name__
    return None


def answer_signatures(
    assignment: str, notebook: str, replace: dict[str, str] | None = None, seeds: Sequence[int] = SEEDS
) -> list[Signature]:
    """The signature of a notebook's answers, once per seed, computed in-process as nbgrader's
    autograde run would: the source notebook with the answer cells of ``replace`` (``grade_id ->
    code``) in place of the solution.

    Every code cell runs in order in one fresh ``__main__`` namespace, with ``NBGRADER_EXECUTION``
    set (the notebooks' small budgets), in a copy of the assignment's folder; a cell that raises
    does not stop the run. A graded test cell runs its visible part; if that raises, the cell's
    signature holds the error's name (as in nbgrader's run, where the kernel raised); else its
    check is probed and judged with each seed (:func:`judged_site`) on the objects its hidden part
    passes, there and then. An error is named as :func:`decided_by` names it in nbgrader's run: with
    the line of the visible code that raised it, when it did.
    """
    replace = replace or {}
    cells = nbformat.read(source_dir(assignment) / notebook, as_version=4).cells
    failed: list[dict[str, str]] = [{} for _ in seeds]
    with tempfile.TemporaryDirectory() as tmp, _running_in(source_dir(assignment), Path(tmp)):
        ns: dict[str, Any] = {"__name__": "__main__"}
        for cell in cells:
            if cell.cell_type != "code":
                continue
            meta = cell.metadata.get("nbgrader", {})
            grade_id = meta.get("grade_id")
            if not meta.get("grade"):
                source = replace.get(grade_id, cell.source) if meta.get("solution") else cell.source
                with suppress(Exception):  # as in nbgrader's run, the notebook goes on
                    exec(source, ns)
                continue
            visible, _, hidden = cell.source.partition(HIDDEN_TESTS)
            try:
                exec(compile(visible, _test_file(grade_id), "exec"), ns)
                objects = [ns[name] if name in ns else _undefined(name) for name in _check_arguments(hidden, grade_id)]
            except Exception as err:
                for sig in failed:
                    sig[grade_id] = _raised(err, grade_id)
                continue
            for seed, sig in zip(seeds, failed, strict=True):
                site = judged_site(grade_id, objects, seed)
                if site is not None:
                    sig[grade_id] = site
    return [frozenset(sig.items()) for sig in failed]


def _raised(err: BaseException, grade_id: str) -> str:
    """What a signature holds for an error that a test cell's visible code raised in-process (compiled
    with :func:`_test_file` as its file name): as :func:`decided_by` names it in nbgrader's run."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None and tb.tb_frame.f_code.co_filename == _test_file(grade_id):
        return f"{type(err).__name__} at {grade_id}:{tb.tb_lineno}"
    return type(err).__name__


def _test_file(grade_id: str) -> str:
    """The file name the visible code of test cell ``grade_id`` is compiled with in-process."""
    return f"<test cell {grade_id}>"


def _undefined(name: str) -> Any:
    raise NameError(f"name {name!r} is not defined")


def _check_arguments(hidden: str, grade_id: str) -> list[str]:
    """The names a hidden test cell passes to its check (``checks.<grade_id>(MyVAE)`` -> ``["MyVAE"]``).

    Raises:
        ValueError: if the hidden part does not call the check once with plain names.
    """
    calls = [
        n for n in ast.walk(ast.parse(hidden)) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == grade_id
    ]
    if len(calls) != 1 or not all(isinstance(a, ast.Name) for a in calls[0].args):
        raise ValueError(f"the hidden tests of {grade_id} should call checks.{grade_id}(...) once, with names")
    return [a.id for a in calls[0].args]


@contextmanager
def _running_in(source: Path, workdir: Path) -> Iterator[None]:
    """Run a block as a notebook of ``source`` runs under nbgrader's autograde: in a copy of the
    folder, with ``NBGRADER_EXECUTION=autograde``, its output captured; figures closed afterwards."""
    import matplotlib.pyplot as plt

    shutil.copytree(source, workdir, dirs_exist_ok=True)
    before, cwd = os.environ.get("NBGRADER_EXECUTION"), Path.cwd()
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    os.chdir(workdir)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):  # the notebook's prints and bars
            yield
    finally:
        os.chdir(cwd)
        if before is None:
            os.environ.pop("NBGRADER_EXECUTION", None)
        else:
            os.environ["NBGRADER_EXECUTION"] = before
        plt.close("all")


def mutant_signatures(name: str, seeds: Sequence[int] = SEEDS) -> list[Signature]:
    """The signature of mutant (or variant) ``name`` of :data:`ALL_MUTANTS`, once per seed."""
    mutant = ALL_MUTANTS[name]
    return answer_signatures(assignment_of(name), mutant.notebook, {mutant.answer: mutant.code}, seeds)


def build(seeds: Sequence[int] = SEEDS, path: Path = LIBRARY_PATH, log: Any = print, reuse: bool = True) -> Library:
    """Judge every mutant of :data:`ALL_MUTANTS` with each seed, write the library to ``path``.

    With ``reuse``, the signatures of the library already at ``path`` are kept for the mutants whose
    code did not change, if the checks and notebooks did not either (:func:`sources_digest`). A
    mutant whose signature changes with the seed is left out and listed as unstable. A mutant whose
    failed cells are not the ones it declares (:attr:`~autograder.submissions.Mutant.fails`) is
    logged (``tests/test_hints.py`` fails on it).
    """
    sources = sources_digest()
    previous = load_library(path) if reuse and Path(path).exists() else Library(())
    kept = {e.name: e for e in previous.entries} if previous.sources == sources else {}
    entries, unstable = [], {}
    for name, mutant in ALL_MUTANTS.items():
        digest = mutant_digest(name)
        if name in kept and kept[name].digest == digest and kept[name].bug == bug_of(name):
            entries.append(kept[name])
            continue
        sigs = mutant_signatures(name, seeds)
        if len(set(sigs)) > 1:
            unstable[name] = [sorted(map(list, s)) for s in sigs]
            log(f"{name}: signature changes with the seed, left out: {unstable[name]}")
            continue
        cells = {grade_id for grade_id, _ in sigs[0]}
        if cells != mutant.fails:
            log(f"{name}: fails {sorted(cells)}, declared {sorted(mutant.fails)}")
        entries.append(Entry(name, bug_of(name), assignment_of(name), mutant.notebook, sigs[0], digest))
        log(f"{name}: {sorted(sigs[0])}")
    library = Library(tuple(entries), unstable, fingerprint(), sources)
    Path(path).write_text(json.dumps(library.to_json(), indent=1) + "\n")
    load_library.cache_clear()
    return library


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m autograder.hints build`` (write the library) or ``check`` (exit 1 if it is out of
    date)."""
    parser = argparse.ArgumentParser(prog="python -m autograder.hints", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["build", "check"])
    parser.add_argument("--all", action="store_true", help="recompute every signature (build)")
    args = parser.parse_args(argv)
    if args.action == "check":
        current = load_library().fingerprint == fingerprint()
        print("the hint library is up to date" if current else f"the hint library is out of date: run {BUILD_COMMAND}")
        return 0 if current else 1
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("MPLBACKEND", "Agg")
    library = build(log=lambda line: print(line, file=sys.stderr, flush=True), reuse=not args.all)
    print(f"wrote {LIBRARY_PATH.name}: {len(library.entries)} mutants, {len(library.unstable)} unstable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
