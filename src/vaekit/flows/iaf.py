"""Inverse autoregressive flow (Kingma et al. 2016), the numerically stable form of eq. 11-14
(their Algorithm 1), with a forget-gate bias b:

    [m, s] = MADE(z, h),   sigma = sigmoid(s + b),   z' = (sigma * z + (1 - sigma) * m) / sigma_0,
    log|det| = sum_i log sigma_i - D log sigma_0,       sigma_0 = sigmoid(b),

where MADE (Germain et al. 2015) makes m_i, s_i depend on z_{<i} only and h is the encoder's
context. Steps alternate the order of the dimensions.

The constant 1 / sigma_0 is ours: the MADE's output layer starts at zero (m = s = 0), so without
it every step would start as the contraction z' = sigmoid(b) z (0.82 z for b = 1.5: 0.45 z after
four steps, the encoder's means and standard deviations shrunk alike). With it each step starts
as exactly the identity, q_K = q_0: an IAF model starts with the ELBO of the plain VAE with the
same encoder weights. A constant rescaling changes the parametrization, not the family of maps,
and keeps the gated update of the paper's stability argument, its scale bounded by 1 / sigma_0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedLinear(nn.Linear):
    mask: Tensor

    def __init__(self, n_in: int, n_out: int, mask: Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Autoregressive network: outputs (m, s), each (..., D), with output i a function of inputs
    < i (in the given order) and of the context."""

    def __init__(self, dim: int, hidden: int, context_dim: int = 0,
                 order: Tensor | None = None) -> None:
        super().__init__()
        order = torch.arange(dim) if order is None else order
        deg_in = torch.empty(dim, dtype=torch.long)
        deg_in[order] = torch.arange(1, dim + 1)  # input order[j] has degree j + 1
        deg_h = torch.arange(hidden) % max(dim - 1, 1) + 1
        self.inp = MaskedLinear(dim, hidden, deg_h[:, None] >= deg_in[None, :])
        self.mid = MaskedLinear(hidden, hidden, deg_h[:, None] >= deg_h[None, :])
        out_mask = (deg_in[:, None] > deg_h[None, :]).repeat(2, 1)
        self.out = MaskedLinear(hidden, 2 * dim, out_mask)
        with torch.no_grad():  # m = s = 0 at the start: each IAF step starts as the identity
            self.out.weight.zero_()
            self.out.bias.zero_()
        self.context = nn.Linear(context_dim, hidden) if context_dim else None
        self.order: Tensor
        self.register_buffer("order", order, persistent=False)

    def forward(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.inp(z)
        if self.context is not None and context is not None:
            h = h + self.context(context)
        h = F.elu(self.mid(F.elu(h)))
        m, s = self.out(F.elu(h)).chunk(2, dim=-1)
        return m, s


class IAFStep:
    """One bound IAF step (see the module's docstring): the MADE, its context h, the gate's
    bias b and log sigma_0 = log sigmoid(b)."""

    def __init__(self, made: MADE, context: Tensor | None, forget_bias: float,
                 log_sigma_0: Tensor) -> None:
        self.made, self.context, self.forget_bias = made, context, forget_bias
        self.log_sigma_0 = log_sigma_0

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        m, s = self.made(z, self.context)  # (..., D) each
        sigma = torch.sigmoid(s + self.forget_bias)
        z = (sigma * z + (1 - sigma) * m) * torch.exp(-self.log_sigma_0)
        return z, (F.logsigmoid(s + self.forget_bias) - self.log_sigma_0).sum(-1)

    def inverse(self, y: Tensor) -> Tensor:
        """Dimension by dimension in the MADE's order: D network passes."""
        y = y * torch.exp(self.log_sigma_0)  # = sigma * z + (1 - sigma) * m
        z = torch.zeros_like(y)
        order: Tensor = self.made.order
        for i in order.tolist():
            m, s = self.made(z, self.context)
            sigma = torch.sigmoid(s[..., i] + self.forget_bias)
            z = z.clone()
            z[..., i] = (y[..., i] - (1 - sigma) * m[..., i]) / sigma
        return z


class InverseAutoregressiveFlow(nn.Module):
    """One IAF step; odd-numbered steps reverse the autoregressive order."""

    def __init__(self, latent_dim: int, context_dim: int = 0, index: int = 0,
                 hidden: int | None = None) -> None:
        super().__init__()
        order = torch.arange(latent_dim)
        if index % 2:
            order = order.flip(0)
        self.made = MADE(latent_dim, hidden or max(4 * latent_dim, 32), context_dim, order)
        # A forget-gate bias of +1.5: "s sufficiently positive, such as close to +1 or +2"
        # (Kingma et al., sec. 4), so that the gate starts mostly open (sigma ~ 0.82).
        self.forget_bias = 1.5
        # log sigmoid(b), saved with the weights. A run written before steps were rescaled to
        # start at the identity (z' = sigma z + (1 - sigma) m) lacks it; it loads with 0, the
        # map it was trained with (see `legacy_state`).
        self.log_sigma_0: Tensor
        self.register_buffer("log_sigma_0", F.logsigmoid(torch.tensor(self.forget_bias)))

    def legacy_state(self, prefix: str, state: dict[str, Tensor]) -> None:
        """Complete the weights of a run saved before `log_sigma_0` existed, in place: its steps
        were z' = sigma z + (1 - sigma) m, which is today's step with log sigma_0 = 0."""
        state.setdefault(prefix + "log_sigma_0", torch.zeros(()))

    def forward(self, context: Tensor | None = None) -> IAFStep:
        return IAFStep(self.made, context, self.forget_bias, self.log_sigma_0)
