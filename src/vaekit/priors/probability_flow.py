"""The probability-flow ODE of a diffusion prior (Song et al. 2021, sec. 4.3; Chen et al. 2018,
FFJORD's Grathwohl et al. 2019 for the density): sampling and the exact log-density.

For the variance-preserving diffusion of `vaekit.priors.diffusion`, with the score
grad log p_t(u) = -eps_theta(u, t) / sigma_t, the ODE

    du/dt = f(u, t) = -beta(t) / 2 * (u - eps_theta(u, t) / sigma_t)

carries the marginals of the diffusion from t = 1 back to the codes at T_MIN. As a continuous
normalising flow from N(0, I) at t = 1, it gives the density of what it samples, exactly:

    log p(u_{T_MIN}) = log N(u_1; 0, I) + int_{T_MIN}^1 div f(u_t, t) dt,
    div f = -beta(t) / 2 * (L - tr(d eps_theta / du) / sigma_t),

where u_t solves the ODE from u_{T_MIN} up to t = 1. The trace is exact for L up to
EXACT_DIVERGENCE_MAX_DIM (the Jacobian's L vector-Jacobian products, batched by torch.func);
above it, Hutchinson's estimate v^T (d eps / du) v with HUTCHINSON_PROBES Rademacher vectors
held fixed along each solve (Grathwohl et al. 2019), whose log p(z) is unbiased, with the
standard error over the probes. The solver is torchdiffeq's adaptive Dormand-Prince (dopri5)
with rtol = atol = the prior's `tolerance`; the `diffusion` extra installs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from vaekit.errors import ConfigError, VaekitError
from vaekit.priors.schedules import T_MIN, vp_beta

#: a `vaekit.priors.diffusion.DiffusionPrior` (not imported: diffusion imports this module)
DiffusionPrior = Any

#: Latent sizes up to this get the exact divergence (L vector-Jacobian products per step);
#: above it, Hutchinson's estimator.
EXACT_DIVERGENCE_MAX_DIM = 64
#: Rademacher probes of Hutchinson's estimator per code (its standard error is over them).
HUTCHINSON_PROBES = 8
#: torchdiffeq's adaptive Runge-Kutta method (order 5, embedded order-4 error estimate).
METHOD = "dopri5"


def _odeint() -> Callable[..., Any]:
    try:
        from torchdiffeq import odeint
    except ImportError:
        raise ConfigError("--sampler ode needs torchdiffeq: pip install 'vaekit[diffusion]' "
                          "(or pip install torchdiffeq)") from None
    return odeint  # type: ignore[no-any-return,unused-ignore]


def _solve(prior: DiffusionPrior, dynamics: Any, state: Any, start: float, end: float,
           like: Tensor) -> Any:
    """torchdiffeq's dopri5 from `start` to `end`, its steps kept within them (by default it
    steps past the end and interpolates back, evaluating the drift outside the schedule's
    range); its step-size underflow (a stiff or diverging solve) as one clear error instead
    of an AssertionError from inside the solver."""
    times = _times(prior, like, start, end)
    try:  # step_t: the last step ends at `end`, never past it (below T_MIN, sigma_t is NaN)
        return _odeint()(dynamics, state, times, rtol=prior.tolerance, atol=prior.tolerance,
                         method=METHOD, options={"step_t": times})
    except AssertionError as e:
        raise VaekitError(f"the probability-flow ODE did not solve at --tolerance "
                         f"{prior.tolerance:g} ({e}); try a looser --tolerance, or --sampler "
                         "ancestral") from None


def _times(prior: DiffusionPrior, u: Tensor, start: float, end: float) -> Tensor:
    return torch.tensor([start, end], dtype=u.dtype, device=u.device)


def _rates(prior: DiffusionPrior, t: Tensor) -> tuple[Tensor, Tensor]:
    """(beta(t) / 2, 1 / sigma_t) at one time t ()."""
    _, sigma = prior.alpha_sigma(t)
    return 0.5 * vp_beta(t), 1 / sigma


@torch.no_grad()
def ode_sample(prior: DiffusionPrior, noise: Tensor) -> Tensor:
    """Codes u_{T_MIN} (N, L) from noise u_1 (N, L), by the ODE from t = 1 down to T_MIN."""
    def drift(t: Tensor, u: Tensor) -> Tensor:
        half_beta, inv_sigma = _rates(prior, t)
        return -half_beta * (u - prior.eps(u, t) * inv_sigma)  # (N, L)

    path = _solve(prior, drift, noise, 1.0, T_MIN, noise)
    return path[-1]  # type: ignore[no-any-return,unused-ignore]


def _exact_trace(prior: DiffusionPrior, u: Tensor, t: Tensor,
                 shifts: Tensor) -> tuple[Tensor, Tensor]:
    """(eps (N, L), tr(d eps / du) (1, N)): the Jacobian of each row, by L batched VJPs."""
    def row(v: Tensor) -> tuple[Tensor, Tensor]:
        eps = prior.eps(v, t, shifts)  # (L,)
        return eps, eps

    jac, eps = torch.func.vmap(torch.func.jacrev(row, has_aux=True))(u)  # (N, L, L), (N, L)
    return eps, jac.diagonal(dim1=-2, dim2=-1).sum(-1)[None]


def _hutchinson_trace(prior: DiffusionPrior, u: Tensor, t: Tensor, shifts: Tensor,
                      probes: Tensor) -> tuple[Tensor, Tensor]:
    """(eps (N, L), v_p^T (d eps / du) v_p (P, N)) for the probes v (P, N, L)."""
    eps, vjp = torch.func.vjp(lambda v: prior.eps(v, t, shifts), u)[:2]
    products = torch.func.vmap(vjp)(probes)[0]  # (P, N, L)
    return eps, (products * probes).sum(-1)


@torch.no_grad()
def ode_log_density(prior: DiffusionPrior, u: Tensor) -> tuple[Tensor, Tensor]:
    """(log p(u), its standard error), each (N,), of standardised codes u (N, L) under the ODE's
    flow: exact up to the solver's tolerance for L <= EXACT_DIVERGENCE_MAX_DIM (the standard
    error is then 0), Hutchinson's unbiased estimate above it."""
    n, dim = u.shape
    exact = dim <= EXACT_DIVERGENCE_MAX_DIM
    probes = None
    if not exact:  # Rademacher probes from the prior's generator, fixed along the solve
        g = prior.generator(u.device)
        bits = torch.randint(0, 2, (HUTCHINSON_PROBES, n, dim), generator=g, device=u.device)
        probes = 2.0 * bits.to(u.dtype) - 1
    denoiser: Any = prior.denoiser

    def dynamics(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        u_t = state[0]
        shifts = denoiser.time_shifts(t)  # the time's share of every layer, once per step
        eps, trace = _exact_trace(prior, u_t, t, shifts) if probes is None else \
            _hutchinson_trace(prior, u_t, t, shifts, probes)
        half_beta, inv_sigma = _rates(prior, t)
        drift = -half_beta * (u_t - eps * inv_sigma)  # (N, L)
        divergence = -half_beta * (dim - trace * inv_sigma)  # (1 or P, N)
        return drift, divergence

    start = torch.zeros(1 if exact else HUTCHINSON_PROBES, n, dtype=u.dtype, device=u.device)
    path_u, path_integral = _solve(prior, dynamics, (u, start), T_MIN, 1.0, u)
    u_1, integral = path_u[-1], path_integral[-1]  # (N, L), (1 or P, N)
    log_base = -0.5 * (u_1.pow(2).sum(-1) + dim * math.log(2 * math.pi))  # (N,)
    estimates = log_base + integral  # (1 or P, N)
    if exact:
        return estimates[0], torch.zeros_like(estimates[0])
    return estimates.mean(0), estimates.std(0) / math.sqrt(HUTCHINSON_PROBES)


__all__ = ["EXACT_DIVERGENCE_MAX_DIM", "HUTCHINSON_PROBES", "ode_log_density", "ode_sample"]
