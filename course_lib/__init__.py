"""course_lib: the library behind "From autoencoders to World Models".

Modules, one concept each:

- :mod:`course_lib.envs`: gymnasium environments that render frames, and the policies that drive them
- :mod:`course_lib.frames`: crop presets, ``preprocess_frame`` and ``to_tensor``
- :mod:`course_lib.recording`: a log of the environments ``make_env`` builds and the frames it makes
- :mod:`course_lib.rules`: the rules an answer must follow besides its result, checked at Validate
- :mod:`course_lib.data`: rollouts recorded to ``.npy`` shards and a lazily loaded shard dataset
- :mod:`course_lib.workspace`: where notebooks keep the files they make
- :mod:`course_lib.models`: a small convolutional VAE for the companion notebooks and labs
- :mod:`course_lib.template`: the provided half of homework 1's ``MyVAE`` (decoder, sampling)
- :mod:`course_lib.losses`: reconstruction error, Gaussian KL, the World Models KL floor, beta schedules
- :mod:`course_lib.train`: ``fit``, evaluation, checkpoints, seeding, the NaN guard
- :mod:`course_lib.step`: the parts of one training step: the model's input, the loss, Adam
- :mod:`course_lib.precision`: the precision paths ``fit`` trains along and the trial that picks one
- :mod:`course_lib.threads`: ``fit``'s choice between PyTorch's thread count and one thread
- :mod:`course_lib.kernels`: faster kernels for layers oneDNN runs slowly, swapped in by ``fit``
- :mod:`course_lib.cpu`: the CPU's model and flags; whether it multiplies bfloat16 natively
- :mod:`course_lib.distributed`: training in several processes with ``torchrun``
- :mod:`course_lib.train_vae`: ``python -m course_lib.train_vae``, the World Models VAE at full scale
- :mod:`course_lib.viz`: reconstruction grids, prior samples, loss curves, traversals
- :mod:`course_lib.explorer`: a latent explorer, one slider per latent dimension
- :mod:`course_lib.diagnostics`: posterior collapse: KL per latent dimension, active units
- :mod:`course_lib.probe`: linear probes of how much environment state the latent means hold
- :mod:`course_lib.vae_gan`: the VAE-GAN of Larsen et al. 2016
- :mod:`course_lib.mdn_rnn`: World Models' memory, an LSTM with a mixture density head, and dreams
- :mod:`course_lib.practice`: practice questions with instant feedback
- :mod:`course_lib.lab_setup`: ``python -m course_lib.lab_setup``, a student's JupyterLab and nbgrader config
- :mod:`course_lib.pretrained`: the pretrained VAEs that ship with the course, with model cards
- :mod:`course_lib.solutions`: the graded reference answers; instructor-only, left out of the student kit
"""

__version__ = "0.1.0"
