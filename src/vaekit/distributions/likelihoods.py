"""Decoder likelihoods p(x|z): modules that turn the decoder's output into a Distribution.

Each likelihood says how many raw outputs it needs per data dimension (`params_per_dim`) and
returns an `Independent` distribution whose event is one whole example, so `log_prob(x)` is the
log-density of an example summed over its dimensions, in nats (never averaged: averaging
rescales the reconstruction term against the KL, the most common VAE bug).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    Distribution,
    Independent,
    Normal,
)

_LOG_2PI = math.log(2 * math.pi)


class Likelihood(nn.Module):
    """Base class: `forward(params)` maps decoder outputs of shape (*batch, *event) to p(x|z)."""

    #: Inclusive range of data values this likelihood is defined on (None = the real line):
    #: data outside it are refused before training, and data on the real line are standardised
    #: by default (`--standardize auto`).
    support: tuple[float, float] | None = None
    #: Whether p(x|z) is a probability mass (Bernoulli) rather than a density: dequantization
    #: is for densities only.
    discrete: bool = False
    #: The name of a part of log p(x|z) that evaluation reports apart from the data's own
    #: log-likelihood (a table's missingness: `TableLikelihood`), or None where there is none.
    side_term: str | None = None
    #: what the side term is of (a table's columns whose missingness is modelled)
    side_term_of: tuple[str, ...] = ()

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)

    def param_shape(self) -> tuple[int, ...]:
        """The shape of the decoder's output for one example: one parameter per data dimension
        (the event shape) unless the likelihood needs more, such as a location and a scale."""
        return self.event_shape

    def forward(self, params: Tensor) -> Distribution:
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """The mean of p(x|z), without building the distribution."""
        raise NotImplementedError

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x|z) summed over the event, for params (*samples, B, *event) and x (B, *event)
        broadcasting over the samples: `self(params).log_prob(x)`, which subclasses may compute
        without building the distribution (the training step calls this)."""
        return self(params).log_prob(x)

    def main_term_only(self) -> contextlib.AbstractContextManager[None]:
        """A context in which `log_prob` leaves out `side_term` (nothing to leave out here)."""
        return contextlib.nullcontext()

    def caveat(self, x: Tensor) -> str | None:
        """What a log-density of this likelihood on `x` is *not*, where that matters (None when
        it is an honest likelihood of x): printed beside every "log p(x)" of such data."""
        return None


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli on logits; also accepts grey levels in [0, 1] as soft targets
    (log p = x log s + (1-x) log(1-s), the cross-entropy; a likelihood only for binary x)."""

    support = (0.0, 1.0)
    discrete = True

    def forward(self, params: Tensor) -> Distribution:
        return _BernoulliEvent(Bernoulli(logits=params, validate_args=False),
                               len(self.event_shape), validate_args=False)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return bernoulli_log_prob(params, x, len(self.event_shape))

    def caveat(self, x: Tensor) -> str | None:
        if bool(((x != 0) & (x != 1)).any()):
            return ("a Bernoulli likelihood on grey levels: its 'log p(x)' is minus a "
                    "cross-entropy, not a likelihood of the grey-level data, and bits/dim is no "
                    "likelihood either (binarize the data, or use --likelihood "
                    "continuous-bernoulli, whose density is normalised on [0, 1])")
        return None


#: Factors (1 + e^-|l|) multiplied before one log in `bernoulli_log_prob` without gradient:
#: each is in (1, 2], so a product of 64 stays below 2^64, far inside float32.
_PRODUCT_GROUP = 64


def bernoulli_log_prob(logits: Tensor, x: Tensor, event_ndim: int) -> Tensor:
    """sum over the last `event_ndim` dimensions of x log s(l) + (1-x) log(1-s(l)): one fused
    cross-entropy, x (B, ...) broadcasting against logits (*samples, B, ...). Under
    torch.compile without gradients (evaluation) it is the grouped form below; eagerly that
    would only add temporaries."""
    if not torch.compiler.is_compiling() or (
            torch.is_grad_enabled() and logits.requires_grad) or \
            logits.dtype not in (torch.float32, torch.float64):
        if x.shape != logits.shape:
            x = x.expand_as(logits)
        ce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return ce.sum(tuple(range(-event_ndim, 0))).neg()
    return _bernoulli_log_prob_grouped(logits.flatten(-event_ndim), x.flatten(-event_ndim))


class _BernoulliEvent(Independent):
    """Independent Bernoulli whose log_prob is `bernoulli_log_prob`, without
    torch.distributions' generic broadcasting machinery."""

    def log_prob(self, value: Tensor) -> Tensor:
        return bernoulli_log_prob(self.base_dist.logits, value, self.reinterpreted_batch_ndims)


def _group_size(d: int) -> int:
    """The largest divisor of d up to _PRODUCT_GROUP (56 for 784 pixels), or, where that is
    small, _PRODUCT_GROUP itself with padding."""
    divisor = max(g for g in range(1, min(d, _PRODUCT_GROUP) + 1) if d % g == 0)
    return divisor if divisor >= _PRODUCT_GROUP // 4 or divisor == d else _PRODUCT_GROUP


def _bernoulli_log_prob_grouped(logits: Tensor, x: Tensor) -> Tensor:
    """sum_i x_i l_i - softplus(l_i) over the last dimension, for evaluation. With
    softplus(l) = max(l, 0) + log(1 + e^-|l|), the logs are summed as the log of products over
    groups of up to _PRODUCT_GROUP pixels: one log per group instead of one per pixel.
    Compiled, this is less than half the time of the per-pixel cross-entropy on a CPU; the
    result agrees with it to float32 rounding (the test compares both with float64)."""
    e = logits.abs().neg_().exp_()  # e^-|l| in (0, 1]
    group = _group_size(e.shape[-1])
    if pad := -e.shape[-1] % group:  # zeros make factors of 1
        e = F.pad(e, (0, pad))
    log_terms = e.add_(1).unflatten(-1, (-1, group)).prod(-1).log_().sum(-1)
    return (x * logits - logits.clamp(min=0)).sum(-1) - log_terms


class ContinuousBernoulliLikelihood(Likelihood):
    """The continuous Bernoulli on logits (Loaiza-Ganem & Cunningham 2019): the Bernoulli's
    x log s + (1-x) log(1-s) made a normalised density on [0, 1] by its normaliser

        log C(s) = log(2 artanh(1 - 2s) / (1 - 2s))   (log 2 at s = 1/2),

    so that log p(x) is a true log-density of grey levels in [0, 1]. Its mean is not s:
    s / (2s - 1) + 1 / (2 artanh(1 - 2s))."""

    support = (0.0, 1.0)

    def forward(self, params: Tensor) -> Distribution:
        return Independent(ContinuousBernoulli(logits=params, validate_args=False),
                           len(self.event_shape), validate_args=False)

    def mean(self, params: Tensor) -> Tensor:
        return ContinuousBernoulli(logits=params, validate_args=False).mean


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

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """-1/2 sum((x - mu)^2 / sigma^2 + log sigma^2 + log 2 pi) over the event."""
        d, dims = math.prod(self.event_shape), tuple(range(-len(self.event_shape), 0))
        precision = (-self.log_var).exp()
        if self.log_var.dim():  # one variance per dimension
            return -0.5 * (((x - params).square() * precision + self.log_var).sum(dims)
                           + d * _LOG_2PI)
        return -0.5 * ((x - params).square().sum(dims) * precision + d * (self.log_var + _LOG_2PI))


#: The likelihoods, by --likelihood name: the one list of choices (Config validates against
#: it). Each is built as `LIKELIHOODS[name](event_shape, **options)`, its options being the
#: Config fields named like its keyword parameters (see `build_likelihood`); a subclass of
#: Likelihood registered here is usable at once. (The 8-bit ones are added by
#: vaekit.distributions.discretized.)
LIKELIHOODS: dict[str, Callable[..., Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
    "gaussian": GaussianLikelihood,
}


def build_likelihood(name: str, event_shape: tuple[int, ...], config: Any) -> Likelihood:
    """LIKELIHOODS[name] for data of `event_shape`, given the fields of `config` that it takes
    as keyword parameters (`variance` for the Gaussian, `mixture_components`...)."""
    factory = LIKELIHOODS[name]
    try:
        parameters = list(inspect.signature(factory).parameters)[1:]
    except (TypeError, ValueError):
        parameters = []
    options = {p: getattr(config, p) for p in parameters if hasattr(config, p)}
    return factory(event_shape, **options)


def likelihood_support(name: str) -> tuple[float, float] | None:
    """The data range LIKELIHOODS[name] is defined on, without building it (None: all reals)."""
    return getattr(LIKELIHOODS.get(name), "support", None)


def bits_per_dim(nll_nats: float, num_dims: int, bin_width: float | None = None) -> float:
    """Negative log-likelihood per example in bits per data dimension: nll / (D ln 2).

    For 8-bit data scaled to [0, 1] and modelled with a continuous density (after adding
    uniform noise, i.e. dequantization), pass `bin_width=1/256`: the discrete probability of a
    pixel bin is about density x bin width, so D * ln(1/bin_width) nats are added first.
    """
    nll = nll_nats + (num_dims * math.log(1.0 / bin_width) if bin_width else 0.0)
    return nll / (num_dims * math.log(2.0))
