"""Annealed importance sampling (Neal 2001) of log p(x) with Hamiltonian Monte Carlo transitions,
the decoder-based evaluation of Wu et al. 2017 ("On the quantitative analysis of decoder-based
generative models").

A geometric path from a normalised start r(z) (the prior p(z), or q(z|x)) to the unnormalised
posterior p(x, z), over T steps 0 = beta_0 < beta_1 < ... < beta_T = 1:

    f_t(z) = r(z) [p(x, z) / r(z)]^beta_t,   log f_t = log r + beta_t l,   l = log p(x, z) - log r

(from the prior, l = log p(x|z)). z_0 ~ r; for t = 1..T, log w += (beta_t - beta_{t-1}) l(z_{t-1}),
then z_t ~ K_t(. | z_{t-1}), an HMC kernel that leaves f_t invariant (the last one is skipped:
it cannot change w). E[w] = p(x), so logmeanexp over M chains is a stochastic lower bound of
log p(x). Run from an exact posterior sample with the betas reversed, the same loop gives
E[w] = 1/p(x) and -logmeanexp w a stochastic upper bound (bidirectional Monte Carlo, Grosse et
al. 2015; `vaekit.evaluate.bdmc`). The betas follow the sigmoid schedule of Grosse et al. 2015.

Each HMC transition draws a momentum p ~ N(0, I), takes L leapfrog steps of size eps and accepts
with probability min(1, exp(H_0 - H_L)), H = -log f_t(z) + |p|^2 / 2. Each chain adapts its own
eps towards 0.65 acceptance (x1.02 above, x0.98 below, on a moving average of its acceptance
probability; Wu et al.'s rule per chain), from its own past only, so each kernel stays valid.

Examples and chains run as one batch of (chain, example) rows, chunked to `chunk_rows` rows;
all randomness comes from one seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from torch.distributions import Distribution

from vaekit.distributions import rsample_and_log_prob
from vaekit.errors import ConfigError, NoLikelihoodError
from vaekit.evaluate.elbo import condition_rows
from vaekit.evaluate.likelihood import DEFAULT_CHUNK_ROWS, LogLikelihood
from vaekit.models import LatentVariableModel

#: the acceptance rate each chain's step size is adapted towards (Neal 2011; Wu et al. 2017)
TARGET_ACCEPTANCE = 0.65
#: the step-size range (Wu et al. 2017's released code) and its start (theirs is 0.01, which
#: x1.02 per step cannot leave in a run of 100 steps)
MIN_STEP, MAX_STEP, INITIAL_STEP = 1e-4, 0.5, 0.05
Start = Literal["prior", "posterior"]
STARTS: dict[str, str] = {
    "prior": "the prior p(z): the path of Wu et al. 2017",
    "posterior": "q(z|x) (the model's encode(x)): fewer steps for the same accuracy",
}


def sigmoid_schedule(steps: int, radius: float = 4.0, dtype: torch.dtype = torch.float64
                     ) -> Tensor:
    """beta_0 = 0 < ... < beta_T = 1, (T + 1,): sigma(s) on s evenly spaced in [-radius, radius],
    rescaled to [0, 1] (Grosse et al. 2015, sec. 5.1). T = 1 is [0, 1]."""
    if steps < 1:
        raise ConfigError(f"AIS needs at least 1 annealing step, got {steps}")
    s = torch.sigmoid(torch.linspace(-radius, radius, steps + 1, dtype=torch.float64))
    return ((s - s[0]) / (s[-1] - s[0])).to(dtype)


@dataclass
class AnnealingResult:
    """log w of every chain, (M, B) in float64, and the mean acceptance probability."""

    log_w: Tensor
    acceptance: float


class PathPoint:
    """A point z (M, B, D) of the path, evaluated: log r(z) and l(z), each (M, B), and the
    gradient of log f_beta there, either for any beta (from the separate gradients of log r
    and l) or for the one beta it was evaluated at."""

    __slots__ = ("beta", "grad", "grad_r", "grad_ratio", "log_r", "ratio", "z")

    def __init__(self, z: Tensor, log_r: Tensor, ratio: Tensor, beta: float,
                 grad: Tensor | None = None, grad_r: Tensor | None = None,
                 grad_ratio: Tensor | None = None) -> None:
        self.z, self.log_r, self.ratio, self.beta = z, log_r, ratio, beta
        self.grad, self.grad_r, self.grad_ratio = grad, grad_r, grad_ratio

    def log_f(self, beta: float) -> Tensor:
        return self.log_r + beta * self.ratio  # (M, B)

    def grad_at(self, beta: float) -> Tensor | None:
        """d log f_beta / dz (M, B, D), or None where it was evaluated at another beta."""
        if self.grad_r is not None and self.grad_ratio is not None:
            return self.grad_r + beta * self.grad_ratio
        return self.grad if beta == self.beta else None

    def where(self, keep_other: Tensor, other: PathPoint) -> PathPoint:
        """`other` where `keep_other` (M, B), else this point."""
        rows = keep_other.unsqueeze(-1)

        def pick(a: Tensor | None, b: Tensor | None, mask: Tensor) -> Tensor | None:
            return None if a is None or b is None else torch.where(mask, b, a)

        return PathPoint(torch.where(rows, other.z, self.z),
                         torch.where(keep_other, other.log_r, self.log_r),
                         torch.where(keep_other, other.ratio, self.ratio), other.beta,
                         pick(self.grad, other.grad, rows), pick(self.grad_r, other.grad_r, rows),
                         pick(self.grad_ratio, other.grad_ratio, rows))


class AnnealingPath:
    """log f_beta(z) = log r(z) + beta l(z) for examples x (B, ...) and latents z (M, B, D):
    r the prior (`start` None) or a start distribution over (B, D) with a density at any z.

    The gradients of log r and of l are taken apart at the last leapfrog position (and the
    start), so that the point a transition ends at serves the next beta without a new
    evaluation: each HMC transition costs L gradient evaluations, not L + 1. At the other
    positions one gradient of log f_beta is taken, unless log r has no network between it and
    z (a start distribution, the prior of one latent group), where apart costs nothing; a
    hierarchy's log p(z) runs through the top-down networks."""

    def __init__(self, model: LatentVariableModel, x: Tensor, condition: Tensor | None,
                 start: Distribution | None = None) -> None:
        self.model, self.x, self.condition, self.start = model, x, condition, start
        self.separate_gradients = start is not None or len(model.latent_groups) == 1

    def log_start_and_ratio(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(log r(z), l(z) = log p(x, z) - log r(z)), each (M, B)."""
        log_pz, log_px_z = self.model.joint_terms(self.x, z, self.condition)
        if self.start is None:
            return log_pz, log_px_z
        log_r = self.start.log_prob(z)
        return log_r, log_pz + log_px_z - log_r

    def evaluate(self, z: Tensor, beta: float, any_beta: bool = True) -> PathPoint:
        """The point z (M, B, D) with its gradient, for any beta (`any_beta`, or where that
        costs nothing) or for `beta` alone, detached."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_r, ratio = self.log_start_and_ratio(z)  # (M, B) each
            if any_beta or self.separate_gradients:
                (grad_r,) = torch.autograd.grad(log_r.sum(), z, retain_graph=True)
                (grad_ratio,) = torch.autograd.grad(ratio.sum(), z)
                return PathPoint(z.detach(), log_r.detach(), ratio.detach(), beta,
                                 grad_r=grad_r, grad_ratio=grad_ratio)
            (grad,) = torch.autograd.grad((log_r + beta * ratio).sum(), z)
        return PathPoint(z.detach(), log_r.detach(), ratio.detach(), beta, grad=grad)


def hmc_transition(path: AnnealingPath, point: PathPoint, beta: float, step: Tensor,
                   leapfrog: int, generator: torch.Generator) -> tuple[PathPoint, Tensor]:
    """One HMC transition leaving f_beta invariant, from `point` (chains z (M, B, D)) with
    per-chain step sizes `step` (M, B, 1): (the new point, the acceptance probabilities
    (M, B))."""
    grad = point.grad_at(beta)
    if grad is None:
        point = path.evaluate(point.z, beta)
        grad = point.grad_at(beta)
    assert grad is not None
    z = point.z
    momentum0 = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    momentum = momentum0 + 0.5 * step * grad  # (M, B, D), a half step
    proposal = point
    for i in range(leapfrog):
        proposal = path.evaluate(proposal.z + step * momentum, beta, i + 1 == leapfrog)
        grad = proposal.grad_at(beta)
        assert grad is not None
        momentum = momentum + (step if i + 1 < leapfrog else 0.5 * step) * grad
    kinetic0 = 0.5 * momentum0.pow(2).sum(-1)
    kinetic = 0.5 * momentum.pow(2).sum(-1)
    log_accept = ((proposal.log_f(beta) - kinetic) - (point.log_f(beta) - kinetic0)
                  ).clamp(max=0.0)  # (M, B)
    log_accept = torch.nan_to_num(log_accept, nan=-math.inf)  # a diverged trajectory: reject
    u = torch.rand(log_accept.shape, generator=generator, device=z.device, dtype=z.dtype)
    return point.where(u.log() < log_accept, proposal), log_accept.exp()


def anneal(path: AnnealingPath, z0: Tensor, betas: Tensor, leapfrog: int,
           generator: torch.Generator, on_step: Callable[[], None] | None = None
           ) -> AnnealingResult:
    """Run M chains z0 (M, B, D) along `betas` (b_0, ..., b_T): log w += (b_t - b_{t-1}) l(z)
    and an HMC transition at b_t for t < T. Increasing betas from 0 give forward AIS (E[w] =
    p(x)); decreasing ones from 1, started at exact posterior samples, reverse AIS (E[w] =
    1/p(x))."""
    z = z0.detach()
    log_w = torch.zeros(z.shape[:-1], dtype=torch.float64, device=z.device)  # (M, B)
    step = torch.full((*z.shape[:-1], 1), INITIAL_STEP, dtype=z.dtype, device=z.device)
    average = torch.full(z.shape[:-1], TARGET_ACCEPTANCE, dtype=z.dtype, device=z.device)
    accepted, transitions = 0.0, 0
    steps = len(betas) - 1
    if steps == 1:  # no transition: l(z_0) alone, without gradients
        point = PathPoint(z, *path.log_start_and_ratio(z), beta=float(betas[0]))
    else:
        point = path.evaluate(z, float(betas[1]))
    for t in range(1, steps + 1):
        log_w += (betas[t] - betas[t - 1]) * point.ratio.double()
        if t < steps:
            point, acceptance = hmc_transition(path, point, float(betas[t]), step, leapfrog,
                                               generator)
            average = 0.9 * average + 0.1 * acceptance
            step = (step * torch.where(average > TARGET_ACCEPTANCE, 1.02, 0.98).unsqueeze(-1)
                    ).clamp(MIN_STEP, MAX_STEP)
            accepted += float(acceptance.double().mean())
            transitions += 1
        if on_step is not None:
            on_step()
    return AnnealingResult(log_w, accepted / transitions if transitions else float("nan"))


@dataclass
class AISLogLikelihood(LogLikelihood):
    """Per-example AIS estimates of log p(x) (`LogLikelihood`, `k` the chains), with the
    settings and the mean acceptance rate of the HMC transitions."""

    steps: int = 1
    leapfrog: int = 1
    start: str = "prior"
    acceptance: float = float("nan")


def check_ais_options(model: LatentVariableModel, steps: int, chains: int, leapfrog: int,
                      start: str = "prior") -> None:
    """A clear one-line error for settings or a model that AIS cannot run on."""
    for name, value in (("steps", steps), ("chains", chains), ("leapfrog steps", leapfrog)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"AIS {name} must be a positive integer, got {value!r}")
    if start not in STARTS:
        raise ConfigError(f"unknown AIS start {start!r}; choose from: {', '.join(STARTS)}")
    if not model.has_joint_density:
        raise NoLikelihoodError(f"AIS needs a density over continuous latents, log p(x, z); "
                                f"this model ({type(model).__name__}) has none")


def chunk_sizes(chains: int, n: int, chunk_rows: int) -> tuple[int, int]:
    """(examples, chains) per chunk, their product at most `chunk_rows` where it can be."""
    chunk_rows = max(1, chunk_rows)
    if chains >= chunk_rows:
        return 1, -(-chains // -(-chains // chunk_rows))
    return max(1, min(n, chunk_rows // chains)), chains


@torch.no_grad()
def ais_log_likelihood(model: LatentVariableModel, x: Tensor, steps: int = 1000,
                       chains: int = 16, leapfrog: int = 10, start: Start = "prior",
                       chunk_rows: int = DEFAULT_CHUNK_ROWS, seed: int = 0,
                       progress: bool = False, condition: Any = None) -> AISLogLikelihood:
    """The AIS estimate of log p(x) for every example of x (N, *event_shape), in nats (for a
    conditional model, log p(x|c) given class labels `condition` (N,)): `steps` annealing
    steps T, `chains` M per example, `leapfrog` steps L per HMC transition, from the prior or
    from q(z|x) (`start`). Each estimate is logmeanexp over its chains, a stochastic lower
    bound of log p(x) that tightens as T grows.

    Example:
        >>> ll = ais_log_likelihood(model, x_test[:100], steps=1000, chains=16)
        >>> ll.mean, ll.stderr, ll.acceptance
    """
    from tqdm import tqdm

    check_ais_options(model, steps, chains, leapfrog, start)
    model.eval()
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    generator = torch.Generator(device=device).manual_seed(seed)
    betas = sigmoid_schedule(steps)
    batch, chain_chunk = chunk_sizes(chains, len(x), chunk_rows)
    pieces = len(range(0, len(x), batch)) * len(range(0, chains, chain_chunk))
    out = torch.empty(len(x), dtype=torch.float64)
    acceptances: list[float] = []
    bar = tqdm(total=pieces * steps, disable=None if progress else True,
               desc=f"AIS, T={steps}, M={chains}", leave=False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # gradients in z only: no graph through the weights
        p.requires_grad_(False)
    try:
        for first in range(0, len(x), batch):
            xb = x[first:first + batch].to(device=device, dtype=dtype)
            labels = condition_rows(condition, first, batch)
            c = model.as_condition(labels, len(xb), "AIS")
            r = _start_distribution(model, xb, labels, start)
            total = torch.full((len(xb),), -math.inf, dtype=torch.float64, device=device)
            for done in range(0, chains, chain_chunk):
                m = min(chain_chunk, chains - done)
                z0 = _draw_start(model, r, m, len(xb), generator)  # (m, B, D)
                result = anneal(AnnealingPath(model, xb, c, r), z0, betas, leapfrog, generator,
                                lambda: bar.update(1))
                total = torch.logaddexp(total, torch.logsumexp(result.log_w, dim=0))
                acceptances.append(result.acceptance)
            out[first:first + len(xb)] = (total - math.log(chains)).cpu()
    finally:
        bar.close()
        for p in trainable:
            p.requires_grad_(True)
    return AISLogLikelihood(out, chains, steps, leapfrog, start,
                            sum(acceptances) / len(acceptances))


def _start_distribution(model: LatentVariableModel, x: Tensor, labels: Any,
                        start: str) -> Distribution | None:
    """None for the prior; q(z|x) over (B, D) for `posterior`, refused where it has no density
    at any z (a flow posterior without an inverse)."""
    if start == "prior":
        return None
    q = model.encode(x, condition=labels)
    try:
        q.log_prob(q.mean.unsqueeze(0))
    except (NotImplementedError, TypeError, ValueError) as e:
        raise ConfigError(f"AIS from the posterior needs log q(z|x) at any z; "
                          f"{type(q).__name__} has none ({e}); start from the prior") from None
    return q


def _draw_start(model: LatentVariableModel, start: Distribution | None, chains: int,
                batch: int, generator: torch.Generator) -> Tensor:
    """z_0 (chains, B, D) from the prior (`sample_latents`) or from `start`."""
    if start is None:
        return model.sample_latents(chains * batch, generator).view(chains, batch, -1)
    noise = torch.randn(chains, batch, model.latent_dim, generator=generator,
                        device=generator.device)
    return rsample_and_log_prob(start, noise)[0]


def ais_report(result: AISLogLikelihood) -> dict[str, Any]:
    """The AIS keys of `vaekit evaluate --json` (docs/ais.md)."""
    return {"ais_log_likelihood": result.mean, "ais_nll": -result.mean,
            "ais_nll_stderr": result.stderr, "ais_acceptance": result.acceptance,
            "ais_steps": result.steps, "ais_chains": result.k, "ais_leapfrog": result.leapfrog,
            "ais_start": result.start}
