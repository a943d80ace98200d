"""A denoising diffusion prior on latent vectors (DDPM; Ho, Jain & Abbeel 2020), fitted to a
trained model's codes by `vaekit fit-prior --kind diffusion`, in the spirit of LSGM (Vahdat,
Kreis & Kautz 2021) and the two-stage VAE (Dai & Wipf 2019).

Forward process on standardised codes u_0 = (z - m) / s, with the cosine schedule of Nichol &
Dhariwal (2021), abar_t = cos^2(((t/T + 0.008) / 1.008) pi/2) / abar_0, beta_t = 1 - abar_t /
abar_{t-1} (at most 0.999):

    q(u_t | u_{t-1}) = N(sqrt(1 - beta_t) u_{t-1}, beta_t I),   q(u_t | u_0) = N(sqrt(abar_t) u_0,
                                                                               (1 - abar_t) I).

Reverse model: p(u_T) = N(0, I), p(u_{t-1} | u_t) = N(mu_theta(u_t, t), sigma_t^2 I) with
mu_theta = (u_t - beta_t / sqrt(1 - abar_t) eps_theta(u_t, t)) / sqrt(1 - beta_t), sigma_t^2 the
forward posterior's variance (beta_1 at t = 1, so that p(u_0 | u_1) has a density).
eps_theta is an MLP on u_t and a sinusoidal embedding of t, trained on Ho et al.'s simple loss
||eps - eps_theta(sqrt(abar_t) u_0 + sqrt(1 - abar_t) eps, t)||^2.

**log p(z) stays a bound, and the likelihood estimate stays a lower bound.** For one trajectory
u_{1:T} ~ q(u_{1:T} | u_0),

    L(z) = log p(u_T) + sum_t log p(u_{t-1} | u_t) - sum_t log q(u_t | u_{t-1}) - sum_j log s_j

is an importance weight on the extended space: E_q[exp L(z)] = p(z) exactly (the forward process
is the proposal for the reverse chain), so E[L(z)] <= log p(z) (Jensen). `log_prob` returns L(z)
for a fresh trajectory. In the importance-weighted estimate of log p(x), each sample's weight

    w_k = p(x | z_k) exp(L(z_k)) / q(z_k | x),   z_k ~ q(z|x), trajectory ~ q(u_{1:T} | u_0(z_k)),

has expectation p(x): it is the ordinary importance weight of the joint model p(x, z, u_{1:T})
with the proposal q(z|x) q(u_{1:T}|z). The estimate log (1/K) sum_k w_k is therefore a
stochastic lower bound on log p(x) for every K (Burda et al. 2016, Theorem 1), as for any other
prior: the same guarantee, with more variance.

Sampling is ancestral (T steps), or DDIM (Song, Meng & Ermon 2021; eta = 0) on an evenly spaced
subsequence of `sampling_steps` < T steps (at least `MIN_DDIM_STEPS`), from T - T/steps down to 0,
its predictions of u_0 clipped to the range of the standardised codes.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

LOG_2PI = math.log(2 * math.pi)
#: DDIM in fewer steps than this jumps from noise to codes too coarsely to be a sampler worth
#: offering (with 1 step, its output is the noise, scaled).
MIN_DDIM_STEPS = 10


def cosine_schedule(steps: int, s: float = 0.008) -> Tensor:
    """beta_1..beta_T (T,) of the cosine schedule, in float64."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    abar = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    abar = abar / abar[0]
    return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding (*, dim) of integer steps t (*,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[..., None] * freqs  # (*, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Denoiser(nn.Module):
    """eps_theta(u_t, t): an MLP on [u_t, MLP(embedding(t))] with SiLU activations."""

    def __init__(self, latent_dim: int, width: int, depth: int = 3, embed: int = 64) -> None:
        super().__init__()
        self.embed = embed
        self.time = nn.Sequential(nn.Linear(embed, width), nn.SiLU(), nn.Linear(width, width))
        layers: list[nn.Module] = [nn.Linear(latent_dim + width, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        last = nn.Linear(width, latent_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def forward(self, u: Tensor, t: Tensor) -> Tensor:
        """eps (*, L) for u_t (*, L) at steps t (*,), or one step t () for every row."""
        h = self.time(time_embedding(t, self.embed)).expand(*u.shape[:-1], -1)
        return self.net(torch.cat([u, h], dim=-1))


class DiffusionPrior(nn.Module):
    """p(z) as the diffusion model above, on codes standardised by `loc` and `log_scale` (set
    from the codes before training). `forward(posterior)` returns a `DiffusionDistribution`."""

    betas: Tensor

    def __init__(self, latent_dim: int, steps: int = 100, width: int = 512,
                 sampling_steps: int = 0) -> None:
        super().__init__()
        self.latent_dim, self.steps = latent_dim, steps
        #: DDIM steps for sampling (0 or >= steps: ancestral sampling over all steps)
        self.sampling_steps = sampling_steps
        self.denoiser = Denoiser(latent_dim, width)
        self.loc = nn.Parameter(torch.zeros(latent_dim), requires_grad=False)
        self.log_scale = nn.Parameter(torch.zeros(latent_dim), requires_grad=False)
        self.register_buffer("betas", cosine_schedule(steps).float(), persistent=False)
        #: the largest |u| of the standardised codes: DDIM clips its predictions of u_0 to it
        self.u_max = nn.Parameter(torch.ones(()), requires_grad=False)
        self._evaluation_seed = 0

    @torch.no_grad()
    def init_from_codes(self, codes: Tensor) -> None:
        self.loc.copy_(codes.mean(0))
        self.log_scale.copy_(codes.std(0).clamp_min(1e-3).log())
        self.u_max.copy_(((codes - self.loc) * torch.exp(-self.log_scale)).abs().max())

    def alpha_bars(self) -> Tensor:
        return torch.cumprod(1 - self.betas.double(), 0).to(self.betas.dtype)  # (T,)

    def training_loss(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Ho et al.'s simple loss on codes z (B, L), with t and eps drawn from `generator`."""
        u = (z - self.loc) * torch.exp(-self.log_scale)
        t = torch.randint(self.steps, (len(z),), generator=generator, device=z.device)  # 0-based
        eps = torch.randn(u.shape, generator=generator, device=z.device)
        abar = self.alpha_bars()[t][:, None]
        u_t = abar.sqrt() * u + (1 - abar).sqrt() * eps
        return (self.denoiser(u_t, t) - eps).pow(2).sum(-1).mean()

    def forward(self, posterior: nn.Module | None = None) -> DiffusionDistribution:
        return DiffusionDistribution(self)


class DiffusionDistribution(Distribution):
    """The diffusion prior as a torch Distribution: `sample` (ancestral or DDIM) and `log_prob`
    (the one-trajectory bound L(z) of the module's docstring)."""

    arg_constraints: ClassVar[dict[str, Any]] = {}
    support = constraints.real_vector
    has_rsample = False
    #: its log_prob is a stochastic bound, not p(z): no MCMC on it (`VAE.prior_and_decoder`)
    has_exact_log_prob = False

    def __init__(self, prior: DiffusionPrior) -> None:
        self.prior = prior
        super().__init__(torch.Size(), torch.Size([prior.latent_dim]), validate_args=False)

    def _reverse_terms(self, u_t: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """(mean, variance) of p(u_{t-1} | u_t) at 0-based step t."""
        p = self.prior
        betas, abar = p.betas, p.alpha_bars()
        # one step for every row: the time embedding's MLP runs once, then broadcasts
        eps = p.denoiser(u_t, torch.tensor(t, device=u_t.device))
        mean = (u_t - betas[t] / (1 - abar[t]).sqrt() * eps) / (1 - betas[t]).sqrt()
        var = betas[0] if t == 0 else (1 - abar[t - 1]) / (1 - abar[t]) * betas[t]
        return mean, var

    def log_prob(self, value: Tensor) -> Tensor:
        """L(z) for one fresh forward trajectory per z (*batch, L): E[exp L(z)] = p(z)."""
        p = self.prior
        g = torch.Generator(device=value.device).manual_seed(p._evaluation_seed)
        p._evaluation_seed += 1  # a fresh, reproducible trajectory per call
        u = (value - p.loc) * torch.exp(-p.log_scale)
        total = -p.log_scale.sum().expand(u.shape[:-1]).clone()
        previous = u
        for t in range(p.steps):
            beta = p.betas[t]
            noise = torch.randn(u.shape, generator=g, device=u.device)
            current = (1 - beta).sqrt() * previous + beta.sqrt() * noise
            total -= _gaussian_log_prob(current, (1 - beta).sqrt() * previous, beta)
            mean, var = self._reverse_terms(current, t)
            total += _gaussian_log_prob(previous, mean, var)
            previous = current
        return total + _gaussian_log_prob(previous, torch.zeros_like(previous),
                                          torch.ones((), device=u.device))

    @torch.no_grad()
    def sample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        p = self.prior
        shape = (*tuple(sample_shape), p.latent_dim)
        u = torch.randn(shape, device=p.betas.device)
        if 0 < p.sampling_steps < p.steps:
            u = self._ddim(u, p.sampling_steps)
        else:
            for t in reversed(range(p.steps)):
                mean, var = self._reverse_terms(u, t)
                u = mean + (var.sqrt() * torch.randn_like(u) if t > 0 else 0.0)
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
        for i, t in enumerate(times):
            eps = p.denoiser(u, torch.tensor(t, device=u.device))
            u0 = ((u - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()).clamp(-p.u_max, p.u_max)
            eps = (u - abar[t].sqrt() * u0) / (1 - abar[t]).sqrt()  # consistent with the clip
            if i + 1 == len(times):
                return u0
            nxt = abar[times[i + 1]]
            u = nxt.sqrt() * u0 + (1 - nxt).sqrt() * eps
        return u


def _gaussian_log_prob(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """log N(x; mean, var I), summed over the last dimension."""
    d = x.shape[-1]
    return -0.5 * ((x - mean).pow(2).sum(-1) / var + d * (torch.log(var) + LOG_2PI))
