"""Priors p(z): modules whose `forward()` returns a Distribution over z (event shape (latent,)).

Distributions hold no parameters, so a learnable prior is a module that *returns* one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    loc: Tensor
    scale: Tensor

    def forward(self) -> Distribution:
        return Independent(Normal(self.loc, self.scale), 1)


PRIORS = {"normal": StandardNormalPrior}
