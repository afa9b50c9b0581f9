"""Homework 1's hidden checks (``hw1_vae``), one module per activity. A hidden test cell runs
``from autograder.checks import hw1_vae as checks`` and calls ``checks.<grade_id>(...)``.

- :mod:`~autograder.checks.hw1_vae.rebuild`: the weights the judges draw, the student's layers rebuilt
- :mod:`~autograder.checks.hw1_vae.autoencoder`: activity 1, the autoencoder (``MyVAE.__init__``)
- :mod:`~autograder.checks.hw1_vae.vae`: activity 2, the VAE (``reparameterize``, ``encode``, ``forward``)
- :mod:`~autograder.checks.hw1_vae.resets`: activity 3, episode resets (``collect_frames``)
- :mod:`~autograder.checks.hw1_vae.angle_filter`: activity 4, the angle filter (``collect_upright_frames``)
- :mod:`~autograder.checks.hw1_vae.other_environment`: activity 5, another environment
"""

from autograder.checks import checks_of

__getattr__ = checks_of(__name__)
