"""Objectives as plain functions of the log-weight terms that every model returns
(`vaekit.objectives.terms`; `LatentVariableModel.terms`).

All values are per example, in nats, summed over data dimensions.

Layer: the log-weight terms and the objectives over them, just below the configuration and the
models that return the terms; it may import the parts below (distributions, priors, posteriors)
and the foundation, never a model (see tests/test_architecture.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from vaekit.objectives.terms import LogWeightTerms


def elbo(t: LogWeightTerms) -> dict[str, Tensor]:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) (Kingma & Welling 2014, eq. 3).

    The KL is analytic where torch registers a closed form (Gaussian q, Gaussian p; appendix B),
    analytic up to a low-variance Monte Carlo correction for a flow posterior on a Gaussian
    base, and the estimate mean_k[log q(z_k|x) - log p(z_k)] otherwise
    (`LogWeightTerms.kl_estimate`).
    """
    reconstruction = t.log_px_z.mean(0)  # (B,)
    kl = t.kl_estimate
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl}


def iwae_bound(log_w: Tensor) -> Tensor:
    """log (1/k) sum_k w_k, the importance-weighted bound (Burda et al. 2016, eq. 8): shape (B,)
    from log-weights (k, B). With k=1 it is the ELBO's Monte Carlo estimate; it grows with k
    towards log p(x)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def training_loss(t: LogWeightTerms, objective: str = "elbo", beta: float | Tensor = 1.0,
                  free_bits: float = 0.0,
                  global_mean: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """The minibatch loss that training minimises (a scalar):

    - `elbo`: -(E[log p(x|z)] - beta * KL), beta < 1 during warm-up (Bowman et al. 2016), > 1
      for a beta-VAE (Higgins et al. 2017). With free bits lambda (Kingma et al. 2016, eq. 15)
      each unit's KL (`LogWeightTerms.kl_units`: a dimension of a one-layer model, a group of a
      hierarchical one), averaged over the minibatch, costs max(lambda, KL_j).
    - `iwae`: -log (1/k) sum_k w_k (Burda et al. 2016), with k = the samples in `t`.

    A model's auxiliary loss (`t.aux_loss`) is added to either.

    Under DDP `global_mean` maps this process's minibatch means to the whole global batch's
    (an all-reduce, no gradient): which dimensions are above the free-bits floor is decided on
    the global batch, so N processes train exactly as one.
    """
    loss = _objective(t, objective, beta, free_bits, global_mean)
    return loss if t.aux_loss is None else loss + t.aux_loss


def _objective(t: LogWeightTerms, objective: str, beta: float | Tensor, free_bits: float,
               global_mean: Callable[[Tensor], Tensor] | None) -> Tensor:
    if objective == "iwae":
        return -iwae_bound(t.log_w).mean()
    if free_bits > 0:
        per_unit = t.kl_units()
        if per_unit is not None:
            kl = _floored(per_unit.mean(0), free_bits, global_mean).sum()
        else:  # no per-unit KL: the same floor, applied to the total
            kl = _floored(t.kl_estimate.mean(), free_bits * t.units, global_mean)
        return beta * kl - t.log_px_z.mean()
    # The mean over (k, B) of beta KL_b - log p(x_b|z_kb), in as few ops as possible: at
    # batch 20 each op is about 1% of a step.
    kl = t.kl_estimate
    if isinstance(beta, Tensor) or beta != 1:
        kl = beta * kl
    return (kl - t.log_px_z).mean()


def _floored(mean: Tensor, floor: float,
             global_mean: Callable[[Tensor], Tensor] | None) -> Tensor:
    """max(floor, mean), elementwise, with the comparison made on the global batch's mean."""
    reference = mean if global_mean is None else global_mean(mean.detach())
    return torch.where(reference > floor, mean, torch.full_like(mean, floor))
