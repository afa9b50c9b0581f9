"""nbgrader preprocessors of the course, and its collect from the exchange.

:class:`RestartingExecute` is nbgrader's ``Execute`` that judges each graded test cell in nbgrader's process
(:mod:`autograder.judging`), so that nothing that runs in the student's kernel decides a grade, and that
survives a kernel that dies. :class:`StripCheckInternals` keeps the checks' source out of the feedback,
:class:`CapOutputs` keeps outputs small, and :class:`SafeCollect` copies submissions without following links.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from nbclient.exceptions import DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat import NotebookNode
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import ignore_patterns
from traitlets import Float, Integer

from autograder import events, judging, records
from autograder.budgets import Budgets
from autograder.sandbox import VIEW_ENV, View
from autograder.student_files import copy_tree

#: ``ename`` of the error output given to a cell whose kernel died.
KERNEL_DIED = "KernelDied"
_BUDGETS = Budgets()  # the defaults of RestartingExecute's budgets


class RestartingExecute(Execute):
    """nbgrader's ``Execute``; a cell that kills the kernel fails and the kernel is restarted.

    It judges: right before a graded test cell runs, it writes a fresh nonce into the cell's call of its
    hidden check; right after, the check's judge decides in this process from the record the probe left
    in the cell's outputs (:mod:`autograder.judging`). A wrong answer becomes the cell's ``CheckFailed``
    error, so nbgrader scores it zero; a test cell that did not run as written is reported
    (``$COURSE_EVENTS``).

    A cell whose kernel dies (``os._exit``, a crash, the sandbox's limits) gets a :data:`KERNEL_DIED`
    error, so the test cells that passed before keep their points; nbgrader's own ``Execute`` stops the
    notebook and saves no grade for any of its cells. The cells after it run in the fresh kernel, without
    the notebook's earlier state: they earn what they earn there (usually nothing). After ``max_restarts``
    deaths the notebook fails as in nbgrader (no grades saved for it). Configured like ``Execute``
    (``c.Execute.timeout``...).
    """

    max_restarts = Integer(3, help="kernel deaths survived per notebook").tag(config=True)
    judge_seconds = Float(_BUDGETS.judge_seconds, help="seconds a judge may take on one cell").tag(config=True)
    output_bytes = Integer(_BUDGETS.output_bytes, help="largest output kept").tag(config=True)
    stream_bytes = Integer(_BUDGETS.stream_bytes, help="printed text kept per cell").tag(config=True)
    notebook_output_bytes = Integer(_BUDGETS.notebook_output_bytes, help="outputs kept per notebook").tag(config=True)
    record_bytes = Integer(_BUDGETS.record_bytes, help="check records received per cell").tag(config=True)

    def preprocess(self, nb, resources, *args, **kwargs):
        judging.prefetch()  # the judges' imports load while the kernel starts
        self._deaths = 0  # one instance runs every notebook of a submission
        self._notebook = f"{resources.get('unique_key') or 'notebook'}.ipynb"
        self._workdir = Path(resources.get("metadata", {}).get("path") or ".").resolve()
        self._events = events.EventLog()
        self._judging = events.Stopwatch()
        self._judged = 0
        self._kept: dict[str, int] = {}  # bytes of outputs kept: per notebook, and per cell and kind
        self._dropped: set[int] = set()  # cells whose outputs were cut
        try:
            return super().preprocess(nb, resources, *args, **kwargs)
        finally:
            self._events.timing(self._notebook, self._judging.seconds, self._judged)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        with self._judging:
            armed = judging.arm(cell)
        try:
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except DeadKernelError:
            self._deaths += 1
            message = "the kernel died while running this cell; it was restarted without this notebook's state"
            cell.outputs.append(
                NotebookNode(
                    output_type="error", ename=KERNEL_DIED, evalue=message, traceback=[f"{KERNEL_DIED}: {message}"]
                )
            )
            if self._deaths > self.max_restarts or self.km is None or self.kc is None:
                raise
            self.log.warning(
                "kernel died in cell %s; restarting it (%d/%d)", cell_index, self._deaths, self.max_restarts
            )
            await self._restart()
        finally:
            if armed is not None:
                cell.source = armed.source  # the instructor's code, without the nonce
        with self._judging:  # a cell that raised (or killed its kernel) has failed: its records are only dropped
            try:
                with judging.budget(self.judge_seconds):
                    findings, outcome = judging.judge_cell(cell, armed, self._notebook)
            except judging.JudgeTimeoutError:
                message = (
                    f"the hidden check could not judge this cell within the grader's {self.judge_seconds:g} s "
                    "(the model or data it describes is too large to check); it earns no points"
                )
                findings, outcome = [], judging.fail_unjudged(cell, armed, self._notebook, message)
                self._events.problem(self._notebook, cell_name(cell, cell_index), "judge_timeout")
            for finding in findings:
                self._events.finding(finding)
            if outcome is not None:
                self._events.outcome(outcome)
        self._judged += armed is not None
        for kind, detail in cell_problems(cell, self._workdir):
            self._events.problem(self._notebook, cell_name(cell, cell_index), kind, detail)
        return cell

    # nbclient binds the synchronous wrapper to its own coroutine; bind it to this one
    execute_cell = run_sync(async_execute_cell)

    def output(self, outs, msg, display_id, cell_index):
        """nbclient's handling of an output message, within the budgets: an output over
        ``output_bytes``, printed text past ``stream_bytes`` per cell, outputs past
        ``notebook_output_bytes`` per notebook and records past ``record_bytes`` per cell are dropped
        as they arrive (nbgrader's process never holds them), with one note in the cell and the report."""
        size, record = _output_bytes(msg)
        kind = "record" if record else "stream" if msg["msg_type"] == "stream" else "output"
        cell_key, cap = f"{kind}:{cell_index}", {"record": self.record_bytes, "stream": self.stream_bytes}
        over = None
        if kind == "output" and size > self.output_bytes:
            over = f"an output of {size / 1e6:.1f} MB, over the {self.output_bytes / 1e6:g} MB limit"
        elif kind in cap and self._kept.get(cell_key, 0) + size > cap[kind]:
            over = f"more than {cap[kind] / 1e6:g} MB of {'probe records' if record else 'printed text'}"
        elif not record and self._kept.get("notebook", 0) + size > self.notebook_output_bytes:
            over = f"more than {self.notebook_output_bytes / 1e6:g} MB of outputs in the notebook"
        if over is None:
            self._kept[cell_key] = self._kept.get(cell_key, 0) + size
            if not record:
                self._kept["notebook"] = self._kept.get("notebook", 0) + size
            return super().output(outs, msg, display_id, cell_index)
        if cell_index not in self._dropped:
            self._dropped.add(cell_index)
            outs.append(NotebookNode(output_type="stream", name="stderr", text=f"[the grader dropped {over}]\n"))
            cell = self.nb.cells[cell_index]
            self._events.problem(self._notebook, cell_name(cell, cell_index), "output_dropped", over)
        return None

    async def async_start_new_kernel(self, **kwargs):
        try:
            return await super().async_start_new_kernel(**kwargs)
        except Exception as err:
            self._events.fault(self._notebook, f"{type(err).__name__}: {err}")
            raise

    async def async_start_new_kernel_client(self):
        try:
            return await super().async_start_new_kernel_client()
        except Exception as err:
            self._events.fault(self._notebook, f"{type(err).__name__}: {err}")
            raise

    # nbclient binds these synchronous wrappers (which setup_kernel calls) to its own coroutines too
    start_new_kernel = run_sync(async_start_new_kernel)
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    async def _restart(self) -> None:
        """A fresh kernel after one died; a kernel that cannot start is the machine's fault (each start is
        a new sandbox, which nothing of the notebook's reaches)."""
        try:
            await ensure_async(self.km.restart_kernel(now=True))
            await ensure_async(self.kc.wait_for_ready(timeout=self.startup_timeout))
        except Exception as err:
            self._events.fault(self._notebook, f"restarting it: {type(err).__name__}: {err}")
            raise


def _output_bytes(msg: dict) -> tuple[int, bool]:
    """The size of an output message's content (characters of its texts), and whether it is a probe record."""
    content = msg.get("content", {})
    if "text" in content:
        return len(content["text"]), False
    data = content.get("data", {})
    size = sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in data.values())
    return size, records.MIME in data


def cell_name(cell: NotebookNode, index: int) -> str:
    """How the report names a cell: its ``grade_id``, or ``cell <id>``."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {cell.get('id') or index}"


#: Errors that mean a limit or the sandbox stopped a cell, by ``ename``: the kind of problem
#: (:data:`autograder.events.CELL_MESSAGES` says how each is reported).
CELL_PROBLEMS = {
    "CellTimeoutError": "cell_timeout",
    "MemoryError": "memory",
    "BlockingIOError": "process_limit",
    "PermissionError": "refused_file",
    "SystemExit": "sys_exit",
    KERNEL_DIED: "kernel_died",
}
#: ``OSError`` messages of the sandbox's refusals (a read-only file system, no network).
_SANDBOX_OSERRORS = ("Read-only file system", "Network is unreachable", "Temporary failure in name resolution")


def _quoted_path(evalue: object) -> Path | None:
    """The absolute path an ``OSError`` message quotes (``[Errno 2] ...: '/a/b'``), if any."""
    match = re.search(r"'(/[^']*)'", str(evalue))
    return Path(match.group(1)) if match else None


def _hidden(path: Path | None, workdir: Path) -> bool:
    """Whether ``path`` is a file the sandbox hides from the kernel (outside its view, or the reference
    answers); never one of the kernel's own working folder ``workdir``."""
    view = os.environ.get(VIEW_ENV)  # set by autograder.grading for a sandboxed run
    if path is None or view is None or path == workdir or workdir in path.parents:
        return False
    return View.from_json(view).hides(path)


def cell_problems(cell: NotebookNode, workdir: Path) -> list[tuple[str, str]]:
    """``(kind, detail)`` for each error output of ``cell`` that a limit or the sandbox caused.

    ``workdir`` is the kernel's working folder: a file missing there is the notebook's own doing.
    """
    found = []
    for output in cell.get("outputs", []):
        ename, evalue = output.get("ename", ""), str(output.get("evalue", ""))
        if ename in CELL_PROBLEMS:
            found.append((CELL_PROBLEMS[ename], evalue[:120]))
        elif ename in ("OSError", "gaierror", "ConnectionError") and any(m in evalue for m in _SANDBOX_OSERRORS):
            found.append(("sandbox", evalue[:120]))
        elif ename == "FileNotFoundError" and _hidden(_quoted_path(evalue), workdir):
            found.append(("hidden_file", evalue[:120]))
    return found


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_INTERNAL = ("autograder/", "autograder\\", "autograder.checks", "course_lib/solutions", "course_lib\\solutions")


def _cut_at_hidden_tests(frame: str) -> str:
    lines = frame.split("\n")
    for i, line in enumerate(lines):
        if "BEGIN HIDDEN TESTS" in _ANSI.sub("", line):
            return "\n".join(lines[:i])
    return frame


class StripCheckInternals(NbGraderPreprocessor):
    """Remove traceback frames that quote ``autograder`` or ``course_lib.solutions`` code, and
    traceback context lines from the hidden test region of a cell.

    Runs right after execution: a hidden check that fails keeps only its exception's name and message,
    since its frames would quote the checks' source in nbgrader's feedback; frames of the student's own
    code stay."""

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            frames = output.get("traceback", [])
            # A failing visible test quotes the lines around it, which can reach into the hidden
            # test region of the same cell: cut every frame at the marker.
            cut = [_cut_at_hidden_tests(frame) for frame in frames]
            internal = [any(m in _ANSI.sub("", f) for m in _INTERNAL) for f in cut]
            if cut != frames or any(internal):
                kept = [f for f, inside in zip(cut, internal, strict=True) if not inside and f.strip()]
                last = f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"
                if not kept or _ANSI.sub("", kept[-1]).strip() != last.strip():
                    kept.append(last)
                output["traceback"] = kept
        return cell, resources


#: Longest text kept of one output (characters); nbgrader's LimitOutput counts lines, not characters.
MAX_OUTPUT_CHARS = 100_000
TRUNCATION_MARK = "[output truncated by the grader: {n} characters in all]"


class CapOutputs(NbGraderPreprocessor):
    """Cut every text output to ``MAX_OUTPUT_CHARS`` characters (a 100 MB print stays small), and
    report each cut cell (``$COURSE_EVENTS``)."""

    def preprocess_cell(self, cell, resources, cell_index):
        cut = False
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and len(output.get("text", "")) > MAX_OUTPUT_CHARS:
                n = len(output["text"])
                output["text"] = output["text"][:MAX_OUTPUT_CHARS] + "\n" + TRUNCATION_MARK.format(n=n) + "\n"
                cut = True
            data = output.get("data", {})
            for mime in ("text/plain", "text/html"):
                if isinstance(data.get(mime), str) and len(data[mime]) > MAX_OUTPUT_CHARS:
                    data[mime] = data[mime][:MAX_OUTPUT_CHARS] + "\n" + TRUNCATION_MARK.format(n=len(data[mime]))
                    cut = True
        if cut:
            notebook = f"{resources.get('unique_key') or 'notebook'}.ipynb"
            events.EventLog().problem(notebook, cell_name(cell, cell_index), "output_truncated")
        return cell, resources


#: The largest file of a submission that collect copies (bytes); larger ones are refused by size.
MAX_SUBMITTED_FILE_BYTES = 50_000_000


class SafeCollect(ExchangeCollect):
    """nbgrader's collect, copying a submission as :func:`autograder.student_files.copy_tree` does:
    regular files of the submitting student only, never a link followed, a FIFO opened or a file over
    :data:`MAX_SUBMITTED_FILE_BYTES` read. What it refuses is listed in the collected folder and
    reported when the submission is staged (nbgrader's own copy follows links with the grader's rights).
    """

    def do_copy(self, src, dest, log=None):
        owner = os.lstat(src).st_uid
        ignore = ignore_patterns(
            exclude=self.coursedir.ignore, include=self.coursedir.include, max_file_size=self.coursedir.max_file_size
        )
        for path, why in copy_tree(Path(src), Path(dest), owner, MAX_SUBMITTED_FILE_BYTES, ignore).items():
            self.log.warning("refused %s of %s: it %s", path, src, why)
