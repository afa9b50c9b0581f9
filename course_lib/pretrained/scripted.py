"""A TorchScript VAE behind a plain ``nn.Module``, so that the course's tools accept it.

``torch.jit.load`` returns a ``RecursiveScriptModule``, which refuses forward hooks (used by
:func:`course_lib.train.evaluate` and the latent explorer) and is not a Python class one can read.
:class:`ScriptedVAE` holds it as its only submodule and forwards the VAE's four methods to it:
nothing of the compiled model's source is added or needed.
"""

from __future__ import annotations

import torch
from torch import nn


class ScriptedVAE(nn.Module):
    """A VAE compiled with TorchScript (``encode``, ``decode``, ``reparameterize``, ``forward``, ``z_size``).

    Args:
        scripted: the loaded TorchScript module; its parameters are this module's, under ``scripted.``.

    Attributes:
        scripted: that module (``scripted.code`` prints its compiled ``forward``).
        z_size: the latent dimensions.

    Raises:
        TypeError: if ``scripted`` lacks one of the four methods or ``z_size``.
    """

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        missing = [m for m in ("encode", "decode", "reparameterize", "forward", "z_size") if not hasattr(scripted, m)]
        if missing:
            raise TypeError(f"the TorchScript module has no {missing}; expected a VAE with encode, decode, z_size")
        self.scripted = scripted
        self.z_size = int(scripted.z_size)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``float32 (B, 3, 64, 64)`` in [0, 1] -> ``mu, logvar``, each ``(B, z_size)``."""
        return self.scripted.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, z_size)`` -> ``(B, 3, 64, 64)`` in [0, 1]."""
        return self.scripted.decode(z)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``, whatever the mode: ``(B, z_size)``."""
        return self.scripted.reparameterize(mu, logvar)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` -> ``(decode(z), mu, logvar)`` with ``z`` sampled by :meth:`reparameterize`."""
        return self.scripted(x)
