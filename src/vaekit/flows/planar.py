"""Planar flow (Rezende & Mohamed 2015, section 4.1), with amortized parameters:

    f(z) = z + u' tanh(w^T z + b),   log|det| = log|1 + u'^T w (1 - tanh^2(w^T z + b))|,

where u' = u + (m(w^T u) - w^T u) w / |w|^2, m(a) = -1 + softplus(a), makes f invertible
(appendix A.1). u, w and b come per example from the encoder's features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PlanarStep:
    def __init__(self, u: Tensor, w: Tensor, b: Tensor) -> None:
        wu = (w * u).sum(-1, keepdim=True)
        self.u = u + (F.softplus(wu) - 1 - wu) * w / (w * w).sum(-1, keepdim=True).clamp_min(1e-8)
        self.w, self.b = w, b  # (B, D), (B, D), (B, 1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a = (self.w * z).sum(-1, keepdim=True) + self.b  # (..., B, 1)
        h = torch.tanh(a)
        psi = (1 - h * h) * self.w
        log_det = torch.log((1 + (psi * self.u).sum(-1)).abs().clamp_min(1e-12))
        return z + self.u * h, log_det

    def inverse(self, y: Tensor, iterations: int = 80) -> Tensor:
        """Solve w^T y = a + (w^T u') tanh(a + b) for a (monotone in a) by bisection."""
        wy = (self.w * y).sum(-1, keepdim=True)
        c = (self.w * self.u).sum(-1, keepdim=True).expand_as(wy)
        lo, hi = wy - c.abs() - 1, wy + c.abs() + 1
        b = self.b.expand_as(wy)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            above = mid + c * torch.tanh(mid + b) > wy
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        a = (lo + hi) / 2
        return y - self.u * torch.tanh(a + b)


class PlanarFlow(nn.Module):
    """Maps features (B, F) to one planar step; with no context (context_dim=0) the parameters are
    global, for use in a prior."""

    def __init__(self, latent_dim: int, context_dim: int = 0, index: int = 0) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        if context_dim:
            head = nn.Linear(context_dim, 2 * latent_dim + 1)
            nn.init.normal_(head.weight, std=0.01)  # start near the identity
            nn.init.zeros_(head.bias)
            self.head: nn.Module | None = head
        else:
            self.head = None
            self.params = nn.Parameter(0.01 * torch.randn(2 * latent_dim + 1))

    def forward(self, context: Tensor | None = None) -> PlanarStep:
        raw = self.head(context) if self.head is not None and context is not None else self.params
        d = self.latent_dim
        return PlanarStep(raw[..., :d], raw[..., d:2 * d] + 1e-3, raw[..., 2 * d:])
