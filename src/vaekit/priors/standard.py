"""Priors p(z): modules whose `forward(posterior)` returns a Distribution over z (event (latent,)).

Distributions hold no parameters, so a learnable prior is a module that *returns* one. The
posterior is passed in because the VampPrior is made of it; the other priors ignore it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import (
    DiagonalGaussianMixture,
    DiagonalNormal,
    StandardNormal,
    diagonal_normal,
)
from vaekit.errors import ConfigError
from vaekit.flows import AffineCoupling, FlowDistribution
from vaekit.posteriors import LOG_VAR_RANGE


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I)."""

    loc: Tensor

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self._cached: StandardNormal | None = None

    def forward(self, posterior: nn.Module | None = None) -> Distribution:
        # The same distribution every call: build it once per device/dtype of the buffer.
        if self._cached is None or self._cached.loc_ is not self.loc:
            self._cached = StandardNormal(self.loc)
        return self._cached


class MixturePrior(nn.Module):
    """p(z) = sum_k pi_k N(mu_k, diag(sigma_k^2)), every parameter learned."""

    def __init__(self, latent_dim: int, components: int) -> None:
        super().__init__()
        self.means = nn.Parameter(torch.randn(components, latent_dim))
        self.log_vars = nn.Parameter(torch.zeros(components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def forward(self, posterior: nn.Module | None = None) -> Distribution:
        components = diagonal_normal(self.means, self.log_vars.clamp(*LOG_VAR_RANGE))
        return DiagonalGaussianMixture(self.logits, components)


class VampPrior(nn.Module):
    """p(z) = 1/K sum_k q(z | u_k): the variational mixture of posteriors of K learned
    pseudo-inputs u_k (Tomczak & Welling 2018, eq. 9). For a flow posterior the mixture is made
    of its Gaussian base q_0(z|u_k)."""

    def __init__(self, latent_dim: int, event_shape: tuple[int, ...], pseudo_inputs: int) -> None:
        super().__init__()
        self.pseudo_inputs = nn.Parameter(0.5 + 0.1 * torch.randn(pseudo_inputs, *event_shape))

    @torch.no_grad()
    def init_from_data(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Start the pseudo-inputs at randomly chosen training examples."""
        idx = torch.randint(len(x), (len(self.pseudo_inputs),), generator=generator)
        self.pseudo_inputs.copy_(x[idx].to(self.pseudo_inputs.device))

    def forward(self, posterior: nn.Module | None = None) -> Distribution:
        if posterior is None or not hasattr(posterior, "gaussian"):
            raise ValueError("the VampPrior is built from the model's posterior")
        gaussian = cast(Callable[[Tensor], DiagonalNormal], posterior.gaussian)
        q = gaussian(self.pseudo_inputs)  # batch (K,), event (L,)
        k = self.pseudo_inputs.shape[0]
        uniform = torch.full((k,), -math.log(k), device=self.pseudo_inputs.device)
        return DiagonalGaussianMixture(uniform, q)


class FlowPrior(nn.Module):
    """p(z): N(0, I) pushed through K affine couplings (RealNVP) with global parameters."""

    loc: Tensor

    def __init__(self, latent_dim: int, steps: int) -> None:
        super().__init__()
        self.flows = nn.ModuleList(AffineCoupling(latent_dim, 0, index=i) for i in range(steps))
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)

    def forward(self, posterior: nn.Module | None = None) -> Distribution:
        base = StandardNormal(self.loc)
        return FlowDistribution(base, [flow() for flow in self.flows])


#: The priors, by --prior name: the one list of choices (Config validates against it). Each is
#: built as `PRIORS[name](latent_dim, event_shape, config)`.
PRIORS: dict[str, Callable[[int, tuple[int, ...], Any], nn.Module]] = {
    "normal": lambda latent_dim, event_shape, config: StandardNormalPrior(latent_dim),
    "mog": lambda latent_dim, event_shape, config: MixturePrior(latent_dim, config.components),
    "vamp": lambda latent_dim, event_shape, config: VampPrior(latent_dim, event_shape,
                                                              config.pseudo_inputs),
    "flow": lambda latent_dim, event_shape, config: FlowPrior(latent_dim, config.flow_steps),
}


def build_prior(kind: str, latent_dim: int, event_shape: tuple[int, ...], config: Any) -> nn.Module:
    """The prior `kind` (a key of PRIORS), with its options read from `config`."""
    if kind not in PRIORS:
        raise ConfigError(f"unknown prior {kind!r}; choose from: {', '.join(PRIORS)}")
    return PRIORS[kind](latent_dim, event_shape, config)
