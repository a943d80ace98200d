"""The noise predictors eps_theta(u_t, t) of the diffusion prior (`vaekit.priors.diffusion`).

- `ResidualDenoiser`, the network of every fit since the probability-flow ODE: a residual MLP
  (pre-LayerNorm blocks, SiLU, the last layer of each block and the output zeroed at start, as
  VDVAE/NVAE scale their residual branches) on continuous time t in [0, 1]. Time enters every
  block as a shift of its hidden state. All of those shifts, the first layer's share of t among
  them, are one linear map of t's sinusoidal embedding, computed once per step for every row
  (`time_shifts`), and then broadcast: an ODE solver or a sampler asks for one t at a time.
- `LegacyDenoiser`, the MLP on [u_t, MLP(embedding(step))] of the runs fitted before it, on
  integer steps 0..T-1; kept so that those runs load and sample as they did.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: The sinusoidal embedding of continuous t in [0, 1] reads t * TIME_SCALE, so that its
#: frequencies resolve steps of 1/1000 as an integer-step embedding would.
TIME_SCALE = 100.0


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (*, dim) of times t (*,) (Vaswani et al. 2017; Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[..., None] * freqs  # (*, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ResidualBlock(nn.Module):
    """h + W2 SiLU(W1 (LayerNorm(h) + shift_t)): a pre-norm residual block whose branch starts
    at zero (W2 = 0), so that a deep stack starts as the identity."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.inner = nn.Linear(width, width)
        self.outer = nn.Linear(width, width)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, h: Tensor, shift: Tensor) -> Tensor:
        return h + self.outer(torch.nn.functional.silu(self.inner(self.norm(h) + shift)))


class ResidualDenoiser(nn.Module):
    """eps_theta(u_t, t) for continuous t in [0, 1] (see the module's docstring):

        h_0 = W_in u + c_0(t),   h_b = h_{b-1} + block_b(h_{b-1}, c_b(t)),
        eps = W_out SiLU(LayerNorm(h_B)),   [c_0(t), ..., c_B(t)] = W_t SiLU(W_e emb(t)).
    """

    def __init__(self, latent_dim: int, width: int, depth: int = 3, embed: int = 128) -> None:
        super().__init__()
        self.embed, self.width, self.depth = embed, width, depth
        self.time = nn.Sequential(nn.Linear(embed, width), nn.SiLU(),
                                  nn.Linear(width, (depth + 1) * width))
        self.inp = nn.Linear(latent_dim, width, bias=False)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def time_shifts(self, t: Tensor) -> Tensor:
        """The time's share of every layer, (*, depth + 1, width), for times t (*,)."""
        c = self.time(time_embedding(t * TIME_SCALE, self.embed))  # (*, (depth + 1) * width)
        return c.unflatten(-1, (self.depth + 1, self.width))

    def forward(self, u: Tensor, t: Tensor, shifts: Tensor | None = None) -> Tensor:
        """eps (*, L) for u_t (*, L) at times t (*,), or at one time t () for every row (its
        shifts computed once). `shifts` = `time_shifts(t)` reuses them across calls."""
        c = self.time_shifts(t) if shifts is None else shifts  # (*, depth + 1, width)
        h = self.inp(u) + c[..., 0, :]  # (*, width)
        for b, block in enumerate(self.blocks):
            h = block(h, c[..., b + 1, :])
        return self.out(torch.nn.functional.silu(self.norm(h)))


class LegacyDenoiser(nn.Module):
    """eps_theta(u_t, t): the MLP on [u_t, MLP(embedding(step))] of runs fitted before
    `ResidualDenoiser`, its time the integer step s = t T - 1 of a T-step chain."""

    def __init__(self, latent_dim: int, width: int, steps: int, depth: int = 3,
                 embed: int = 64) -> None:
        super().__init__()
        self.embed, self.steps = embed, steps
        self.time = nn.Sequential(nn.Linear(embed, width), nn.SiLU(), nn.Linear(width, width))
        layers: list[nn.Module] = [nn.Linear(latent_dim + width, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        last = nn.Linear(width, latent_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, u: Tensor, t: Tensor, shifts: Tensor | None = None) -> Tensor:
        """eps (*, L) for u_t (*, L) at times t (*,) or () on the grid t = (s + 1) / T."""
        step = torch.round(t * self.steps - 1)
        h = self.time(time_embedding(step, self.embed)).expand(*u.shape[:-1], -1)
        return self.net(torch.cat([u, h], dim=-1))


__all__ = ["LegacyDenoiser", "ResidualDenoiser", "time_embedding"]
