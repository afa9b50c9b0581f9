"""Instructor-only grading tools: hidden checks per activity, the nbgrader pipeline, the ``course`` command.

Nothing in this package ships to students: the student kit holds the released notebooks and a
``course_lib`` wheel without ``course_lib.solutions``.
"""
