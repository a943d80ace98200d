"""Likelihoods of 8-bit data: the discretized logistic and the discretized mixture of logistics
(Salimans et al. 2017, PixelCNN++; used by NVAE and VDVAE).

Data x in [0, 1] on the grid k / (L - 1), k = 0 .. L - 1 (L = 256 levels), are mapped to
y = 2x - 1 in [-1, 1], where each level owns the bin [y - h, y + h], h = 1 / (L - 1). A logistic
with location mu and scale s gives level k the probability mass of its bin,

    P(k) = sigmoid((y + h - mu) / s) - sigmoid((y - h - mu) / s),

and the edge levels take the tails: P(0) = sigmoid((-1 + h - mu) / s) and
P(L - 1) = 1 - sigmoid((1 - h - mu) / s), so the L probabilities sum to exactly 1. The
difference of sigmoids is taken in log space without cancellation, as

    log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log sigmoid(-b) + log(1 - e^-(a - b)),

exact for a > b. A log-likelihood of these is a log-probability of the discrete data: bits/dim
is then a true discrete likelihood, with no dequantization.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints

from vaekit.distributions.likelihoods import Likelihood

#: Levels of 8-bit data.
LEVELS = 256
#: Lower bound of log s (PixelCNN++): narrower logistics only underflow.
MIN_LOG_SCALE = -7.0


def logistic_bin_log_prob(y: Tensor, mu: Tensor, log_scale: Tensor,
                          levels: int = LEVELS) -> Tensor:
    """log P(level of y) under a discretized logistic(mu, s), elementwise; y in [-1, 1] on the
    grid of `levels` levels (see the module's docstring)."""
    h = 1.0 / (levels - 1)
    inv_s = torch.exp(-log_scale.clamp(min=MIN_LOG_SCALE))
    centred = y - mu
    upper, lower = inv_s * (centred + h), inv_s * (centred - h)
    interior = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(
        -torch.expm1(-2 * h * inv_s))
    return torch.where(y < -1 + h / 2, F.logsigmoid(upper),  # level 0: the lower tail
                       torch.where(y > 1 - h / 2, F.logsigmoid(-lower), interior))


def logistic_bin_mean(mu: Tensor, log_scale: Tensor, levels: int = LEVELS) -> Tensor:
    """E[x] in [0, 1] of a discretized logistic, exactly: with the bin boundaries b_k,
    E[x] = 1/(L-1) sum_{k=1}^{L-1} P(y > b_k) = 1/(L-1) sum_k sigmoid((mu - b_k) / s)."""
    h = 1.0 / (levels - 1)
    bounds = torch.linspace(-1 + h, 1 - h, levels - 1, device=mu.device, dtype=mu.dtype)
    inv_s = torch.exp(-log_scale.clamp(min=MIN_LOG_SCALE)).unsqueeze(-1)
    return torch.sigmoid(inv_s * (mu.unsqueeze(-1) - bounds)).mean(-1)


def logistic_bin_sample(mu: Tensor, log_scale: Tensor, levels: int = LEVELS,
                        generator: torch.Generator | None = None) -> Tensor:
    """A level drawn from the discretized logistic, as a value in [0, 1]: the logistic's inverse
    CDF at u ~ U(0, 1), rounded to the nearest level (the tails onto the edge levels)."""
    u = torch.rand(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    u = u.clamp(1e-6, 1 - 1e-6)
    y = mu + log_scale.clamp(min=MIN_LOG_SCALE).exp() * (u.log() - (-u).log1p())
    return (((y + 1) / 2) * (levels - 1)).round().clamp(0, levels - 1) / (levels - 1)


class _Discrete8Bit(Distribution):
    """Shared plumbing: x in [0, 1] (*batch, *event), an integer support of 8-bit levels."""

    arg_constraints: ClassVar[dict[str, Any]] = {}
    support = constraints.unit_interval

    def __init__(self, params: Tensor, event_ndim: int, event_shape: torch.Size,
                 levels: int) -> None:
        self.params, self.levels = params, levels
        super().__init__(params.shape[:-event_ndim], event_shape, validate_args=False)


class DiscretizedLogistic(_Discrete8Bit):
    """Independent discretized logistics, one per data dimension; params (*batch, 2C, ...):
    the locations, then the log-scales, stacked along the first event dimension."""

    def __init__(self, params: Tensor, event_shape: tuple[int, ...],
                 levels: int = LEVELS) -> None:
        super().__init__(params, len(event_shape), torch.Size(event_shape), levels)
        dim = -len(event_shape)
        self.mu, self.log_scale = params.chunk(2, dim=dim)

    def log_prob(self, value: Tensor) -> Tensor:
        log_p = logistic_bin_log_prob(2 * value - 1, self.mu, self.log_scale, self.levels)
        return log_p.sum(tuple(range(-len(self.event_shape), 0)))

    @property
    def mean(self) -> Tensor:
        return logistic_bin_mean(self.mu, self.log_scale, self.levels)

    def sample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        shape = torch.Size(sample_shape) + self.mu.shape
        return logistic_bin_sample(self.mu.expand(shape), self.log_scale.expand(shape),
                                   self.levels)


class DiscretizedLogisticMixture(_Discrete8Bit):
    """Per pixel, a mixture of K discretized logistics over its C channels, with the channels
    coupled linearly as in PixelCNN++: the location of channel c in component k is
    mu_kc + sum_{c' < c} tanh(a_kcc') y_c'. params (*batch, P, H, W) with
    P = K (mixture logits) + KC (locations) + KC (log-scales) + K C(C-1)/2 (couplings)."""

    def __init__(self, params: Tensor, event_shape: tuple[int, ...], components: int,
                 levels: int = LEVELS) -> None:
        super().__init__(params, 3, torch.Size(event_shape), levels)
        c, k = event_shape[0], components
        pairs = c * (c - 1) // 2
        logits, mu, log_scale, coupling = params.split([k, k * c, k * c, k * pairs], dim=-3)
        spatial = params.shape[-2:]
        batch = params.shape[:-3]
        self.channels, self.components = c, k
        self.log_pi = torch.log_softmax(logits, dim=-3)  # (*batch, K, H, W)
        self.mu = mu.reshape(*batch, k, c, *spatial)  # (*batch, K, C, H, W)
        self.log_scale = log_scale.reshape(*batch, k, c, *spatial)
        self.coupling = torch.tanh(coupling).reshape(*batch, k, pairs, *spatial)

    def _locations(self, y: Tensor) -> Tensor:
        """mu_kc + sum_{c'<c} tanh(a_kcc') y_c' for y (*batch, C, H, W): (*batch, K, C, H, W)."""
        if self.channels == 1:
            return self.mu
        y = y.unsqueeze(-4)  # (*batch, 1, C, H, W), against K components
        shifts = [torch.zeros((), dtype=self.mu.dtype, device=self.mu.device)]
        pair = 0
        for c in range(1, self.channels):
            shift = shifts[0]
            for earlier in range(c):
                shift = shift + self.coupling[..., pair, :, :] * y[..., earlier, :, :]
                pair += 1
            shifts.append(shift)
        return self.mu + torch.stack(torch.broadcast_tensors(*shifts), dim=-3)

    def log_prob(self, value: Tensor) -> Tensor:
        y = 2 * value - 1  # (B, C, H, W), broadcasting over the sample dimensions of params
        per_channel = logistic_bin_log_prob(y.unsqueeze(-4), self._locations(y), self.log_scale,
                                            self.levels)
        log_p = torch.logsumexp(self.log_pi + per_channel.sum(-3), dim=-3)  # (*batch, H, W)
        return log_p.sum((-2, -1))

    @property
    def mean(self) -> Tensor:
        """E[x] per channel: exact for each component given the earlier channels at their
        means (the coupling is taken at the mean, so this is exact for one channel)."""
        pi = self.log_pi.exp().unsqueeze(-3)  # (*batch, K, 1, H, W)
        means: list[Tensor] = []
        y = torch.zeros_like(self.mu[..., 0, :, :, :])  # (*batch, C, H, W)
        for c in range(self.channels):
            loc = self._locations(y)[..., c, :, :]  # (*batch, K, H, W)
            component = logistic_bin_mean(loc, self.log_scale[..., c, :, :], self.levels)
            means.append((pi[..., 0, :, :] * component).sum(-3))
            y = y.clone()
            y[..., c, :, :] = 2 * means[-1] - 1
        return torch.stack(means, dim=-3)

    def sample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        if tuple(sample_shape):  # the same distribution, repeated along new batch dimensions
            params = self.params.expand(*sample_shape, *self.params.shape)
            return DiscretizedLogisticMixture(params, tuple(self.event_shape), self.components,
                                              self.levels).sample()
        k = torch.distributions.Categorical(logits=self.log_pi.movedim(-3, -1)).sample()
        pick = F.one_hot(k, self.components).movedim(-1, -3).unsqueeze(-3).to(self.mu.dtype)
        x = torch.zeros(*self.batch_shape, *self.event_shape, device=self.mu.device)
        for c in range(self.channels):  # each channel given the ones drawn before it
            loc = (self._locations(2 * x - 1) * pick).sum(-4)[..., c, :, :]
            log_scale = (self.log_scale * pick).sum(-4)[..., c, :, :]
            x[..., c, :, :] = logistic_bin_sample(loc, log_scale, self.levels)
        return x


class DiscretizedLogisticLikelihood(Likelihood):
    """p(x|z): a discretized logistic per data dimension, for 8-bit data in [0, 1] (images as
    0..255 / 255); the decoder emits a location and a log-scale per dimension."""

    support = (0.0, 1.0)
    discrete = True
    levels = LEVELS

    def param_shape(self) -> tuple[int, ...]:
        return (2 * self.event_shape[0], *self.event_shape[1:])

    def forward(self, params: Tensor) -> Distribution:
        return DiscretizedLogistic(params, self.event_shape)

    def mean(self, params: Tensor) -> Tensor:
        return DiscretizedLogistic(params, self.event_shape).mean


class LogisticMixtureLikelihood(Likelihood):
    """p(x|z): per pixel, a mixture of `mixture_components` discretized logistics over the
    channels, coupled as in PixelCNN++ (see DiscretizedLogisticMixture); images (C, H, W) of
    8-bit levels in [0, 1]."""

    support = (0.0, 1.0)
    discrete = True
    levels = LEVELS

    def __init__(self, event_shape: tuple[int, ...], mixture_components: int = 10) -> None:
        super().__init__(event_shape)
        if len(self.event_shape) != 3:
            from vaekit.errors import ConfigError

            raise ConfigError("--likelihood logistic-mixture is for images (C, H, W); the data "
                              f"have examples of shape {self.event_shape}")
        self.components = mixture_components

    def param_shape(self) -> tuple[int, ...]:
        c, h, w = self.event_shape
        k = self.components
        return (k * (1 + 2 * c + c * (c - 1) // 2), h, w)

    def forward(self, params: Tensor) -> Distribution:
        return DiscretizedLogisticMixture(params, self.event_shape, self.components)

    def mean(self, params: Tensor) -> Tensor:
        return self(params).mean
