"""Normalizing flows: invertible maps with tractable log-determinants, as posteriors' refinements
and as priors.

A flow *module* holds parameters and, given an optional context (the encoder's features), returns
a *step*: a bound transform with `forward(z) -> (z', log|det dz'/dz|)` and `inverse(z') -> z`.
`FlowDistribution` pushes a base distribution through a list of steps; it is a
`torch.distributions.Distribution` with `rsample` and `log_prob`.

Layer: distributions, networks, flows; it may import the foundation, `vaekit.data` and
`vaekit.distributions` (see tests/test_architecture.py).
"""

from vaekit.flows.base import FlowDistribution, FlowStep
from vaekit.flows.coupling import AffineCoupling
from vaekit.flows.iaf import MADE, InverseAutoregressiveFlow
from vaekit.flows.planar import PlanarFlow

FLOWS = {"planar": PlanarFlow, "iaf": InverseAutoregressiveFlow, "realnvp": AffineCoupling}

__all__ = ["FLOWS", "MADE", "AffineCoupling", "FlowDistribution", "FlowStep",
           "InverseAutoregressiveFlow", "PlanarFlow"]
