"""Posteriors q(z|x): modules mapping x to a Distribution over z (amortized inference)."""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import diagonal_normal

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

    def forward(self, x: Tensor) -> Distribution:
        mu, log_var = self.head(self.body(x)).chunk(2, dim=-1)  # (B, L) each
        return diagonal_normal(mu, log_var.clamp(*LOG_VAR_RANGE))


POSTERIORS = {"gaussian": GaussianPosterior}
