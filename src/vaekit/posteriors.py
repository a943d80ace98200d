"""Posteriors q(z|x): modules mapping x to a Distribution over z (amortized inference)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from vaekit.distributions import diagonal_normal
from vaekit.errors import ConfigError
from vaekit.flows import FLOWS, FlowDistribution

#: Log-variances are clamped to this range: exp(-14) ~ 1e-6 to exp(10) ~ 2e4. Outside it a
#: diagonal Gaussian's density overflows float32 or its gradient explodes.
LOG_VAR_RANGE = (-14.0, 10.0)


class GaussianPosterior(nn.Module):
    """q(z|x) = N(mu(x), diag(sigma^2(x))), with mu and log sigma^2 from one linear head on the
    encoder's features (Kingma & Welling 2014, appendix C.2)."""

    def __init__(self, body: nn.Module, feature_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, 2 * latent_dim)
        self.latent_dim = latent_dim

    def features(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """The encoder's features of x (and of a one-hot condition: q(z|x, c))."""
        return self.body(x) if condition is None else self.body(x, condition)

    def gaussian(self, x: Tensor, features: Tensor | None = None) -> Independent:
        """The diagonal Gaussian part of q(z|x) (all of it here; the base of a flow posterior)."""
        h = self.body(x) if features is None else features
        mu, log_var = self.head(h).chunk(2, dim=-1)  # (B, L) each
        # hardtanh: clamp's values with a one-kernel backward (clamp's takes four small ops);
        # the gradients differ only exactly at the bounds, where hardtanh's is 0
        return diagonal_normal(mu, F.hardtanh(log_var, *LOG_VAR_RANGE))

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Distribution:
        return self.gaussian(x, self.features(x, condition))


class FlowPosterior(GaussianPosterior):
    """q_K(z|x): the diagonal Gaussian q_0(z|x) pushed through K flow steps whose parameters
    (planar) or context (IAF, RealNVP) come from the same encoder features."""

    def __init__(self, body: nn.Module, feature_dim: int, latent_dim: int, flow: str,
                 steps: int) -> None:
        super().__init__(body, feature_dim, latent_dim)
        self.flows = nn.ModuleList(FLOWS[flow](latent_dim, feature_dim, index=i)
                                   for i in range(steps))

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Distribution:
        h = self.features(x, condition)
        return FlowDistribution(self.gaussian(x, h), [flow(h) for flow in self.flows])


def _flow_posterior(flow: str) -> Callable[[nn.Module, int, int, Any], GaussianPosterior]:
    def build(body: nn.Module, feature_dim: int, latent_dim: int, config: Any) -> GaussianPosterior:
        return FlowPosterior(body, feature_dim, latent_dim, flow, config.flow_steps)

    return build


#: The posteriors, by --posterior name: the diagonal Gaussian and one refined by each registered
#: flow (FLOWS). The one list of choices (Config validates against it). Each is built as
#: `POSTERIORS[name](encoder_body, feature_dim, latent_dim, config)`.
POSTERIORS: dict[str, Callable[[nn.Module, int, int, Any], GaussianPosterior]] = {
    "gaussian": lambda body, feature_dim, latent_dim, config: GaussianPosterior(
        body, feature_dim, latent_dim),
    **{flow: _flow_posterior(flow) for flow in FLOWS},
}


def build_posterior(kind: str, body: nn.Module, feature_dim: int, latent_dim: int,
                    config: Any) -> GaussianPosterior:
    """The posterior `kind` (a key of POSTERIORS) on the encoder `body`."""
    if kind not in POSTERIORS:
        raise ConfigError(f"unknown posterior {kind!r}; choose from: {', '.join(POSTERIORS)}")
    return POSTERIORS[kind](body, feature_dim, latent_dim, config)
