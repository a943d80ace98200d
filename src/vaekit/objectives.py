"""Objectives as plain functions of the log-weight terms (see `VAE.terms`).

All values are per example, in nats, summed over data dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaekit.models.vae import LogWeightTerms


def elbo(t: LogWeightTerms, beta: float | Tensor = 1.0) -> dict[str, Tensor]:
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) (Kingma & Welling 2014, eq. 3).

    The KL is analytic where torch registers a closed form (Gaussian q, Gaussian p; appendix B)
    and the Monte Carlo estimate mean_k[log q(z_k|x) - log p(z_k)] otherwise. `objective` is
    reconstruction - beta * KL, what training maximises (beta < 1 during KL warm-up).
    """
    reconstruction = t.log_px_z.mean(0)  # (B,)
    kl = t.kl if t.kl is not None else (t.log_qz - t.log_pz).mean(0)
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl,
            "objective": reconstruction - beta * kl}


def iwae_bound(log_w: Tensor) -> Tensor:
    """log (1/k) sum_k w_k, the importance-weighted bound (Burda et al. 2016, eq. 8): shape (B,)
    from log-weights (k, B). With k=1 it is the ELBO's Monte Carlo estimate; it grows with k
    towards log p(x)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])
