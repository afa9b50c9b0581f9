"""The event log of one student's nbgrader run: what nbgrader's own process saw, for the report.

nbgrader's process (:mod:`autograder.nbgrader_ext`) sees each cell's outputs right after it ran and
what the judges decided; it appends them as JSON lines to the file named by ``$COURSE_EVENTS``,
which :mod:`autograder.grading` sets for each run and reads back. Kinds of event:

- ``problem``: a cell that a limit or the sandbox stopped (``kind`` says which), or whose output
  was cut;
- ``finding``: what a judge found (:class:`autograder.judging.Finding`);
- ``outcome``: how a graded test cell ended (:class:`autograder.report.CellOutcome`);
- ``timing``: the seconds the judges took on a notebook;
- ``fault``: a kernel that could not start: the machine's or the grader's fault, never the student's.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

#: Environment variable naming the JSON-lines file of a grading run's events.
EVENTS_ENV = "COURSE_EVENTS"

#: The kinds of ``problem`` event, and how the report words each (``timeout`` and ``detail`` filled in).
CELL_MESSAGES = {
    "cell_timeout": "ran past the {timeout} s cell limit and was stopped",
    "memory": "hit the memory limit (MemoryError)",
    "process_limit": "hit the process limit ({detail})",
    "refused_file": "was refused a file ({detail})",
    "sys_exit": "called sys.exit(), which the kernel caught",
    "kernel_died": "killed its kernel (kernel died); it failed, and the cells after it ran in a restarted kernel",
    "sandbox": "was refused by the sandbox ({detail})",
    "hidden_file": "was refused by the sandbox, which hides the course's files and all but the kernel's own "
    "folder ({detail})",
    "output_truncated": "printed more than the grader keeps; its output was truncated",
    "output_dropped": "produced {detail}; the grader dropped it (Budgets, docs/grading.md)",
    "judge_timeout": "could not be judged within the grader's time for a judge (Budgets.judge_seconds); it failed",
}


class EventLog:
    """Appends events to the file named by ``$COURSE_EVENTS``; without it (nbgrader run by hand), nothing."""

    def __init__(self, path: str | os.PathLike | None = None):
        path = path or os.environ.get(EVENTS_ENV)
        self.path = Path(path) if path else None

    def write(self, event: str, **fields: Any) -> None:
        """Append one event."""
        if self.path is None:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"event": event, **fields}) + "\n")

    def problem(self, notebook: str, cell: str, kind: str, detail: str = "") -> None:
        """Append a cell's problem.

        Raises:
            KeyError: if ``kind`` is not one of :data:`CELL_MESSAGES` (a grader bug).
        """
        if kind not in CELL_MESSAGES:  # refuse it here, not when the report is written
            raise KeyError(f"unknown problem kind {kind!r}; expected one of {sorted(CELL_MESSAGES)}")
        self.write("problem", notebook=notebook, cell=cell, kind=kind, detail=detail)

    def finding(self, finding: Any) -> None:
        """Append a judge's finding (a dataclass)."""
        self.write("finding", **(asdict(finding) if is_dataclass(finding) else dict(finding)))

    def outcome(self, outcome: Any) -> None:
        """Append how a graded test cell ended (a :class:`~autograder.report.CellOutcome`)."""
        self.write("outcome", **asdict(outcome))

    def fault(self, notebook: str, detail: str) -> None:
        """Append that a kernel of ``notebook`` could not start (``detail``: nbclient's error)."""
        self.write("fault", notebook=notebook, detail=detail)

    def timing(self, notebook: str, judge_seconds: float, cells: int) -> None:
        """Append the time the judges took on one notebook."""
        self.write("timing", notebook=notebook, judge_seconds=round(judge_seconds, 4), cells=cells)


def read_events(path: Path) -> list[dict]:
    """The events of a grading run's log, in order (empty if there is none)."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class Stopwatch:
    """Adds up the seconds spent in ``with`` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start
