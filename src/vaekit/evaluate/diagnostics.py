"""What the ELBO hides: KL per latent dimension and group, active units and the amortization
gap."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from vaekit.distributions import diagonal_normal
from vaekit.errors import VaekitError
from vaekit.evaluate.elbo import condition_rows, dataset_elbo
from vaekit.models import VAE, LatentVariableModel
from vaekit.objectives import elbo
from vaekit.posteriors import LOG_VAR_RANGE

#: Burda et al. (2016), section 5.2: unit j is active if Cov_x(E_q[z_j | x]) > 0.01.
ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def posterior_means(model: LatentVariableModel, x: Tensor, batch_size: int = 1000,
                    condition: Any = None) -> Tensor:
    """E_q[z|x] (N, latent_dim), in chunks (a conditional model: given labels (N,))."""
    device = next(model.parameters()).device
    means = [model.encode(x[i:i + batch_size].to(device),
                          condition=condition_rows(condition, i, batch_size)).mean
             for i in range(0, len(x), batch_size)]
    return torch.cat([m.float().cpu() for m in means])


def active_units(model: LatentVariableModel, x: Tensor,
                 threshold: float = ACTIVE_UNIT_THRESHOLD, condition: Any = None) -> int:
    """The number of latent dimensions whose posterior mean varies across the data."""
    return sum(active_units_per_group(model, x, threshold, condition))


def active_units_per_group(model: LatentVariableModel, x: Tensor,
                           threshold: float = ACTIVE_UNIT_THRESHOLD,
                           condition: Any = None) -> list[int]:
    """Active units (Cov_x(E_q[z_j | x]) > threshold) in each latent group, bottom first."""
    mu = posterior_means(model, x, condition=condition)
    if len(mu) < 2:
        return [0] * len(model.latent_groups)
    active = mu.var(dim=0) > threshold
    return [int(a.sum()) for a in active.split(model.latent_groups)]


def kl_per_dimension(model: LatentVariableModel, x: Tensor, seed: int = 0,
                     elbo_terms: dict[str, Tensor] | None = None,
                     condition: Any = None) -> Tensor | None:
    """Mean over x of the KL of each latent dimension (nats), where the model's KL splits into
    dimensions in closed form (a factorised Gaussian q and p; a hierarchy whose groups are single
    dimensions); None otherwise. Dimensions near 0 nats are collapsed (unused). `elbo_terms`:
    `dataset_elbo(model, x, seed=seed, units=True)`, where the caller has it already."""
    if elbo_terms is None:
        elbo_terms = dataset_elbo(model, x, seed=seed, units=True, condition=condition)
    units = elbo_terms.get("kl_units")
    if units is None or units.shape[-1] != model.latent_dim:
        return None
    return units.double().mean(0).float() if len(units) else torch.zeros(model.latent_dim)


def amortization_gap(model: LatentVariableModel, x: Tensor, steps: int = 500, lr: float = 0.02,
                     samples: int = 16, eval_samples: int = 1000,
                     seed: int = 0) -> dict[str, float]:
    """ELBO(q*) - ELBO(q_encoder) (Cremer, Li & Duvenaud 2018): q* is a separate diagonal
    Gaussian per example, fitted by Adam on the ELBO with the decoder frozen and started from
    the encoder's answer. Both ELBOs are estimated with the same `eval_samples` noise."""
    if not isinstance(model, VAE) or model.condition_dim:
        raise VaekitError("the amortization gap is measured for an unconditional one-layer "
                          "model (--model vae), whose posterior is one diagonal Gaussian")
    device = next(model.parameters()).device
    x = x.to(device)
    model.eval()
    with torch.no_grad():
        q0 = model.encode(x)
        prior = model.prior(model.posterior)
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
            loss = -elbo(model.terms(x, noise=noise, cache=(q, prior)))["elbo"].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    with torch.no_grad():
        q_star = diagonal_normal(loc, log_var.clamp(*LOG_VAR_RANGE))
        noise = model.draw_noise(eval_samples, len(x), generator=generator, device=device)
        amortized = elbo(model.terms(x, noise=noise, cache=(q0, prior)))["elbo"]
        optimal = elbo(model.terms(x, noise=noise, cache=(q_star, prior)))["elbo"]
    gap = optimal - amortized
    return {"elbo_amortized": float(amortized.mean()), "elbo_optimal": float(optimal.mean()),
            "amortization_gap": float(gap.mean()),
            "amortization_gap_stderr": float(gap.std() / len(gap) ** 0.5) if len(gap) > 1
            else float("nan"), "n": len(x)}
