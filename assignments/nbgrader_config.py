"""nbgrader configuration of the course. The course root is this folder (``assignments/``).

The ``course`` command copies this file into a working course root (``<out>/course``) so that
generated folders and the gradebook never land in the repository.
"""

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    ClearMarkScheme,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

from autograder.feedback_html import FeedbackExporter, HideHostPaths, template_dirs
from autograder.late import LatePenalty
from autograder.nbgrader_ext import CapOutputs, RestartingExecute, StripCheckInternals
from autograder.rubrics import GradeRubricCells

c = get_config()  # noqa: F821 - injected by traitlets

c.CourseDirectory.course_id = "autoencoders-to-world-models"
# data/: rollouts and checkpoints that homework 2 notebooks write next to themselves (never released).
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.png", "data"]

# What students see in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding: every cell gets at most this long (seconds); training cells shrink their budget
# while NBGRADER_EXECUTION is set, so a whole submission takes well under a minute.
c.Execute.timeout = 300
# After a cell is stopped at the time limit, go on with the next cells instead of failing the
# whole notebook when the interrupted kernel is slow to answer.
c.Execute.raise_on_iopub_timeout = False
c.Execute.iopub_timeout = 15
c.LimitOutput.max_lines = 400
c.LimitOutput.max_traceback = 60

# Hidden checks raise CheckFailed with a message; keep that message, drop their traceback frames.
# RestartingExecute: nbgrader's Execute, but a cell that kills the kernel fails alone (the kernel is
# restarted) instead of voiding the grades of the whole notebook.
c.Autograde.autograde_preprocessors = [
    RestartingExecute,
    CapOutputs,
    StripCheckInternals,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    GradeRubricCells,
    AssignLatePenalties,
    CheckCellMetadata,
]
# Late work (AssignLatePenalties above): a notebook submitted after the due date plus the student's
# extension loses this share of its score per started day late. Other methods: "none" (lateness is
# recorded, no penalty) and "zero" (a late notebook scores zero).
c.AssignLatePenalties.plugin_class = LatePenalty
c.LatePenalty.penalty_method = "percent_per_day"
c.LatePenalty.percent_per_day = 10.0
# Written questions carry their rubric as nbgrader's mark scheme (autograder/rubrics.py): formgrader
# shows it to the grader, GradeRubricCells above scores the 0-point rubric cells. The feedback shows the
# graded notebook without the hidden test code, the rubrics and the grading machine's paths
# (HideHostPaths); its math is MathML written into the page, so it renders offline, with no MathJax from
# a CDN (autograder.feedback_html).
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    ClearMarkScheme,
    HideHostPaths,
    CSSHTMLHeaderPreprocessor,
]
c.GenerateFeedback.exporter_class = FeedbackExporter
c.HTMLExporter.extra_template_basedirs = template_dirs()
