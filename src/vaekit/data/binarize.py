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


def dequantize(x: Tensor, bin_width: float, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization of data on the grid {0, 1/(L-1), ..., 1} with L = 1/bin_width
    levels: level k becomes (k + u)/L, u ~ U(0, 1), so each level fills its own bin of width
    1/L. A continuous density p on the result gives log P(k) >= E_u log p((k + u)/L) - D log L
    (Theis et al. 2016), which is what bits/dim reports for such models."""
    levels = round(1.0 / bin_width)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x * (levels - 1) + u) / levels


def dequantize_fixed(x: Tensor, bin_width: float, seed: int = EVAL_BINARIZATION_SEED) -> Tensor:
    return dequantize(x, bin_width, torch.Generator(device=x.device).manual_seed(seed))


def binarize_fixed(x: Tensor, seed: int = EVAL_BINARIZATION_SEED) -> Tensor:
    """The same binarization every time: for validation and test splits."""
    return binarize(x, torch.Generator(device=x.device).manual_seed(seed))
