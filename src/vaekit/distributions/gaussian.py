"""Diagonal Gaussians that keep their log-variance: exact, cheap log-densities and KL.

`DiagonalNormal` is a `torch.distributions.Independent(Normal)`, so it works everywhere torch
expects one; it adds closed forms that avoid re-deriving log sigma from sigma on the hot path:

    log N(mu + sigma * eps; mu, sigma^2) = -1/2 sum(eps^2 + log sigma^2 + log 2 pi)
    KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2)
        (Kingma & Welling 2014, appendix B)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    Normal,
    register_kl,
)

_LOG_2PI = math.log(2 * math.pi)


class DiagonalNormal(Independent):
    """N(loc, diag(exp(log_var))) over the last dimension, without argument validation (the
    log-variances are clamped upstream; validation would cost a sync per call).

    The standard deviation and the `Normal` base are built on first use: the training step
    needs only the first, and at batch 20 building torch's objects is a few percent of a step."""

    def __init__(self, loc: Tensor, log_var: Tensor) -> None:
        if loc.shape != log_var.shape:
            loc, log_var = torch.broadcast_tensors(loc, log_var)
        self.loc_, self.log_var = loc, log_var
        self._scale: Tensor | None = None
        self._log_normalizer: Tensor | None = None
        self._base: Normal | None = None
        self.reinterpreted_batch_ndims = 1
        Distribution.__init__(self, loc.shape[:-1], loc.shape[-1:], validate_args=False)

    def _stale(self, cached: Tensor | None) -> bool:
        """Not computed yet, or computed under no_grad and now needed with gradients."""
        return cached is None or (not cached.requires_grad and self.log_var.requires_grad
                                  and torch.is_grad_enabled())

    @property
    def scale(self) -> Tensor:
        """sigma = exp(log_var / 2), elementwise."""
        if self._stale(self._scale):
            self._scale = (0.5 * self.log_var).exp()
        assert self._scale is not None
        return self._scale

    @property
    def log_normalizer(self) -> Tensor:
        """1/2 sum(log sigma^2 + log 2 pi), (batch,): once per q, shared by all its samples."""
        if self._stale(self._log_normalizer):
            self._log_normalizer = 0.5 * (self.log_var.sum(-1) + self.loc_.shape[-1] * _LOG_2PI)
        assert self._log_normalizer is not None
        return self._log_normalizer

    @property
    def base_dist(self) -> Normal:
        """The elementwise Normal that `Independent` reinterprets."""
        if self._base is None:
            self._base = Normal(self.loc_, self.scale, validate_args=False)
        return self._base

    def expand(self, batch_shape: Sequence[int],
               _instance: DiagonalNormal | None = None) -> DiagonalNormal:
        shape = torch.Size(batch_shape) + self.event_shape
        return DiagonalNormal(self.loc_.expand(shape), self.log_var.expand(shape))

    def log_prob(self, value: Tensor) -> Tensor:
        eps = (value - self.loc_) / self.scale
        return -0.5 * (eps * eps).sum(-1) - self.log_normalizer

    def sample_from_noise(self, noise: Tensor) -> Tensor:
        """z = mu + sigma * noise, the reparameterized sample."""
        return self.loc_ + self.scale * noise

    def log_prob_from_noise(self, noise: Tensor) -> Tensor:
        """log q(z) at z = `sample_from_noise(noise)`, without dividing by sigma again. The sum
        comes first: per-sample work is two ops on (k, B, L), the rest is on (k, B)."""
        return -0.5 * (noise * noise).sum(-1) - self.log_normalizer

    def rsample_from_noise(self, noise: Tensor) -> tuple[Tensor, Tensor]:
        return self.sample_from_noise(noise), self.log_prob_from_noise(noise)


class StandardNormal(DiagonalNormal):
    """N(0, I) in `dim` dimensions."""

    def __init__(self, loc: Tensor) -> None:
        super().__init__(loc, torch.zeros_like(loc))
        self.loc_ = loc  # the caller's tensor itself: priors cache on its identity

    def log_prob(self, value: Tensor) -> Tensor:
        return -0.5 * (value * value).sum(-1) - 0.5 * value.shape[-1] * _LOG_2PI


@register_kl(DiagonalNormal, StandardNormal)
def _kl_diagonal_standard(q: DiagonalNormal, p: StandardNormal) -> Tensor:
    return 0.5 * (q.loc_ ** 2 + q.log_var.exp() - 1 - q.log_var).sum(-1)


@register_kl(DiagonalNormal, DiagonalNormal)
def _kl_diagonal_diagonal(q: DiagonalNormal, p: DiagonalNormal) -> Tensor:
    return 0.5 * (p.log_var - q.log_var + (q.log_var.exp() + (q.loc_ - p.loc_) ** 2)
                  / p.log_var.exp() - 1).sum(-1)


class DiagonalGaussianMixture(MixtureSameFamily):
    """sum_k pi_k N(mu_k, diag(sigma_k^2)): a MixtureSameFamily whose log_prob never builds the
    (samples, components, latent) tensor of differences. Each component's squared distance is
    expanded into two matrix products,

        sum_j (z_j - mu_kj)^2 / s_kj = (z^2) @ (1/s_k) - 2 z @ (mu_k/s_k) + sum_j mu_kj^2 / s_kj,

    taken in float64 because the expansion cancels large terms (a VampPrior's components can
    be narrow). For 1,000 samples of 50 dimensions against 500 components this is two small
    matmuls instead of 100 MB of temporaries."""

    def __init__(self, logits: Tensor, components: DiagonalNormal) -> None:
        super().__init__(Categorical(logits=logits, validate_args=False), components,
                         validate_args=False)
        self.components = components

    def log_prob(self, value: Tensor) -> Tensor:
        c = self.components
        z = value.double()  # (..., L)
        log_var = c.log_var.double()  # (K, L)
        precision = (-log_var).exp()
        weighted_mean = c.loc_.double() * precision
        const = (c.loc_.double() * weighted_mean + log_var).sum(-1) + log_var.shape[-1] * _LOG_2PI
        sq = (z * z) @ precision.T - 2 * (z @ weighted_mean.T) + const  # (..., K)
        log_pi = torch.log_softmax(self.mixture_distribution.logits.double(), -1)
        return torch.logsumexp(log_pi - 0.5 * sq, dim=-1).to(value.dtype)
