"""Exact evaluation of a small categorical model by enumerating every code z: K^N of them for N
variables of K classes (3 variables of 3 classes: 27).

    ELBO(x) = sum_z q(z|x) log p(x|z) - KL(q(z|x) || p(z)),
    log p(x) = logsumexp_z [log p(x|z) + log p(z)],

both differentiable in the model's parameters, so that `torch.autograd.grad` of the ELBO is the
exact gradient every estimator approximates (benchmarks/discrete_gradients.py, and the tests of
the discrete evaluation and of reinforce-loo's unbiasedness).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor

from vaekit.errors import DataError
from vaekit.models.categorical import CategoricalVAE

#: The most codes `all_codes` enumerates.
MAX_CODES = 100_000


def all_codes(model: CategoricalVAE) -> Tensor:
    """Every code as N one-hot vectors, (K^N, N, K), in lexicographic order of the classes."""
    n, k = model.variables, model.categories
    if k ** n > MAX_CODES:
        raise DataError(f"enumeration: {k}^{n} codes is more than {MAX_CODES:,}; exact "
                        "evaluation is for small categorical models")
    classes = torch.tensor(list(itertools.product(range(k), repeat=n)))  # (K^N, N)
    return F.one_hot(classes, k).to(model.prior_logits.dtype).to(model.prior_logits.device)


def exact_terms(model: CategoricalVAE, x: Tensor) -> dict[str, Tensor]:
    """Each example's exact discrete ELBO, reconstruction E_q[log p(x|z)], KL and log p(x),
    each (B,), for x (B, *event_shape) in the data's units (differentiable)."""
    codes = all_codes(model)  # (C, N, K)
    y = model.to_model_units(x)
    log_q = model.logits(y)  # (B, N, K)
    log_prior = model.log_prior()  # (N, K)
    params = model.decoder_params(codes.flatten(-2))  # (C, *param_shape)
    params = params.unsqueeze(1).expand(-1, len(x), *params.shape[1:])  # (C, B, *param_shape)
    log_px_z = model.log_px_z(params, y)  # (C, B)
    log_qz = torch.einsum("cnk,bnk->cb", codes, log_q)  # (C, B)
    log_pz = (codes * log_prior).sum((-2, -1))  # (C,)
    q = log_qz.exp()  # (C, B)
    reconstruction = (q * log_px_z).sum(0)
    kl = (log_q.exp() * (log_q - log_prior)).sum((-2, -1))  # (B,)
    return {"elbo": reconstruction - kl, "reconstruction": reconstruction, "kl": kl,
            "log_px": torch.logsumexp(log_px_z + log_pz.unsqueeze(1), 0)}


def flat_gradient(loss: Tensor, params: list[torch.nn.Parameter]) -> Tensor:
    """d loss / d params, concatenated into one vector (zeros where a parameter is unused)."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                      for g, p in zip(grads, params, strict=True)])


def exact_gradient(model: CategoricalVAE, x: Tensor) -> Tensor:
    """The exact gradient of the mean discrete ELBO over x, by enumeration, as one vector."""
    return flat_gradient(exact_terms(model, x)["elbo"].mean(), list(model.parameters()))


def estimated_gradients(model: CategoricalVAE, x: Tensor, k: int, repeats: int,
                        generator: torch.Generator) -> Tensor:
    """`repeats` independent estimates (repeats, params) of the same gradient from the model's
    training estimator with k samples per example: d/dtheta of the objective that training
    maximises, mean_k log p(x|z_k) - KL (the module in training mode; its step is restored)."""
    from vaekit.objectives import elbo

    params, was_training, steps = list(model.parameters()), model.training, model.steps.clone()
    model.train()
    try:
        out = []
        for _ in range(repeats):
            noise = model.draw_noise(k, len(x), generator=generator, device=x.device)
            out.append(flat_gradient(elbo(model.terms(x, noise=noise))["elbo"].mean(), params))
        return torch.stack(out)
    finally:
        model.train(was_training)
        model.steps.copy_(steps)
