"""Affine coupling (RealNVP; Dinh, Sohl-Dickstein & Bengio 2017, eq. 7-9):

    y_a = z_a,   y_b = z_b * exp(s(z_a, h)) + t(z_a, h),   log|det| = sum s,

with the halves a/b alternating from step to step. Invertible in closed form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CouplingStep:
    def __init__(self, net: nn.Module, mask: Tensor, context: Tensor | None) -> None:
        self.net, self.mask, self.context = net, mask, context

    def _scale_shift(self, z_a: Tensor) -> tuple[Tensor, Tensor]:
        inp = z_a
        if self.context is not None:
            inp = torch.cat([z_a, self.context.expand(*z_a.shape[:-1], -1)], dim=-1)
        s, t = self.net(inp).chunk(2, dim=-1)
        s = torch.tanh(s)  # bounded log-scales keep the flow well conditioned
        keep = 1 - self.mask
        return s * keep, t * keep

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        s, t = self._scale_shift(z * self.mask)
        return z * torch.exp(s) + t, s.sum(-1)

    def inverse(self, y: Tensor) -> Tensor:
        s, t = self._scale_shift(y * self.mask)  # the masked half is unchanged by forward
        return (y - t) * torch.exp(-s)


class AffineCoupling(nn.Module):
    """One coupling step; even steps condition on the even dimensions, odd steps on the odd."""

    mask: Tensor

    def __init__(self, latent_dim: int, context_dim: int = 0, index: int = 0,
                 hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(4 * latent_dim, 32)
        mask = (torch.arange(latent_dim) % 2 == index % 2).float()
        if latent_dim == 1:
            mask = torch.zeros(1)  # one dimension: an affine map conditioned on the context
        self.register_buffer("mask", mask, persistent=False)
        last = nn.Linear(hidden, 2 * latent_dim)
        nn.init.normal_(last.weight, std=0.01)  # start near the identity
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Linear(latent_dim + context_dim, hidden), nn.ELU(),
                                 nn.Linear(hidden, hidden), nn.ELU(), last)

    def forward(self, context: Tensor | None = None) -> CouplingStep:
        return CouplingStep(self.net, self.mask, context)
