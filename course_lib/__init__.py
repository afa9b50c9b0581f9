"""course_lib: the library behind "From autoencoders to World Models".

Modules, one concept each:

- :mod:`course_lib.envs`: gymnasium environments that render frames, and the policies that drive them.
- :mod:`course_lib.frames`: crop presets, ``preprocess_frame`` and ``to_tensor``.
- :mod:`course_lib.data`: rollouts recorded to ``.npz`` shards and a lazily loaded shard dataset.
- :mod:`course_lib.models`: a small convolutional VAE for the companion notebooks and labs.
- :mod:`course_lib.template`: the provided half of homework 1's ``MyVAE`` (decoder, sampling).
- :mod:`course_lib.losses`: reconstruction error, Gaussian KL, the World Models KL floor, beta schedules.
- :mod:`course_lib.train`: ``fit``, checkpoints, seeding, device choice, the NaN guard.
- :mod:`course_lib.viz`: reconstruction grids, prior samples, loss curves, traversals.

``course_lib.solutions`` holds the graded reference answers; it is instructor-only and is
left out of the student kit.
"""

__version__ = "0.1.0"
