"""What the ELBO hides: KL per latent dimension, active units and the amortization gap."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Independent, Normal, kl_divergence

from vaekit.distributions import diagonal_normal
from vaekit.errors import VaekitError
from vaekit.models import VAE
from vaekit.objectives import elbo
from vaekit.posteriors import LOG_VAR_RANGE

#: Burda et al. (2016), section 5.2: unit j is active if Cov_x(E_q[z_j | x]) > 0.01.
ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def posterior_means(model: VAE, x: Tensor, batch_size: int = 1000) -> Tensor:
    device = next(model.parameters()).device
    return torch.cat([model.encode(x[i:i + batch_size].to(device)).mean.float().cpu()
                      for i in range(0, len(x), batch_size)])


def active_units(model: VAE, x: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """The number of latent dimensions whose posterior mean varies across the data."""
    mu = posterior_means(model, x)
    if len(mu) < 2:
        return 0
    return int((mu.var(dim=0) > threshold).sum())


@torch.no_grad()
def kl_per_dimension(model: VAE, x: Tensor, batch_size: int = 1000) -> Tensor | None:
    """Mean over x of KL(q(z_j|x) || p(z_j)) for each latent dimension j (nats), where both are
    factorised Gaussians; None otherwise. Dimensions near 0 nats are collapsed (unused)."""
    device = next(model.parameters()).device
    prior = model.prior(model.posterior)
    if not (isinstance(prior, Independent) and isinstance(prior.base_dist, Normal)):
        return None
    total = torch.zeros(model.latent_dim, dtype=torch.float64)
    for i in range(0, len(x), batch_size):
        q = model.encode(x[i:i + batch_size].to(device))
        if not (isinstance(q, Independent) and isinstance(q.base_dist, Normal)):
            return None
        total += kl_divergence(q.base_dist, prior.base_dist).double().sum(0).cpu()
    return (total / max(len(x), 1)).float()


def amortization_gap(model: VAE, x: Tensor, steps: int = 500, lr: float = 0.02,
                     samples: int = 16, eval_samples: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """ELBO(q*) - ELBO(q_encoder) (Cremer, Li & Duvenaud 2018): q* is a separate diagonal
    Gaussian per example, fitted by Adam on the ELBO with the decoder frozen and started from
    the encoder's answer. Both ELBOs are estimated with the same `eval_samples` noise."""
    device = next(model.parameters()).device
    x = x.to(device)
    model.eval()
    with torch.no_grad():
        q0 = model.encode(x)
    if not (isinstance(q0, Independent) and isinstance(q0.base_dist, Normal)):
        raise VaekitError("the amortization gap is measured for a diagonal Gaussian posterior; "
                          "this model's posterior is a flow")
    loc = q0.base_dist.loc.detach().clone().requires_grad_(True)
    log_var = (2 * q0.base_dist.scale.log()).detach().clone().requires_grad_(True)
    for p in model.parameters():
        p.requires_grad_(False)
    generator = torch.Generator(device=device).manual_seed(seed)
    opt = torch.optim.Adam([loc, log_var], lr=lr)
    try:
        for _ in range(steps):
            q = diagonal_normal(loc, log_var.clamp(*LOG_VAR_RANGE))
            noise = model.draw_noise(samples, len(x), generator=generator, device=device)
            loss = -elbo(model.terms(x, noise=noise, q=q))["elbo"].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    with torch.no_grad():
        q_star = diagonal_normal(loc, log_var.clamp(*LOG_VAR_RANGE))
        noise = model.draw_noise(eval_samples, len(x), generator=generator, device=device)
        amortized = elbo(model.terms(x, noise=noise, q=q0))["elbo"]
        optimal = elbo(model.terms(x, noise=noise, q=q_star))["elbo"]
    gap = optimal - amortized
    return {"elbo_amortized": float(amortized.mean()), "elbo_optimal": float(optimal.mean()),
            "amortization_gap": float(gap.mean()),
            "amortization_gap_stderr": float(gap.std() / len(gap) ** 0.5) if len(gap) > 1
            else float("nan"), "n": len(x)}
