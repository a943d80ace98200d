"""Per-dimension standardisation of the data inside the model, so that every output stays in
the data's own units.

The model sees y = (x - m) / s, with m and s the training set's mean and standard deviation of
each data dimension. A density p_Y on y is a density on x through the change of variables

    log p_X(x) = log p_Y((x - m) / s) - sum_d log s_d,

so the ELBO, the importance-weighted log p(x), bits/dim and anomaly scores are all in the
units of x, and samples and reconstructions are mapped back by x = m + s y.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import AffineTransform, Distribution, TransformedDistribution

#: A dimension whose standard deviation is below this (a constant column) is only centred:
#: dividing by ~0 would blow its values up.
MIN_SCALE = 1e-6


class Standardize(nn.Module):
    """y = (x - shift) / scale over the event dimensions, with the constants fitted once to the
    training data (`fit`) and kept in the model's weights."""

    shift: Tensor
    scale: Tensor
    log_abs_det: Tensor

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.register_buffer("shift", torch.zeros(event_shape))
        self.register_buffer("scale", torch.ones(event_shape))
        # log |det dy/dx| = -sum log scale: a constant added to every log p(y|z)
        self.register_buffer("log_abs_det", torch.zeros(()))

    @torch.no_grad()
    def fit(self, x: Tensor) -> None:
        """Take the mean and standard deviation of each dimension of x (N, *event_shape)."""
        x = x.to(self.shift.device, torch.float64)
        scale = x.std(0, unbiased=False) if len(x) > 1 else torch.ones_like(x[0])
        scale = torch.where(scale < MIN_SCALE, torch.ones_like(scale), scale)
        self.shift.copy_(x.mean(0))
        self.scale.copy_(scale)
        self.log_abs_det.copy_(-scale.log().sum())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale

    def inverse(self, y: Tensor) -> Tensor:
        return y * self.scale + self.shift

    def push(self, p_y: Distribution) -> Distribution:
        """p(x) for p(y): p_y mapped back to the data's units, with its mean and variance."""
        return StandardizedData(p_y, AffineTransform(self.shift, self.scale,
                                                     event_dim=len(self.event_shape)))


class StandardizedData(TransformedDistribution):
    """A distribution over y = (x - m)/s seen as one over x: log_prob with the Jacobian, and the
    mean and variance that an affine map carries over exactly."""

    @property
    def mean(self) -> Tensor:
        t: AffineTransform = self.transforms[0]  # type: ignore[assignment]
        return t(self.base_dist.mean)

    @property
    def variance(self) -> Tensor:
        t: AffineTransform = self.transforms[0]  # type: ignore[assignment]
        return self.base_dist.variance * t.scale ** 2
