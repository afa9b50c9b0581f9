"""nbgrader preprocessors of the course.

nbgrader's feedback shows a graded notebook with its outputs. A hidden check that fails would show
its traceback, whose frames quote the checks' source. ``StripCheckInternals`` runs right after
execution and keeps only the exception's name and message for errors raised inside
``autograder``; frames of the student's own code stay.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import NbGraderPreprocessor

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
    traceback context lines from the hidden test region of a cell."""

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
    """Cut every text output to ``MAX_OUTPUT_CHARS`` characters (a 100 MB print stays small)."""

    def preprocess_cell(self, cell, resources, cell_index):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and len(output.get("text", "")) > MAX_OUTPUT_CHARS:
                n = len(output["text"])
                output["text"] = output["text"][:MAX_OUTPUT_CHARS] + "\n" + TRUNCATION_MARK.format(n=n) + "\n"
            data = output.get("data", {})
            for mime in ("text/plain", "text/html"):
                if isinstance(data.get(mime), str) and len(data[mime]) > MAX_OUTPUT_CHARS:
                    data[mime] = data[mime][:MAX_OUTPUT_CHARS] + "\n" + TRUNCATION_MARK.format(n=len(data[mime]))
        return cell, resources
