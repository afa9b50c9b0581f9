"""Graded reference answers. Instructor-only: never shipped to students.

- :mod:`course_lib.solutions.hw1`: homework 1 (``MyVAE``, ``collect_frames``,
  ``collect_upright_frames``).
- :mod:`course_lib.solutions.conv_vae`: the World Models ``ConvVAE`` (homework 2, w1).
- :mod:`course_lib.solutions.hw2`: homework 2's ``vae_loss`` (w2), ``encode_rollouts`` and
  ``save_rnn_dataset`` (w3).
"""
