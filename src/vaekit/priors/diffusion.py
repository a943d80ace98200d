"""A diffusion prior on latent vectors, fitted to a trained model's codes by `vaekit fit-prior
--kind diffusion`, in the spirit of LSGM (Vahdat, Kreis & Kautz 2021) and the two-stage VAE (Dai
& Wipf 2019).

**The model.** On standardised codes u = (z - m) / s, the variance-preserving diffusion of Song
et al. (2021) in continuous time t in [0, 1], with beta(t) = b_0 + t (b_1 - b_0) (0.1 and 20):

    q(u_t | u) = N(alpha_t u, sigma_t^2 I),   alpha_t^2 = exp(-int_0^t beta) = 1 - sigma_t^2,

and eps_theta(u_t, t), a residual MLP (`vaekit.priors.denoisers`), trained on the eps-prediction
loss ||eps - eps_theta(alpha_t u + sigma_t eps, t)||^2, t ~ U(T_MIN, 1) (Ho et al. 2020's simple
loss in continuous time, Kingma et al. 2021). Its score is grad log p_t(u) = -eps_theta / sigma_t.

**Three samplers, and whose likelihood each reports** (`sampler`):

- `ode`: the probability-flow ODE (Song et al. 2021, eq. 13), a continuous normalising flow
  from N(0, I) at t = 1 to the codes at T_MIN (`vaekit.priors.probability_flow`). Sampling and
  log p(z) go through the same ODE, so the density evaluated is exactly the sampler's (up to the
  solver's `tolerance`): log p(x) estimates with it are lower bounds of that model's log p(x).
- `ancestral`: the T-step discrete chain on the times t_i = i / T, p(u_T) = N(0, I),
  p(u_{i-1} | u_i) = N(mu_theta(u_i), tilde-beta_i I) (Ho et al. 2020). Its log p(z) is the
  importance weight of `trajectories` = M forward trajectories u_{1:T} ~ q(u_{1:T} | u_0),

      L_M(z) = log (1/M) sum_m exp[log p(u_{0:T}^m) - log q(u_{1:T}^m | u_0)] - sum_j log s_j,

  whose exp has expectation p(z) (the forward process proposes the reverse chain), so the
  importance-weighted log p(x) stays a lower bound of the chain's log p(x), tighter as M grows
  (Burda et al. 2016, Theorem 1, on the extended space).
- `ddim`: deterministic DDIM (Song, Meng & Ermon 2021) on `sampling_steps` of the T; it has no
  tractable density of its own, so its likelihood is the ancestral chain's, as above.

Runs fitted before the ODE (`denoiser="mlp"`) keep their network and the discrete cosine
schedule of Nichol & Dhariwal (2021) on integer steps; they sample and evaluate as they did
(ancestral and DDIM) and refuse the ODE, which needs a model in continuous time.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from vaekit.errors import ConfigError
from vaekit.priors.denoisers import LegacyDenoiser, ResidualDenoiser
from vaekit.priors.schedules import T_MIN, alpha_sigma, cosine_schedule, vp_log_alpha_bar

LOG_2PI = math.log(2 * math.pi)
#: DDIM in fewer steps than this jumps from noise to codes too coarsely to be a sampler worth
#: offering (with 1 step, its output is the noise, scaled).
MIN_DDIM_STEPS = 10
#: The samplers of a diffusion prior (see the module's docstring).
SAMPLERS = ("ancestral", "ddim", "ode")
class DiffusionPrior(nn.Module):
    """p(z) as the diffusion model above, on codes standardised by `loc` and `log_scale` (set
    from the codes before training). `forward(posterior)` returns a `DiffusionDistribution`.

    `sampler`, `trajectories` and `tolerance` choose how it samples and what its log p(z) is;
    they hold no weights, so `vaekit evaluate/sample/quality --sampler ...` may change them on a
    loaded run. `reseed(seed)` restarts the noise its log p(z) draws (trajectories, probes)."""

    betas: Tensor
    times: Tensor

    def __init__(self, latent_dim: int, steps: int = 100, width: int = 512,
                 sampling_steps: int = 0, *, depth: int = 3, denoiser: str = "residual",
                 sampler: str = "ancestral", trajectories: int = 1,
                 tolerance: float = 1e-5) -> None:
        super().__init__()
        self.latent_dim, self.steps = latent_dim, steps
        #: DDIM steps for sampling (0 or >= steps: ancestral sampling over all steps)
        self.sampling_steps = sampling_steps
        self.continuous = denoiser == "residual"
        self.denoiser: nn.Module = ResidualDenoiser(latent_dim, width, depth) \
            if self.continuous else LegacyDenoiser(latent_dim, width, steps)
        self.loc = nn.Parameter(torch.zeros(latent_dim), requires_grad=False)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim), requires_grad=False)
        grid = torch.arange(1, steps + 1, dtype=torch.float64) / steps  # t_1..t_T
        if self.continuous:  # the chain on t_i = i / T of the continuous schedule
            abar = torch.exp(vp_log_alpha_bar(grid))
            betas = 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
        else:
            betas = cosine_schedule(steps)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("times", grid.float(), persistent=False)
        #: the largest |u| of the standardised codes: DDIM clips its predictions of u_0 to it
        self.u_max = nn.Parameter(torch.ones(()), requires_grad=False)
        self.sampler, self.trajectories, self.tolerance = "ancestral", 1, 1e-5
        self.configure(sampler=sampler, trajectories=trajectories, tolerance=tolerance)
        self._seed = 0
        self._generators: dict[str, torch.Generator] = {}

    def configure(self, sampler: str | None = None, trajectories: int | None = None,
                  tolerance: float | None = None) -> None:
        """Choose the sampler, the trajectories M of the ancestral weight and the ODE solver's
        tolerance (rtol = atol); None keeps a setting. Bad values raise a ConfigError."""
        if sampler is not None:
            if sampler not in SAMPLERS:
                raise ConfigError(f"--sampler {sampler}: choose from {', '.join(SAMPLERS)}")
            if sampler == "ode" and not self.continuous:
                raise ConfigError("--sampler ode needs a diffusion prior in continuous time; "
                                  "this one was fitted before the ODE (its denoiser is 'mlp'): "
                                  "fit it again with vaekit fit-prior --kind diffusion")
            if sampler == "ddim" and not MIN_DDIM_STEPS <= self.sampling_steps < self.steps:
                raise ConfigError(f"--sampler ddim needs --sampling-steps N, {MIN_DDIM_STEPS} "
                                  f"<= N < {self.steps} (the diffusion's steps)")
            self.sampler = sampler
        if trajectories is not None:
            if isinstance(trajectories, bool) or not isinstance(trajectories, int) or \
                    trajectories < 1:
                raise ConfigError(f"--trajectories {trajectories}: the ancestral weight "
                                  "averages M >= 1 trajectories")
            self.trajectories = trajectories
        if tolerance is not None:
            if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and
                    0 < tolerance < 1):
                raise ConfigError(f"--tolerance {tolerance}: the ODE solver's tolerance must "
                                  "lie in (0, 1)")
            self.tolerance = float(tolerance)

    def reseed(self, seed: int) -> None:
        """Restart the noise of log p(z) (forward trajectories, Hutchinson probes) from seed."""
        self._seed, self._generators = seed, {}

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self._seed)
        return self._generators[key]

    @torch.no_grad()
    def init_from_codes(self, codes: Tensor) -> None:
        self.loc.copy_(codes.mean(0))
        self.log_scale.copy_(codes.std(0).clamp_min(1e-3).log())
        self.u_max.copy_(self.standardise(codes).abs().max())

    def standardise(self, z: Tensor) -> Tensor:
        return (z - self.loc) * torch.exp(-self.log_scale)

    def alpha_bars(self) -> Tensor:
        return torch.cumprod(1 - self.betas.double(), 0).to(self.betas.dtype)  # (T,)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha_t, sigma_t) of the continuous schedule at times t."""
        return alpha_sigma(t)

    def eps(self, u: Tensor, t: Tensor, shifts: Tensor | None = None) -> Tensor:
        """The predicted noise (*, L) of u_t (*, L) at times t (*,) or (). In continuous time,
        relative to the exact one of N(0, I) codes (the standardised codes' Gaussian):

            eps_theta(u, t) = sigma_t u + denoiser(u, t),

        so that the prior starts as N(0, I) on u, and, the denoiser's output being bounded (a
        linear map of a LayerNorm), the ODE's drift stays bounded far from the codes instead of
        growing exponentially there (measured: a 2-D fit sent 1 in 100 ODE draws to |u| > 100
        without it)."""
        out = self.denoiser(u, t, shifts)
        if not self.continuous:
            return out
        _, sigma = self.alpha_sigma(t)
        return out + (sigma[..., None] if sigma.dim() else sigma) * u

    def training_loss(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The eps-prediction loss on codes z (B, L), t and eps drawn from `generator`: in
        continuous time, t ~ U(T_MIN, 1); for an `mlp` run, on its integer steps."""
        u = self.standardise(z)
        if self.continuous:
            t = T_MIN + (1 - T_MIN) * torch.rand(len(z), generator=generator, device=z.device)
            alpha, sigma = (a[:, None] for a in self.alpha_sigma(t))  # (B, 1) each
        else:
            step = torch.randint(self.steps, (len(z),), generator=generator, device=z.device)
            t = self.times[step]
            abar = self.alpha_bars()[step][:, None]
            alpha, sigma = abar.sqrt(), (1 - abar).sqrt()
        eps = torch.randn(u.shape, generator=generator, device=z.device)
        return (self.eps(alpha * u + sigma * eps, t) - eps).pow(2).sum(-1).mean()

    def forward(self, posterior: nn.Module | None = None) -> DiffusionDistribution:
        return DiffusionDistribution(self)


class DiffusionDistribution(Distribution):
    """The diffusion prior as a torch Distribution: `sample` and `log_prob` by the prior's
    sampler (the module's docstring says which density each reports)."""

    arg_constraints: ClassVar[dict[str, Any]] = {}
    support = constraints.real_vector
    has_rsample = False
    #: its log_prob is a stochastic bound, not p(z): no MCMC on it (`VAE.prior_and_decoder`)
    has_exact_log_prob = False

    def __init__(self, prior: DiffusionPrior) -> None:
        self.prior = prior
        super().__init__(torch.Size(), torch.Size([prior.latent_dim]), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(z) for z (*batch, L): the ODE's exact density (`ode`; Hutchinson's estimate
        above `probability_flow.EXACT_DIVERGENCE_MAX_DIM`), else the M-trajectory weight L_M."""
        return self.log_prob_and_stderr(value)[0]

    def log_prob_and_stderr(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """(log p(z), the standard error of its estimate), each (*batch): zero where log p(z)
        is computed exactly (the ODE with the exact divergence) or is the chain's weight."""
        p = self.prior
        u = p.standardise(value)
        jacobian = p.log_scale.sum()  # of z = m + s u
        if p.sampler == "ode":
            from vaekit.priors.probability_flow import ode_log_density

            log_pu, stderr = ode_log_density(p, u.reshape(-1, p.latent_dim))
            shape = value.shape[:-1]
            return log_pu.reshape(shape) - jacobian, stderr.reshape(shape)
        log_w = self.chain_log_weight(u.expand(p.trajectories, *u.shape))  # (M, *batch)
        log_pu = torch.logsumexp(log_w.double(), 0).to(u.dtype) - math.log(p.trajectories)
        return log_pu - jacobian, torch.zeros_like(log_pu)

    def _reverse_terms(self, u_t: Tensor, i: int) -> tuple[Tensor, Tensor]:
        """(mean, variance) of p(u_{i-1} | u_i) at 0-based step i of the chain."""
        p = self.prior
        betas, abar = p.betas, p.alpha_bars()
        # one time for every row: the denoiser's time share is computed once, then broadcast
        eps = p.eps(u_t, p.times[i])
        mean = (u_t - betas[i] / (1 - abar[i]).sqrt() * eps) / (1 - betas[i]).sqrt()
        var = betas[0] if i == 0 else (1 - abar[i - 1]) / (1 - abar[i]) * betas[i]
        return mean, var

    def chain_log_weight(self, u: Tensor) -> Tensor:
        """log p(u_{0:T}) - log q(u_{1:T} | u_0) for one fresh forward trajectory per row of
        standardised codes u (*batch, L), drawn from the prior's generator: exp of it has
        expectation p(u_0)."""
        p = self.prior
        g = p.generator(u.device)
        total = torch.zeros(u.shape[:-1], device=u.device, dtype=u.dtype)
        previous = u
        for i in range(p.steps):
            beta = p.betas[i]
            noise = torch.randn(u.shape, generator=g, device=u.device)
            current = (1 - beta).sqrt() * previous + beta.sqrt() * noise
            total -= _gaussian_log_prob(current, (1 - beta).sqrt() * previous, beta)
            mean, var = self._reverse_terms(current, i)
            total += _gaussian_log_prob(previous, mean, var)
            previous = current
        return total + _gaussian_log_prob(previous, torch.zeros_like(previous),
                                          torch.ones((), device=u.device))

    @torch.no_grad()
    def sample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        p = self.prior
        shape = (*tuple(sample_shape), p.latent_dim)
        u = torch.randn(shape, device=p.betas.device)
        if p.sampler == "ode":
            from vaekit.priors.probability_flow import ode_sample

            u = ode_sample(p, u.reshape(-1, p.latent_dim)).reshape(shape)
        elif p.sampler == "ddim" or 0 < p.sampling_steps < p.steps:
            u = self._ddim(u, p.sampling_steps)
        else:
            for i in reversed(range(p.steps)):
                mean, var = self._reverse_terms(u, i)
                u = mean + (var.sqrt() * torch.randn_like(u) if i > 0 else 0.0)
        return p.loc + torch.exp(p.log_scale) * u

    def _ddim(self, u: Tensor, steps: int) -> Tensor:
        """Deterministic DDIM (eta = 0) over `steps` evenly spaced steps of the T."""
        p = self.prior
        abar = p.alpha_bars()
        # "leading" spacing (Song et al.): T/steps apart, from T - T/steps down to 0. Near T,
        # abar ~ 0 and u_0 = (u - sqrt(1 - abar) eps) / sqrt(abar) would amplify every error of
        # eps; the codes are standardised, so N(0, I) is close to every u_t's marginal. The
        # prediction is also clipped to the codes' range, as DDIM clips images.
        stride = p.steps / steps
        times = [round(stride * i) for i in reversed(range(steps))]
        for n, i in enumerate(times):
            eps = p.eps(u, p.times[i])
            u0 = ((u - (1 - abar[i]).sqrt() * eps) / abar[i].sqrt()).clamp(-p.u_max, p.u_max)
            eps = (u - abar[i].sqrt() * u0) / (1 - abar[i]).sqrt()  # consistent with the clip
            if n + 1 == len(times):
                return u0
            nxt = abar[times[n + 1]]
            u = nxt.sqrt() * u0 + (1 - nxt).sqrt() * eps
        return u


def _gaussian_log_prob(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """log N(x; mean, var I), summed over the last dimension."""
    d = x.shape[-1]
    return -0.5 * ((x - mean).pow(2).sum(-1) / var + d * (torch.log(var) + LOG_2PI))


__all__ = ["MIN_DDIM_STEPS", "SAMPLERS", "T_MIN", "DiffusionDistribution", "DiffusionPrior",
           "cosine_schedule"]
