"""The noise schedules of the diffusion prior (`vaekit.priors.diffusion`): the linear
variance-preserving beta(t) of Song et al. (2021) in continuous time, which the probability-flow
ODE (`vaekit.priors.probability_flow`) and the ancestral chain share, and the discrete cosine
schedule of the runs fitted before it (Nichol & Dhariwal 2021)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: The data end of the continuous-time model: the ODE's codes are u_{T_MIN}, sigma ~ 0.01.
T_MIN = 1e-3
BETA_MIN, BETA_MAX = 0.1, 20.0


def cosine_schedule(steps: int, s: float = 0.008) -> Tensor:
    """beta_1..beta_T (T,) of the discrete cosine schedule (the `mlp` runs'), in float64."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    abar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = abar / abar[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


def vp_log_alpha_bar(t: Tensor) -> Tensor:
    """log alpha_t^2 = -(b_0 t + (b_1 - b_0) t^2 / 2) of the linear VP schedule."""
    return -(BETA_MIN * t + 0.5 * (BETA_MAX - BETA_MIN) * t * t)


def vp_beta(t: Tensor) -> Tensor:
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


def alpha_sigma(t: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha_t, sigma_t) of the continuous schedule at times t."""
    log_abar = vp_log_alpha_bar(t)
    return torch.exp(0.5 * log_abar), torch.sqrt(-torch.expm1(log_abar))


__all__ = ["BETA_MAX", "BETA_MIN", "T_MIN", "alpha_sigma", "cosine_schedule", "vp_beta",
           "vp_log_alpha_bar"]
