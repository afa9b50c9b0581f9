"""course_lib: the library behind "From autoencoders to World Models".

Modules, one concept each:

- :mod:`course_lib.envs`: gymnasium environments that render frames, and the policies that drive them.
- :mod:`course_lib.frames`: crop presets, ``preprocess_frame`` and ``to_tensor``.
- :mod:`course_lib.data`: rollouts recorded to ``.npz`` shards and a lazily loaded shard dataset.
- :mod:`course_lib.models`: a small convolutional VAE for the companion notebooks and labs.
- :mod:`course_lib.template`: the provided half of homework 1's ``MyVAE`` (decoder, sampling).
- :mod:`course_lib.losses`: reconstruction error, Gaussian KL, the World Models KL floor, beta schedules.
- :mod:`course_lib.train`: ``fit``, checkpoints, seeding, device choice, the NaN guard.
- :mod:`course_lib.step`: the parts of one training step: the model's input, the loss, Adam, fast kernels.
- :mod:`course_lib.precision`: the precision paths ``fit`` trains along and the trial that picks one.
- :mod:`course_lib.threads`: ``fit``'s choice between PyTorch's thread count and one thread.
- :mod:`course_lib.cpu`: the CPU's model and flags; whether it multiplies bfloat16 natively.
- :mod:`course_lib.viz`: reconstruction grids, prior samples, loss curves, traversals.
- :mod:`course_lib.diagnostics`: posterior collapse: KL per latent dimension, active units.
- :mod:`course_lib.vae_gan`: the VAE-GAN of Larsen et al. 2016 (encoder, generator, discriminator).
- :mod:`course_lib.mdn_rnn`: World Models' memory, an LSTM with a mixture density head, and dreams.
- :mod:`course_lib.train_vae`: ``python -m course_lib.train_vae``, the World Models VAE at full scale.
- :mod:`course_lib.lab_setup`: ``python -m course_lib.lab_setup``, a student's JupyterLab: nbgrader's
  student tools only (Validate; the Assignments panel on a hub), and the students' ``nbgrader_config.py``.

``course_lib.solutions`` holds the graded reference answers; it is instructor-only and is
left out of the student kit.
"""

__version__ = "0.1.0"
