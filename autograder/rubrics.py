"""The rubrics of the written answers: shown to the grader in formgrader, never to the student.

Each written question is an nbgrader *manually graded task* cell worth 0 points whose text holds the
rubric between ``=== BEGIN MARK SCHEME ===`` and ``=== END MARK SCHEME ===`` (nbgrader's mark scheme);
the answer below it keeps its points. nbgrader itself does the rest:

- ``generate_assignment`` removes the mark scheme from the student version (``ClearMarkScheme``) after
  saving the cell's full text in the gradebook;
- ``autograde`` restores locked cells from the gradebook, so the graded notebook that formgrader
  shows holds the rubric above the student's answer;
- ``generate_feedback`` removes it again (``ClearMarkScheme`` in ``GenerateFeedback.preprocessors``,
  ``assignments/nbgrader_config.py``), so the feedback shows the question only.

:class:`GradeRubricCells` gives each rubric cell its (zero) score while autograding, so that a rubric
never leaves a submission waiting for a manual grade it cannot get. See nbgrader's "Manually graded
task cells" (https://nbgrader.readthedocs.io/en/stable/user_guide/creating_and_grading_assignments.html).
"""

from __future__ import annotations

from nbformat import NotebookNode
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import NbGraderPreprocessor

#: nbgrader's delimiters of a mark scheme (``ClearMarkScheme``'s defaults).
BEGIN, END = "BEGIN MARK SCHEME", "END MARK SCHEME"


def is_rubric(cell: NotebookNode) -> bool:
    """Whether ``cell`` is a rubric: a task cell worth 0 points."""
    meta = cell.metadata.get("nbgrader", {})
    return utils.is_task(cell) and float(meta.get("points", 0)) == 0


class GradeRubricCells(NbGraderPreprocessor):
    """Autograde step (after ``SaveAutoGrades``): each rubric cell of the notebook gets an automatic
    score of 0 out of 0 and no longer needs a manual grade, unless a grader has entered one."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        names = [cell.metadata["nbgrader"]["grade_id"] for cell in nb.cells if is_rubric(cell)]
        if not names:
            return nb, resources
        ids = resources["nbgrader"]
        with Gradebook(ids["db_url"]) as gradebook:
            for name in names:
                grade = gradebook.find_grade(name, ids["notebook"], ids["assignment"], ids["student"])
                if grade.manual_score is None:
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = False
            gradebook.db.commit()
        return nb, resources
