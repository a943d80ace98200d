"""The bias and variance of each categorical estimator's gradient, against the exact gradient of
the discrete ELBO computed by enumerating every code.

The model: 3 categorical variables of 3 classes (27 codes), an MLP of 16 hidden units each
way, Bernoulli p(x|z) on 6 binary vectors of 8 pixels (fixed seeds). For each estimator, R
independent estimates g_r of the gradient of the mean ELBO (k samples per example) give

    cosine     = cos(mean_r g_r, g_exact),
    rel. error = ||mean_r g_r - g_exact|| / ||g_exact||,
    bias / se  = ||mean_r g_r - g_exact||^2 / sum_j Var(g_j) / R   (about 1 if unbiased),
    rel. std   = sqrt(sum_j Var(g_j)) / ||g_exact||   (one estimate's spread).

Run: python benchmarks/discrete_gradients.py [--repeats 3000] [--k 4]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from vaekit import Config
from vaekit.evaluate.enumerate import estimated_gradients, exact_gradient
from vaekit.models import CategoricalVAE, build_model

#: (estimator, tau) rows of the table; tau is the relaxation's, held constant
ROWS = [("gumbel", 0.1), ("gumbel", 0.5), ("gumbel", 1.0), ("gumbel", 2.0),
        ("straight-through", 0.5), ("straight-through", 1.0), ("reinforce-loo", None)]


def tiny_model(seed: int = 0) -> CategoricalVAE:
    torch.manual_seed(seed)
    config = Config(model="categorical", latent_dim=3, hidden=(16,), iw_samples=4,
                    model_options={"categorical": {"categories": 3}}).validate()
    model = build_model(config, (8,))
    assert isinstance(model, CategoricalVAE)
    with torch.no_grad():  # posteriors far from uniform
        for p in model.parameters():
            p.mul_(3.0)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3000)
    parser.add_argument("--k", type=int, default=4, help="samples per example per estimate")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = tiny_model()
    x = torch.bernoulli(torch.full((6, 8), 0.4), generator=torch.Generator().manual_seed(1))
    exact = exact_gradient(model, x)
    print(f"exact gradient of the discrete ELBO by enumeration (27 codes): norm "
          f"{exact.norm():.4f}; {args.repeats} estimates each, k={args.k}")
    print(f"{'estimator':<18} {'tau':>5} {'cosine':>8} {'rel. error':>11} {'bias/se':>10} "
          f"{'rel. std':>9}")
    for estimator, tau in ROWS:
        options = dataclasses.replace(model.options, estimator=estimator, anneal_rate=0.0,
                                      temperature=tau or 1.0, temperature_min=tau or 1.0)
        model.options = options
        g = estimated_gradients(model, x, k=args.k, repeats=args.repeats,
                                generator=torch.Generator().manual_seed(0))
        mean, var = g.mean(0), g.var(0)
        error = (mean - exact).norm()
        cosine = torch.nn.functional.cosine_similarity(mean, exact, dim=0)
        ratio = error ** 2 / (var.sum() / len(g))
        print(f"{estimator:<18} {'-' if tau is None else f'{tau:g}':>5} {cosine:>8.4f} "
              f"{error / exact.norm():>11.4f} {ratio:>10.1f} "
              f"{var.sum().sqrt() / exact.norm():>9.3f}")


if __name__ == "__main__":
    main()
