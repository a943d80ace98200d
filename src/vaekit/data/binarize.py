"""Binarization of [0, 1] data: x_bin ~ Bernoulli(x), the standard for MNIST likelihoods."""

from __future__ import annotations

import torch
from torch import Tensor

#: Seed of the one-off binarization of validation and test data, so their numbers compare
#: across runs (Burda et al.'s protocol binarizes the test set once).
EVAL_BINARIZATION_SEED = 1234


def binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One Bernoulli draw per value: P(1) = x."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (u < x).to(x.dtype)


def binarize_fixed(x: Tensor, seed: int = EVAL_BINARIZATION_SEED) -> Tensor:
    """The same binarization every time: for validation and test splits."""
    return binarize(x, torch.Generator(device=x.device).manual_seed(seed))
