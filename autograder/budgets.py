"""What one submission may cost the grader's own side, each a setting with its default: the judges' time,
the outputs nbgrader's process keeps, the notebook read, the feedback written.

The kernel's own limits (CPU, memory, processes, files) are :class:`autograder.sandbox.Limits`; the
time of a whole submission is ``course autograde --timeout``. A submission that reaches one of these
fails only itself, and the report names the limit (:data:`autograder.events.CELL_MESSAGES`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Budgets:
    """The grader-side budgets of one submission.

    Attributes:
        judge_seconds: time a hidden check's judge may take on one cell, seconds (wall clock); a slower
            judge is stopped and the cell fails.
        output_bytes: largest single output (an image, an HTML table) nbgrader's process keeps, bytes;
            a larger one is dropped from the notebook and its feedback.
        stream_bytes: printed text kept per cell while it runs, bytes (the feedback keeps less, see
            :data:`autograder.nbgrader_ext.MAX_OUTPUT_CHARS`); the rest is dropped.
        notebook_output_bytes: outputs kept per notebook, bytes; later ones are dropped.
        record_bytes: the hidden checks' records received per cell, bytes (a record holds at most
            :data:`autograder.records.MAX_ELEMENTS` numbers); later ones are dropped.
        notebook_bytes: largest submitted notebook read, bytes; a larger one is refused unread.
        feedback_bytes: largest feedback page handed back, bytes; a larger one is replaced by a page
            that says so.
    """

    judge_seconds: float = 30.0
    output_bytes: int = 5_000_000
    stream_bytes: int = 2_000_000
    notebook_output_bytes: int = 20_000_000
    record_bytes: int = 100_000_000
    notebook_bytes: int = 50_000_000
    feedback_bytes: int = 30_000_000

    def nbgrader_flags(self) -> list[str]:
        """The command-line flags that give nbgrader's process these budgets
        (:class:`autograder.nbgrader_ext.RestartingExecute`'s settings)."""
        executed = ("judge_seconds", "output_bytes", "stream_bytes", "notebook_output_bytes", "record_bytes")
        return [f"--RestartingExecute.{name}={value}" for name, value in asdict(self).items() if name in executed]
