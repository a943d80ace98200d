"""Decoder likelihoods p(x|z): modules that turn the decoder's output into a Distribution.

Each likelihood says how many raw outputs it needs per data dimension (`params_per_dim`) and
returns an `Independent` distribution whose event is one whole example, so `log_prob(x)` is the
log-density of an example summed over its dimensions, in nats (never averaged: averaging
rescales the reconstruction term against the KL, the most common VAE bug).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal


class Likelihood(nn.Module):
    """Base class: `forward(params)` maps decoder outputs of shape (*batch, *event) to p(x|z)."""

    #: Inclusive range of data values this likelihood is defined on (None = unbounded).
    support: tuple[float, float] | None = None

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)

    def forward(self, params: Tensor) -> Distribution:
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """The mean of p(x|z), without building the distribution."""
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli on logits; also accepts grey levels in [0, 1] as soft targets
    (log p = x log s + (1-x) log(1-s), the cross-entropy; a likelihood only for binary x)."""

    support = (0.0, 1.0)

    def forward(self, params: Tensor) -> Distribution:
        return _BernoulliEvent(Bernoulli(logits=params, validate_args=False),
                               len(self.event_shape), validate_args=False)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)


class _BernoulliEvent(Independent):
    """Independent Bernoulli whose log_prob is one fused cross-entropy: x (B, ...) broadcasts
    against logits (k, B, ...) without torch.distributions' generic broadcasting machinery."""

    def log_prob(self, value: Tensor) -> Tensor:
        logits = self.base_dist.logits
        ce = F.binary_cross_entropy_with_logits(logits, value.expand_as(logits),
                                                reduction="none")
        return -ce.flatten(-self.reinterpreted_batch_ndims).sum(-1)


class GaussianLikelihood(Likelihood):
    """Independent Gaussian with the decoder's output as mean and a variance that is fixed at 1,
    one learned scalar (`shared`, as in probabilistic PCA) or learned per dimension (`diagonal`,
    as in factor analysis)."""

    def __init__(self, event_shape: tuple[int, ...], variance: str = "shared") -> None:
        super().__init__(event_shape)
        self.variance = variance
        shape: tuple[int, ...] = {"fixed": (), "shared": (), "diagonal": self.event_shape}[variance]
        log_var = torch.zeros(shape)
        if variance == "fixed":
            self.register_buffer("log_var", log_var)
        else:
            self.log_var = nn.Parameter(log_var)

    def forward(self, params: Tensor) -> Distribution:
        std = torch.exp(0.5 * self.log_var).expand_as(params)
        return Independent(Normal(params, std, validate_args=False), len(self.event_shape),
                           validate_args=False)

    def mean(self, params: Tensor) -> Tensor:
        return params


LIKELIHOODS: dict[str, Callable[..., Likelihood]] = {
    "bernoulli": lambda event_shape, variance="shared": BernoulliLikelihood(event_shape),
    "gaussian": GaussianLikelihood,
}


def bits_per_dim(nll_nats: float, num_dims: int, bin_width: float | None = None) -> float:
    """Negative log-likelihood per example in bits per data dimension: nll / (D ln 2).

    For 8-bit data scaled to [0, 1] and modelled with a continuous density (after adding
    uniform noise, i.e. dequantization), pass `bin_width=1/256`: the discrete probability of a
    pixel bin is about density x bin width, so D * ln(1/bin_width) nats are added first.
    """
    nll = nll_nats + (num_dims * math.log(1.0 / bin_width) if bin_width else 0.0)
    return nll / (num_dims * math.log(2.0))
