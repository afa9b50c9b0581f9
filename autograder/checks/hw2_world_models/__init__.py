"""Homework 2's hidden checks (``hw2_world_models``), one module per activity. A hidden test cell
runs ``from autograder.checks import hw2_world_models as checks`` and calls ``checks.<grade_id>(...)``.

- :mod:`~autograder.checks.hw2_world_models.matching`: layers matched by shape, the weights both sides load
- :mod:`~autograder.checks.hw2_world_models.conv_vae`: w1, the World Models ``ConvVAE``
- :mod:`~autograder.checks.hw2_world_models.loss`: w2, ``vae_loss`` and the KL floor
- :mod:`~autograder.checks.hw2_world_models.rnn_dataset`: w3, the RNN data set
"""

from autograder.checks import checks_of

__getattr__ = checks_of(__name__)
