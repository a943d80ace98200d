"""A point mass: the "posterior" of a deterministic encoder, z = f(x) exactly."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution


class PointMass(Distribution):
    """All mass at `loc` (*batch, L): mean and mode `loc`, variance 0, every sample `loc`. It has
    no density with respect to Lebesgue measure, so `log_prob` raises: a plain autoencoder's
    codes carry no likelihood until a density is fitted to them."""

    arg_constraints: ClassVar[dict[str, Any]] = {}
    has_rsample = True

    def __init__(self, loc: Tensor) -> None:
        self.loc = loc
        super().__init__(batch_shape=loc.shape[:-1], event_shape=loc.shape[-1:],
                         validate_args=False)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: Any = ()) -> Tensor:
        return self.loc.expand(*tuple(sample_shape), *self.loc.shape)

    def log_prob(self, value: Tensor) -> Tensor:
        raise ValueError("a point mass has no density: a deterministic code has no likelihood")
