"""Bidirectional Monte Carlo (Grosse et al. 2015; Wu et al. 2017, sec. 4): how far to trust AIS.

On data simulated from the model, (z*, x) with z* ~ p(z) and x ~ p(x|z*), z* is an exact sample
of the posterior p(z|x). Forward AIS from the prior (`ais_log_likelihood`) gives a stochastic
lower bound of log p(x); reverse AIS, started at z* and annealed from beta = 1 down to 0 with
the same kernels, has E[w] = 1/p(x), so -logmeanexp w is a stochastic upper bound. The true
log p(x) lies between them, and their gap bounds the error of forward AIS with the same settings
on such data; Wu et al. take it as the error on real data once the model fits them well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vaekit.errors import NoLikelihoodError
from vaekit.evaluate.ais import (
    AnnealingPath,
    ais_log_likelihood,
    anneal,
    check_ais_options,
    chunk_sizes,
    sigmoid_schedule,
)
from vaekit.evaluate.likelihood import DEFAULT_CHUNK_ROWS
from vaekit.models import LatentVariableModel


@dataclass
class BDMCBounds:
    """Per-example stochastic lower (forward AIS) and upper (reverse AIS) bounds of log p(x),
    each (N,) in nats, on the N simulated examples `x`, and each direction's mean acceptance
    rate."""

    x: Tensor
    lower: Tensor
    upper: Tensor
    steps: int
    chains: int
    leapfrog: int
    acceptance_forward: float
    acceptance_reverse: float

    @property
    def gap(self) -> float:
        """mean(upper) - mean(lower), nats: the most forward AIS can be off on such data."""
        return float(self.upper.double().mean() - self.lower.double().mean())


@torch.no_grad()
def simulate(model: LatentVariableModel, n: int, generator: torch.Generator
             ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(x (n, *event), z* (n, D), class labels (n,) or None): z* ~ p(z), x ~ p(x|z*, c), the
    classes of a conditional model in turn."""
    if not model.can_sample:
        raise NoLikelihoodError("BDMC simulates data from the model's prior; this model has none "
                                "to sample from")
    labels = torch.arange(n) % model.condition_dim if model.condition_dim else None
    z = model.sample_latents(n, generator)
    p_x = model.decode(z, condition=labels)
    device = z.device  # p(x|z) draws with torch's sampler, seeded from `generator`
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator,
                                            device=generator.device)))
        x = p_x.sample()
    return x, z, labels


@torch.no_grad()
def bdmc(model: LatentVariableModel, n: int = 100, steps: int = 1000, chains: int = 16,
         leapfrog: int = 10, chunk_rows: int = DEFAULT_CHUNK_ROWS, seed: int = 0,
         progress: bool = False) -> BDMCBounds:
    """Forward and reverse AIS bounds of log p(x) on n examples simulated from the model, with
    T = `steps`, M = `chains` and L = `leapfrog` in both directions (see the module docstring).

    Example:
        >>> b = bdmc(model, n=100, steps=1000)
        >>> b.lower.mean(), b.upper.mean(), b.gap
    """
    from tqdm import tqdm

    check_ais_options(model, steps, chains, leapfrog)
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    x, z_star, labels = simulate(model, n, generator)
    forward = ais_log_likelihood(model, x, steps, chains, leapfrog, chunk_rows=chunk_rows,
                                 seed=seed + 1, progress=progress, condition=labels)
    betas = sigmoid_schedule(steps).flip(0)  # 1 -> 0
    batch, _ = chunk_sizes(chains, n, chunk_rows)
    upper = torch.empty(n, dtype=torch.float64)
    acceptances: list[float] = []
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # gradients in z only
        p.requires_grad_(False)
    bar = tqdm(total=len(range(0, n, batch)) * steps, disable=None if progress else True,
               desc=f"reverse AIS, T={steps}, M={chains}", leave=False)
    try:
        for first in range(0, n, batch):
            xb, zb = x[first:first + batch], z_star[first:first + batch]
            c = model.as_condition(None if labels is None else labels[first:first + batch],
                                   len(xb), "BDMC")
            z0 = zb.unsqueeze(0).expand(chains, *zb.shape)  # (M, B, D): every chain from z*
            result = anneal(AnnealingPath(model, xb, c), z0, betas, leapfrog, generator,
                            lambda: bar.update(1))
            upper[first:first + len(xb)] = (math.log(chains)
                                            - torch.logsumexp(result.log_w, dim=0)).cpu()
            acceptances.append(result.acceptance)
    finally:
        bar.close()
        for p in trainable:
            p.requires_grad_(True)
    return BDMCBounds(x.cpu(), forward.per_example, upper, steps, chains, leapfrog,
                      forward.acceptance, sum(acceptances) / len(acceptances))


def bdmc_report(bounds: BDMCBounds) -> dict[str, Any]:
    """The `--bdmc` keys of `vaekit evaluate --json` (docs/ais.md)."""
    n = len(bounds.lower)
    return {
        "bdmc_n": n, "bdmc_steps": bounds.steps, "bdmc_chains": bounds.chains,
        "bdmc_leapfrog": bounds.leapfrog,
        "bdmc_lower": float(bounds.lower.double().mean()),
        "bdmc_upper": float(bounds.upper.double().mean()),
        "bdmc_gap": bounds.gap,
        "bdmc_gap_stderr": float((bounds.upper - bounds.lower).double().std() / math.sqrt(n))
        if n > 1 else float("nan"),
        "bdmc_acceptance_forward": bounds.acceptance_forward,
        "bdmc_acceptance_reverse": bounds.acceptance_reverse,
    }
