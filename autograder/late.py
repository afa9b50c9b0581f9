"""The late policy: how many points a late notebook loses, as a plugin of nbgrader's ``AssignLatePenalties``.

nbgrader's autograde computes how late a submission is (its ``timestamp.txt`` against the assignment's
due date plus the student's extension, :attr:`nbgrader.api.SubmittedAssignment.total_seconds_late`) and
asks the plugin named by ``c.AssignLatePenalties.plugin_class`` for each notebook's penalty, which it
stores as :attr:`nbgrader.api.SubmittedNotebook.late_submission_penalty` (clipped to ``[0, score]``).
:class:`LatePenalty` is nbgrader's own :class:`~nbgrader.plugins.LateSubmissionPlugin` (``none``: no
penalty, ``zero``: the whole score) with a third method, ``percent_per_day``. The course's choice is
made once, in ``assignments/nbgrader_config.py``. This module runs inside nbgrader's process: it imports
nbgrader and traitlets only.

Source: nbgrader's "Late submission plugin" documentation (``nbgrader/docs/source/plugins/late-plugin.rst``).
"""

from __future__ import annotations

import math
from textwrap import dedent

from nbgrader.plugins import LateSubmissionPlugin
from traitlets import Enum, Float

#: Seconds in the day that ``percent_per_day`` counts.
SECONDS_PER_DAY = 24 * 3600


class LatePenalty(LateSubmissionPlugin):
    """nbgrader's late-submission plugin with a penalty of a percentage of the score per started day.

    Configured in ``nbgrader_config.py``::

        c.AssignLatePenalties.plugin_class = LatePenalty
        c.LatePenalty.penalty_method = "percent_per_day"  # or "none", "zero" (nbgrader's own)
        c.LatePenalty.percent_per_day = 10.0
    """

    penalty_method = Enum(
        ("none", "zero", "percent_per_day"),
        default_value="none",
        help=dedent(
            """
            How a late notebook is penalised:
                'none': no penalty (nbgrader's default; lateness is still recorded)
                'zero': the notebook scores zero (nbgrader's)
                'percent_per_day': percent_per_day percent of the notebook's score per started day late
            """
        ),
    ).tag(config=True)

    percent_per_day = Float(
        10.0,
        min=0.0,
        max=100.0,
        help="With penalty_method 'percent_per_day': percent of the score lost per started day (24 h) late.",
    ).tag(config=True)

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        """The points a notebook scoring ``score`` loses for being ``total_seconds_late`` seconds late.

        Args:
            student_id: the student (unused: the policy is the same for everyone; extensions move
                the due date instead).
            score: the notebook's score before the penalty, in points.
            total_seconds_late: seconds after the due date plus extension (nbgrader calls this only
                when it is above zero).

        Returns:
            ``None`` (no penalty) for ``none``; ``score`` for ``zero``; for ``percent_per_day``,
            ``score * percent_per_day / 100 * ceil(days late)``, at most ``score`` (1 s late counts as
            one day, 24 h + 1 s as two).
        """
        if self.penalty_method != "percent_per_day":
            return super().late_submission_penalty(student_id, score, total_seconds_late)
        days = math.ceil(total_seconds_late / SECONDS_PER_DAY)
        return min(score, score * self.percent_per_day / 100.0 * days)
