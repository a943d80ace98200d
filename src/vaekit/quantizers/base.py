"""The quantizer's interface, and the statistics every epoch reports of its codes."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class Quantized(NamedTuple):
    """A quantizer's output for z_e (B, D, *grid)."""

    #: the codes (B, D, *grid): forward, the code space's vectors; backward, z_e's gradient
    codes: Tensor
    #: each position's index in the code space, (B, *grid), int64 in [0, codebook_size)
    indices: Tensor
    #: the auxiliary loss of each example (B,): commitment (and codebook) terms, or zeros
    aux_loss: Tensor


class Quantizer(nn.Module):
    """Maps z_e (B, D, *grid) to a `Quantized` (`forward`), and indices back to codes
    (`lookup`). `code_dim` is D; `codebook_size` the number of codes."""

    code_dim: int
    codebook_size: int

    def forward(self, z_e: Tensor) -> Quantized:  # pragma: no cover - the interface
        raise NotImplementedError

    def lookup(self, indices: Tensor) -> Tensor:
        """The codes (B, D, *grid) of indices (B, *grid)."""
        raise NotImplementedError


def code_statistics(indices: Tensor, codebook_size: int) -> dict[str, float]:
    """How a batch of indices uses the code space: `usage`, the fraction of codes used at least
    once, and `perplexity` = exp(H(p)) of the codes' frequencies p (codebook_size when every
    code is used equally, 1 when one code takes all)."""
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).double()
    p = counts / counts.sum().clamp_min(1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum()
    return {"usage": float((counts > 0).double().mean()), "perplexity": float(entropy.exp())}
