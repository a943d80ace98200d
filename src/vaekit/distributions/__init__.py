"""Distributions: decoder likelihoods, the reparameterized sample-and-log-prob primitive, KL.

Layer: distributions, networks, flows; it may import the foundation and `vaekit.data` (a table's
likelihood reads its schema), nothing above (see tests/test_architecture.py).
"""

from __future__ import annotations

from functools import singledispatch

from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vaekit.distributions.discretized import (
    DiscretizedLogisticLikelihood,
    LogisticMixtureLikelihood,
)
from vaekit.distributions.gaussian import DiagonalGaussianMixture, DiagonalNormal, StandardNormal
from vaekit.distributions.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    GaussianLikelihood,
    Likelihood,
    bits_per_dim,
    build_likelihood,
    likelihood_support,
)
from vaekit.distributions.point_mass import PointMass
from vaekit.distributions.table import TableLikelihood

LIKELIHOODS["discretized-logistic"] = DiscretizedLogisticLikelihood
LIKELIHOODS["logistic-mixture"] = LogisticMixtureLikelihood
LIKELIHOODS["table"] = TableLikelihood  # set by training on a .csv/.parquet table

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "DiagonalGaussianMixture",
    "DiagonalNormal",
    "DiscretizedLogisticLikelihood",
    "GaussianLikelihood",
    "Likelihood",
    "LogisticMixtureLikelihood",
    "PointMass",
    "StandardNormal",
    "TableLikelihood",
    "analytic_kl",
    "bits_per_dim",
    "build_likelihood",
    "diagonal_normal",
    "likelihood_support",
    "rsample_and_log_prob",
]


def diagonal_normal(loc: Tensor, log_var: Tensor) -> DiagonalNormal:
    """N(loc, diag(exp(log_var))) with the last dimension as the event."""
    return DiagonalNormal(loc, log_var)


def analytic_kl(q: Distribution, p: Distribution) -> Tensor | None:
    """KL(q || p) from torch.distributions' registry, or None where no closed form is registered."""
    try:
        return kl_divergence(q, p)
    except NotImplementedError:
        return None


@singledispatch
def rsample_and_log_prob(q: Distribution, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Reparameterized sample z = f(noise) from q, with log q(z); `noise` is standard normal of
    shape (k, *q.batch_shape, latent_dim). Passing the noise in (rather than drawing it inside)
    lets the trainer give every process of a distributed run its slice of one global draw."""
    raise TypeError(f"no reparameterization registered for {type(q).__name__}")


@rsample_and_log_prob.register
def _(q: DiagonalNormal, noise: Tensor) -> tuple[Tensor, Tensor]:
    return q.rsample_from_noise(noise)


@rsample_and_log_prob.register
def _(q: Independent, noise: Tensor) -> tuple[Tensor, Tensor]:
    base = q.base_dist
    if not isinstance(base, Normal):
        raise TypeError(f"no reparameterization registered for Independent({type(base).__name__})")
    z = base.loc + base.scale * noise  # (k, B, D)
    return z, q.log_prob(z)
