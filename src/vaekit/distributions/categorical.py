"""N independent categorical variables of K classes as one distribution over a flat vector of
N K numbers, each variable one-hot: the posterior of a categorical VAE on the model contract's
latent layout (B, latent_dim), latent_dim = N K.

    log q(z) = sum_n sum_c z_nc log q_nc,   E[z] = q (flattened),   Var[z] = q (1 - q).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution, constraints


class OneHotCategoricals(Distribution):
    """Independent one-hot categoricals from `logits` (*batch, N, K); events of N K numbers.
    `probs` keeps the (*batch, N, K) layout: each variable's class probabilities."""

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, logits: Tensor) -> None:
        self.logits = F.log_softmax(logits, -1)  # (*batch, N, K), normalised
        self.variables, self.categories = int(logits.shape[-2]), int(logits.shape[-1])
        super().__init__(batch_shape=logits.shape[:-2],
                         event_shape=torch.Size((self.variables * self.categories,)),
                         validate_args=False)

    @property
    def probs(self) -> Tensor:
        return self.logits.exp()  # (*batch, N, K)

    @property
    def mean(self) -> Tensor:
        return self.probs.flatten(-2)  # (*batch, N K)

    @property
    def mode(self) -> Tensor:
        """Each variable's most probable class, one-hot, (*batch, N K)."""
        return F.one_hot(self.logits.argmax(-1), self.categories).to(self.logits.dtype) \
            .flatten(-2)

    @property
    def variance(self) -> Tensor:
        p = self.probs
        return (p * (1 - p)).flatten(-2)

    def sample(self, sample_shape: Any = torch.Size()) -> Tensor:  # noqa: B008
        classes = Categorical(logits=self.logits).sample(torch.Size(sample_shape))
        return F.one_hot(classes, self.categories).to(self.logits.dtype).flatten(-2)

    def log_prob(self, value: Tensor) -> Tensor:
        one_hot = value.unflatten(-1, (self.variables, self.categories))
        return (one_hot * self.logits).sum((-2, -1))

    def entropy(self) -> Tensor:
        return -(self.probs * self.logits).sum((-2, -1))
