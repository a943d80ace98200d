"""FlowDistribution: a base distribution pushed through invertible steps.

    z_0 ~ q_0,  z_K = f_K o ... o f_1 (z_0),
    log q_K(z_K) = log q_0(z_0) - sum_k log |det df_k / dz_{k-1}|   (Rezende & Mohamed 2015, eq. 7)
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from vaekit.distributions import rsample_and_log_prob


class FlowStep(Protocol):
    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(f(z), log |det df/dz|), the log-det of shape z.shape[:-1]."""
        ...

    def inverse(self, y: Tensor) -> Tensor:
        """f^{-1}(y)."""
        ...


class FlowDistribution(Distribution):
    """`base` pushed through `steps`. Sampling with its density is one pass
    (`rsample_and_log_prob`); `log_prob` of an arbitrary z inverts the steps (analytic for
    couplings, by bisection for planar flows, sequential for IAF)."""

    arg_constraints: ClassVar[dict[str, Any]] = {}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, base: Distribution, steps: list[FlowStep]) -> None:
        self.base = base
        self.steps = steps
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def rsample_from_noise(self, noise: Tensor) -> tuple[Tensor, Tensor]:
        z, log_q = rsample_and_log_prob(self.base, noise)
        for step in self.steps:
            z, log_det = step.forward(z)
            log_q = log_q - log_det
        return z, log_q

    def rsample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        z = self.base.rsample(sample_shape)
        for step in self.steps:
            z, _ = step.forward(z)
        return z

    def log_prob(self, value: Tensor) -> Tensor:
        log_det = torch.zeros(value.shape[:-1], device=value.device, dtype=value.dtype)
        z = value
        for step in reversed(self.steps):
            z = step.inverse(z)
            _, ld = step.forward(z)
            log_det = log_det + ld
        return self.base.log_prob(z) - log_det

    @property
    def mean(self) -> Tensor:
        """The image of the base mean: the usual point estimate for a flow posterior (the true
        mean has no closed form)."""
        z = self.base.mean
        for step in self.steps:
            z, _ = step.forward(z)
        return z

    @property
    def variance(self) -> Tensor:
        return self.base.variance


@rsample_and_log_prob.register
def _(q: FlowDistribution, noise: Tensor) -> tuple[Tensor, Tensor]:
    return q.rsample_from_noise(noise)
