"""Priors p(z): the model's own (standard normal, learned mixture, VampPrior, RealNVP flow, in
`standard`), and the densities fitted to a trained run's codes afterwards (Gaussian, mixture,
flow and diffusion, in `fitted`, with the diffusion network in `diffusion`). Each is a module
whose `forward` returns a `torch.distributions` object over z. Layer: priors and posteriors;
it may import the foundation, `vaekit.distributions`, `vaekit.flows`, `vaekit.nets` and
`vaekit.posteriors`, never models, training or anything above (see tests/test_architecture.py).
"""

from vaekit.priors.standard import (
    PRIORS,
    FlowPrior,
    MixturePrior,
    StandardNormalPrior,
    VampPrior,
    build_prior,
)

__all__ = ["PRIORS", "FlowPrior", "MixturePrior", "StandardNormalPrior", "VampPrior",
           "build_prior"]
