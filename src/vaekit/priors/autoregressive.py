"""An autoregressive prior over a grid of discrete codes: a small causal transformer,
`vaekit fit-prior RUN --kind autoregressive` for a VQ-VAE's frozen codes.

The codes c = (c_1, ..., c_G) of an image, in raster order, each in [0, K), get the exact
factorised probability

    log p(c) = sum_i log p(c_i | c_<i),   p(c_i | c_<i) = softmax(f(start, c_1, ..., c_{i-1}))_i,

where f is a decoder-only transformer (Vaswani et al. 2017) whose causal mask lets position i
see only the start token and the codes before it: the same factorisation PixelCNN uses (van den
Oord et al. 2016; the VQ-VAE paper fits a PixelCNN), but every position sees the whole past at
once, with no blind spot and no stack of masked convolutions to size for the grid. On the short
sequences of a VQ grid (G = 49 for 28x28 MNIST with two stride-2 stages) a two-layer
transformer of width 128 trains in minutes on a CPU. Its log p(c) is exact (a sum of G
categorical log-probabilities), so log p(x|c(x)) + log p(c(x)) stays a lower bound on log p(x),
and ancestral sampling draws c_1, then c_2 given c_1, and so on: G forward passes.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.errors import ConfigError, DataError


class CodeTransformer(nn.Module):
    """p(c) over `positions` codes of `categories` classes: a causal transformer of `depth`
    pre-norm layers, `width` channels and `heads` attention heads."""

    causal_mask: Tensor

    def __init__(self, positions: int, categories: int, width: int = 128, depth: int = 2,
                 heads: int = 4) -> None:
        super().__init__()
        for name, value, least in (("positions", positions, 1), ("categories", categories, 2),
                                   ("width", width, 1), ("depth", depth, 1),
                                   ("heads", heads, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"the autoregressive prior's {name} must be an integer >= "
                                  f"{least}, got {value!r}")
        if width % heads:
            raise ConfigError(f"the autoregressive prior's width {width} must be divisible by "
                              f"its heads {heads}")
        self.positions, self.categories = positions, categories
        self.embed = nn.Embedding(categories + 1, width)  # index K: the start token
        self.position = nn.Parameter(torch.zeros(positions, width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, categories)
        mask = torch.triu(torch.full((positions, positions), float("-inf")), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def codes(self, value: Tensor) -> Tensor:
        """Index sequences (B, G) int64 from values (..., G) that hold integers in [0, K)."""
        if value.dim() == 0 or value.shape[-1] != self.positions:
            raise DataError(f"the autoregressive prior takes code grids of {self.positions} "
                            f"indices, got shape {tuple(value.shape)}")
        if value.is_floating_point():
            bad = (value != value.round()) | (value < 0) | (value >= self.categories)
        else:
            bad = (value < 0) | (value >= self.categories)
        if bad.any():
            raise DataError(f"code indices must be integers in [0, {self.categories}); got "
                            f"{float(value[bad][0])!r}")
        return value.long().reshape(-1, self.positions)

    def logits(self, codes: Tensor) -> Tensor:
        """log p(c_i = . | c_<i) (B, L, K) for each of the first L positions, given index
        sequences (B, L - 1 or more): only the first L - 1 codes are read."""
        batch, length = codes.shape[0], min(codes.shape[1] + 1, self.positions)
        start = torch.full((batch, 1), self.categories, dtype=torch.long, device=codes.device)
        tokens = torch.cat([start, codes[:, :length - 1]], dim=1)  # (B, L): shifted right
        h = self.embed(tokens) + self.position[:length]  # (B, L, W)
        h = self.layers(h, mask=self.causal_mask[:length, :length], is_causal=True)
        return torch.log_softmax(self.head(self.norm(h)), dim=-1)  # (B, L, K)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(c) (...,) of code grids (..., G): the sum of the G conditionals."""
        codes = self.codes(value)  # (B, G)
        logp = self.logits(codes).gather(-1, codes.unsqueeze(-1)).squeeze(-1)  # (B, G)
        return logp.sum(-1).reshape(value.shape[:-1])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> Tensor:
        """n code grids (n, G) int64 by ancestral sampling, each conditional's logits divided by
        `temperature` (0: the most probable code at each step)."""
        device = self.position.device
        codes = torch.zeros(n, 0, dtype=torch.long, device=device)
        for _ in range(self.positions):
            logp = self.logits(codes)[:, -1]  # (n, K): the next position's conditional
            if temperature == 0:
                nxt = logp.argmax(-1)
            else:
                probs = torch.softmax(logp / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            codes = torch.cat([codes, nxt.unsqueeze(-1)], dim=1)
        return codes

    def forward(self, posterior: nn.Module | None = None) -> Distribution:
        return CodeGridDistribution(self)

    @torch.no_grad()
    def init_from_codes(self, codes: Tensor) -> None:
        """Start the output layer at the codes' marginal frequencies (add-one smoothed), so the
        first steps begin from the independent model rather than from uniform."""
        counts = torch.bincount(self.codes(codes).reshape(-1), minlength=self.categories)
        self.head.bias.copy_(torch.log((counts + 1.0) / (counts.sum() + self.categories)))

    def training_loss(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-mean log p(c) over code grids (B, G): maximum likelihood."""
        return -self.log_prob(z).mean()


class CodeGridDistribution(Distribution):
    """The distribution of a `CodeTransformer` over code grids (G,), for the prior's contract:
    `log_prob` of float or integer grids, `sample` of float grids."""

    arg_constraints: ClassVar[dict[str, Any]] = {}

    def __init__(self, prior: CodeTransformer) -> None:
        self.prior = prior
        super().__init__(event_shape=torch.Size([prior.positions]), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.prior.log_prob(value)

    def sample(self, sample_shape: Any = ()) -> Tensor:
        n = math.prod(tuple(sample_shape))
        return self.prior.sample(n).float().reshape(*tuple(sample_shape), self.prior.positions)


__all__ = ["CodeGridDistribution", "CodeTransformer"]
