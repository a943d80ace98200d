"""Finite scalar quantisation (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
Simple"): each of D = len(levels) dimensions is bounded and rounded to one of L_d levels,

    b_d = tanh(z_d + s_d) h_d - o_d,  h_d = (L_d - 1)(1 - eps) / 2,  o_d = 0.5 if L_d is even,
    q_d = round(b_d) / floor(L_d / 2)   (straight-through: the gradient of b_d),

with s_d = atanh(o_d / h_d) centring the even grids on a level (L_d = 2 is not shifted: its two
levels split at z_d = 0). The code space is the product of the
levels, prod_d L_d codes, indexed in mixed radix. There is no codebook to learn, so none to
collapse, and no auxiliary loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from vaekit.errors import ConfigError
from vaekit.quantizers.base import Quantized, Quantizer

_EPS = 1e-3  # keeps tanh's bound strictly inside the outermost levels


class FiniteScalarQuantizer(Quantizer):
    """FSQ with `levels` (L_1, ..., L_D), each an integer >= 2 (see the module's docstring)."""

    levels: Tensor
    radix: Tensor

    def __init__(self, levels: Sequence[int] = (8, 5, 5, 5)) -> None:
        super().__init__()
        levels = tuple(levels)
        if not levels or any(isinstance(v, bool) or not isinstance(v, int) or v < 2
                             for v in levels):
            raise ConfigError(f"--levels must be integers >= 2 (a dimension of one level "
                              f"carries nothing), got {','.join(map(str, levels)) or 'none'}")
        self.code_dim = len(levels)
        self.codebook_size = math.prod(levels)
        self.register_buffer("levels", torch.tensor(levels, dtype=torch.float64),
                             persistent=False)
        radix = [math.prod(levels[:d]) for d in range(len(levels))]
        self.register_buffer("radix", torch.tensor(radix, dtype=torch.int64), persistent=False)

    def _per_dim(self, value: Tensor, like: Tensor) -> Tensor:
        """A per-dimension constant (D,) as (1, D, 1, ...), broadcasting against `like`."""
        return value.to(like.dtype).view(1, -1, *([1] * (like.dim() - 2)))

    def bound(self, z_e: Tensor) -> Tensor:
        """b = tanh(z + s) h - o, inside (-floor(L/2) - 0.5, floor(L/2) + 0.5) per dimension."""
        levels = self._per_dim(self.levels, z_e)
        half = (levels - 1) * (1 - _EPS) / 2
        offset = torch.where(levels % 2 == 0, 0.5, 0.0)
        ratio = offset / half  # >= 1 only for L = 2, whose two levels split at z = 0 unshifted
        shift = torch.where(ratio < 1, torch.atanh(ratio.clamp(max=0.5)), 0.0)
        return torch.tanh(z_e + shift) * half - offset

    def forward(self, z_e: Tensor) -> Quantized:
        if z_e.dim() < 2 or z_e.shape[1] != self.code_dim:
            raise ValueError(f"expected z_e of shape (B, {self.code_dim}, ...), got "
                             f"{tuple(z_e.shape)}")
        bounded = self.bound(z_e)
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through
        width = self._per_dim(torch.div(self.levels, 2, rounding_mode="floor"), z_e)
        codes = rounded / width  # (B, D, *grid), in [-1, 1]
        digits = (bounded.round() + width).long()  # (B, D, *grid), in [0, L_d)
        radix = self.radix.view(1, -1, *([1] * (z_e.dim() - 2)))
        indices = (digits * radix).sum(1)  # (B, *grid)
        return Quantized(codes, indices, z_e.new_zeros(z_e.shape[0]))

    def lookup(self, indices: Tensor) -> Tensor:
        ones = [1] * (indices.dim() - 1)
        levels = self.levels.long().view(1, -1, *ones)
        digits = indices.unsqueeze(1) // self.radix.view(1, -1, *ones) % levels  # (B, D, *grid)
        width = torch.div(levels, 2, rounding_mode="floor")
        return (digits - width).to(torch.get_default_dtype()) / width
