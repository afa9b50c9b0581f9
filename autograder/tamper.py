"""A static scan of submitted notebooks for code that tampers with grading.

Student code runs in the same kernel as the hidden tests (nbgrader's design), so code that
replaces the checks, the comparison functions they use, or imports the reference answers could
change a grade from inside the kernel. This scan runs outside the kernel, before grading, on every
cell the student can edit (answer cells and unlocked cells; locked and test cells are restored
from the source by nbgrader anyway). A hit zeroes that notebook's autograded points and is
reported by name for an instructor to review.

It is one layer, not a proof: the sandbox bounds what code can do to the machine, the checks
refuse objects not defined in the notebook (:func:`autograder.checks.require_student_code`), and
this scan catches the direct ways of reaching the grader from a cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

#: (pattern, what it means). Patterns match student-editable code cells.
FORBIDDEN: tuple[tuple[str, str], ...] = (
    (r"\bautograder\b", "refers to the grader's package (autograder)"),
    (r"course_lib\s*\.\s*solutions|from\s+course_lib\s+import\s+[^\n]*\bsolutions\b", "imports the reference answers"),
    (r"\bsys\s*\.\s*modules\b", "edits loaded modules (sys.modules)"),
    (r"\bbuiltins\b|__builtins__", "touches Python's builtins"),
    (r"__import__|\bimportlib\b", "imports modules dynamically"),
    (r"(?<![\w.])(exec|eval|compile)\s*\(", "runs generated code (exec/eval/compile)"),
    (r"\b(allclose|array_equal|isclose|equal|assert_allclose|assert_array_equal)\s*=(?!=)", "replaces a comparison"),
    (r"\bsetattr\s*\(\s*(?!self\b|cls\b)", "sets an attribute by name on something other than self"),
    (r"\bvars\s*\(\s*(?!self\b)\w|\.__dict__\b|\b(globals|locals)\s*\(\s*\)\s*\[", "edits a namespace directly"),
    (r"\b(torch|np|numpy)(\.\w+)*\.\w+\s*=(?!=)", "assigns to an attribute of torch or numpy"),
    (r"site-packages|\.venv|gradebook", "reads or writes the grader's files"),
)
_COMPILED = tuple((re.compile(p), why) for p, why in FORBIDDEN)


@dataclass(frozen=True)
class Finding:
    """One suspicious line: where it is and why it is suspicious."""

    notebook: str
    cell: str
    line: str
    reason: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.reason} ({self.line.strip()[:80]!r})"


def _editable(cell: nbformat.NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and not meta.get("locked", False) and not meta.get("grade", False)


def scan_notebook(path: Path) -> list[Finding]:
    """Findings in the student-editable code cells of one notebook (empty when clean)."""
    nb = nbformat.read(path, as_version=4)
    findings = []
    for index, cell in enumerate(nb.cells):
        if not _editable(cell):
            continue
        name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"#{index}"
        for line in cell.source.splitlines():
            code = line.split("#", 1)[0]
            for pattern, why in _COMPILED:
                if pattern.search(code):
                    findings.append(Finding(path.name, name, line, why))
                    break
    return findings
