"""The plain autoencoder, vaekit's baseline: a deterministic code z = f(x) and a decoder
p(x|z), trained on reconstruction alone,

    loss = -log p(x | g(f(x))),

with the likelihood's loss (Bernoulli: cross-entropy; Gaussian: squared error and a learned
scale) on the same encoder and decoder nets as the VAE. It has no likelihood: the code is a point
mass, with no density, so there is no ELBO, no log p(x) and no bits/dim, and there is nothing to
sample from until a density is fitted to its codes (`vaekit fit-prior RUN --kind mog`; the
two-stage view of Dai & Wipf 2019). Its `terms` give log p(x|z) only; asking for log p(z) or
log q(z|x) raises `NoLikelihoodError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import Likelihood, PointMass
from vaekit.errors import NoLikelihoodError
from vaekit.models.base import LatentVariableModel
from vaekit.models.standardize import Standardize
from vaekit.models.vae import draw_from_prior
from vaekit.objectives.terms import LogWeightTerms

#: what the autoencoder's training objective is called
RECONSTRUCTION_OBJECTIVE = "log p(x|f(x))"
NO_LIKELIHOOD = ("a plain autoencoder has no likelihood: its code z = f(x) is a point mass, "
                 "with no density")


class ReconstructionTerms(LogWeightTerms):
    """log p(x | f(x)) for each of k (identical) samples, (k, B); no KL is penalised (the code
    pays no rate), and no log-density of the code exists."""

    def __init__(self, log_px_z: Tensor, latent_dim: int) -> None:
        self.log_px_z = log_px_z
        self.units = latent_dim
        self._zero = torch.zeros_like(log_px_z[0])

    @property
    def log_pz(self) -> Tensor:
        raise NoLikelihoodError(NO_LIKELIHOOD)

    @property
    def log_qz(self) -> Tensor:
        raise NoLikelihoodError(NO_LIKELIHOOD)

    @property
    def kl(self) -> Tensor:
        """0: the autoencoder's objective has no rate term (not a KL of any distribution)."""
        return self._zero

    @property
    def kl_groups(self) -> list[Tensor]:
        return [self._zero]


class Autoencoder(LatentVariableModel):
    """z = head(body(x)) and p(x|z) from the decoder, on the model contract. `prior` is None
    until a density is fitted to the codes; then `sample` draws z from it."""

    #: its objective is reconstruction, not an ELBO
    has_likelihood = False
    has_joint_density = False
    objective_name = RECONSTRUCTION_OBJECTIVE

    def __init__(self, body: nn.Module, features: int, decoder: nn.Module,
                 likelihood: Likelihood, event_shape: tuple[int, ...], latent_dim: int,
                 standardize: Standardize | None = None) -> None:
        super().__init__(likelihood, event_shape, (latent_dim,), standardize)
        self.body = body
        self.head = nn.Linear(features, latent_dim)
        self.decoder = decoder
        self.noise_dim = 0  # deterministic: draws no noise
        self.prior: nn.Module | None = None

    def code(self, y: Tensor) -> Tensor:
        """z = f(y) (B, latent_dim) for inputs in the model's units."""
        return self.head(self.body(y))

    def encode(self, x: Tensor | np.ndarray, *, condition: Any = None,
               grad: bool = False) -> Distribution:
        """The point mass at z = f(x), (B, latent_dim)."""
        self.as_condition(condition, None, "encode")  # unconditional: refuses one
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return PointMass(self.code(self.to_model_units(self.as_input(x, "encode"))))

    def decoder_params(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        self.as_condition(condition, None, "decode")  # unconditional: refuses one
        if z.dim() == 2:
            return self.decoder(z)
        params = self.decoder(z.reshape(-1, z.shape[-1]))
        return params.reshape(*z.shape[:-1], *params.shape[1:])

    def inference_cache(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        self.as_condition(condition, None, "encode")  # unconditional: refuses one
        return self.code(self.to_model_units(x))

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              cache: Any = None, condition: Tensor | None = None) -> ReconstructionTerms:
        self.as_condition(condition, None, "terms")  # unconditional: refuses one
        y = self.to_model_units(x)
        z = self.code(y) if cache is None else cache  # (B, L)
        log_px_z = self.log_px_z(self.decoder(z), y)  # (B,)
        k = k if noise is None else noise.shape[0]
        return ReconstructionTerms(log_px_z.unsqueeze(0).expand(k, -1), self.latent_dim)

    def prior_and_decoder(self, z: Tensor, condition: Tensor | None = None
                          ) -> tuple[Tensor, Tensor]:
        raise NoLikelihoodError(f"{NO_LIKELIHOOD}, hence no joint density p(x, z)")

    def elbo(self, x: Tensor | np.ndarray, k: int = 1, *, condition: Any = None,
             grad: bool = False) -> dict[str, Tensor]:
        raise NoLikelihoodError(f"{NO_LIKELIHOOD}, hence no ELBO; its reconstruction term is "
                                "model.terms(x).log_px_z")

    @property
    def can_sample(self) -> bool:
        return self.prior is not None

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Tensor:
        if self.prior is None:
            raise NoLikelihoodError(
                "a plain autoencoder samples only through a density fitted to its codes; fit "
                "one with: vaekit fit-prior RUN --kind mog --out NEW_RUN")
        return draw_from_prior(self.prior(None), n, self.latent_dim, generator, temperature,
                               self._device())
