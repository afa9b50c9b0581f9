"""Graded reference answers. Instructor-only: never shipped to students.

- :mod:`course_lib.solutions.hw1`: homework 1 (``MyVAE``, ``collect_frames``,
  ``collect_upright_frames``).
- :mod:`course_lib.solutions.conv_vae`: the World Models ``ConvVAE`` (homework 2).
"""
