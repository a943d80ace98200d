"""The model contract: what a latent-variable model gives the rest of vaekit.

The trainer, evaluation, diagnostics, the CLI and the run directory hold a `LatentVariableModel`
and use only what is written here, so a new latent structure (one layer, a top-down hierarchy,
later discrete codes) is one more implementation, never a second copy of the loop.

A model gives:

- `terms(x, k, noise, cache)`: the log-weight terms of k samples (`vaekit.terms`):
  log p(x|z), log p(z) and log q(z|x) summed over every latent group, each (k, B); the KL of
  each group, in closed form given the samples above it where it has one; and any auxiliary
  loss (`LogWeightTerms.aux_loss`) the objective adds.
- its randomness as one tensor: `draw_noise(k, B, generator)` is standard-normal noise of shape
  (k, B, noise_dim), drawn by the caller from the trainer's generator. `terms` consumes it
  deterministically, so a resumed run draws the same numbers, and N DDP processes each take
  their slice `noise[:, rows]` of one global draw and train as one.
- `inference_cache(x)`: whatever `terms` may reuse across chunks of samples of the same x (the
  encoder's pass), so the importance-weighted estimate runs the encoder once per example.
- the latent space as one vector of `latent_dim` = sum(`latent_groups`) numbers, the groups
  concatenated: `encode(x)` gives a distribution over it (for a hierarchy, the groups'
  posteriors along the posterior means), `decode(z)` maps it to p(x|z), `sample(n,
  temperature=T)` draws from the prior with its noise scaled by T, and `reconstruct(x)` decodes
  the posterior mean.
- the data's units: `standardize` (or None), applied on the way in and undone on the way out,
  its Jacobian included in log p(x|z).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import Likelihood
from vaekit.errors import DataError
from vaekit.models.standardize import Standardize
from vaekit.objectives import elbo as elbo_of_terms
from vaekit.terms import LogWeightTerms


class LatentVariableModel(nn.Module):
    """The contract (see the module's docstring). Subclasses define `terms`, `encode`,
    `decoder_params` and `sample_latents`, and may define `inference_cache`.

    The inference calls (`encode`, `decode`, `decode_mean`, `elbo`, `sample`, `reconstruct`)
    take tensors or NumPy arrays of any float dtype, on any device, and build no autograd graph
    unless asked (`grad=True`); `terms` is the differentiable primitive that training uses."""

    #: False for a model whose codes have no density (a plain autoencoder): no ELBO, no
    #: log p(x), and samples only through a fitted prior
    has_likelihood: bool = True
    #: what its training objective is called in progress lines
    objective_name: str = "ELBO"

    def __init__(self, likelihood: Likelihood, event_shape: tuple[int, ...],
                 latent_groups: tuple[int, ...], standardize: Standardize | None = None) -> None:
        super().__init__()
        self.likelihood = likelihood
        #: y = (x - m) / s inside the model, where the data are standardised (else None)
        self.standardize = standardize
        self.event_shape = tuple(event_shape)
        #: the size of each latent group; the latent vector is their concatenation
        self.latent_groups = tuple(int(g) for g in latent_groups)
        self.latent_dim = sum(self.latent_groups)
        #: standard-normal numbers that `terms` consumes per sample and example
        self.noise_dim = self.latent_dim
        self.config: Any = None  # the vaekit.Config it was built from, if any
        #: config.json's record of the data (binarization, dequantization, ...), if any
        self.run_record: dict[str, Any] = {}

    @property
    def data_dim(self) -> int:
        return math.prod(self.event_shape)

    # ------------------------------------------------------------------ what a model defines

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              cache: Any = None) -> LogWeightTerms:
        """The log-weight terms of k samples for x (B, *event_shape) in the data's units, with
        `noise` (k, B, noise_dim) (drawn here if None) and a `cache` from `inference_cache(x)`."""
        raise NotImplementedError

    def inference_cache(self, x: Tensor) -> Any:
        """What `terms(x, cache=...)` may reuse across chunks of samples of the same x."""
        return None

    def encode(self, x: Tensor | np.ndarray, *, grad: bool = False) -> Distribution:
        """A distribution over the latent vector (B, latent_dim) given x (B, *event_shape)."""
        raise NotImplementedError

    def decoder_params(self, z: Tensor) -> Tensor:
        """The likelihood's parameters (*batch, *param_shape) for latents (*batch, latent_dim),
        in the model's units (differentiable; no input checks)."""
        raise NotImplementedError

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Tensor:
        """n latent vectors (n, latent_dim) from the prior, its noise scaled by `temperature`."""
        raise NotImplementedError

    @property
    def can_sample(self) -> bool:
        """Whether `sample` has a prior to draw from (an autoencoder: once one is fitted)."""
        return True

    # ------------------------------------------------------------------ given by the contract

    def draw_noise(self, k: int, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | None = None) -> Tensor:
        """Standard-normal noise of shape (k, batch, noise_dim) for `terms`."""
        device = device or self._device()
        return torch.randn(k, batch, self.noise_dim, generator=generator, device=device)

    def decode(self, z: Tensor | np.ndarray, *, grad: bool = False) -> Distribution:
        """p(x|z) for latents z of shape (*batch, latent_dim), in the data's units."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            p = self.likelihood(self.decoder_params(self.as_latent(z)))
            return p if self.standardize is None else self.standardize.push(p)

    def decode_mean(self, z: Tensor | np.ndarray, *, grad: bool = False) -> Tensor:
        """The mean of p(x|z), (*batch, *event_shape), without building the distribution."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.to_data_units(self.likelihood.mean(self.decoder_params(
                self.as_latent(z))))

    def elbo(self, x: Tensor | np.ndarray, k: int = 1, *,
             grad: bool = False) -> dict[str, Tensor]:
        """Per-example ELBO, reconstruction E_q[log p(x|z)] and KL(q||p), in nats, each (B,)."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return elbo_of_terms(self.terms(self.as_input(x, "elbo"), k))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True,
               temperature: float = 1.0) -> Tensor:
        """n draws x ~ p(x|z), z ~ p(z) (its noise scaled by `temperature`): the likelihood's
        mean (default) or a sample of it."""
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        params = self.decoder_params(self.sample_latents(n, generator, temperature))
        if mean:
            return self.to_data_units(self.likelihood.mean(params))
        device = params.device  # p(x|z) draws with torch's sampler, seeded from `generator`
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if generator is not None:
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator,
                                                    device=generator.device)))
            return self.to_data_units(self.likelihood(params).sample())

    @torch.no_grad()
    def reconstruct(self, x: Tensor | np.ndarray) -> Tensor:
        """The mean of p(x|z) at z = the posterior mean of q(z|x)."""
        return self.decode_mean(self.encode(x).mean)

    # ------------------------------------------------------------------ units and inputs

    def to_model_units(self, x: Tensor) -> Tensor:
        """x as the networks see it: standardised where the model standardises."""
        return x if self.standardize is None else self.standardize(x)

    def to_data_units(self, y: Tensor) -> Tensor:
        """The inverse of `to_model_units`."""
        return y if self.standardize is None else self.standardize.inverse(y)

    def log_px_z(self, params: Tensor, y: Tensor) -> Tensor:
        """log p(x|z) in the data's units from the likelihood's parameters and y = x in the
        model's units: log p(y|z) + log |dy/dx| where x is standardised."""
        log_py_z = self.likelihood.log_prob(params, y)
        return log_py_z if self.standardize is None else log_py_z + self.standardize.log_abs_det

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def as_input(self, x: Tensor | np.ndarray, where: str = "input") -> Tensor:
        """x (B, *event_shape) as a tensor of the model's float dtype on its device."""
        t = _as_float_tensor(x, where, self._dtype(), self._device())
        n = len(self.event_shape)
        if t.dim() < n + 1 or tuple(t.shape[-n:]) != self.event_shape:
            raise DataError(f"{where}: expected examples of shape {self.event_shape} in a batch "
                            f"(B, {', '.join(map(str, self.event_shape))}), got shape "
                            f"{tuple(t.shape)}")
        return t

    def as_latent(self, z: Tensor | np.ndarray) -> Tensor:
        t = _as_float_tensor(z, "decode", self._dtype(), self._device())
        if t.dim() == 0 or t.shape[-1] != self.latent_dim:
            raise DataError(f"decode: expected latents of shape (..., {self.latent_dim}), got "
                            f"shape {tuple(t.shape)}")
        return t


def _as_float_tensor(x: Tensor | np.ndarray, where: str, dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    """A tensor or array as `dtype` on `device`; a clear error for anything else."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise DataError(f"{where}: expected a numeric array, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise DataError(f"{where}: expected a tensor or a NumPy array, got {type(x).__name__}")
    if x.is_complex():
        raise DataError(f"{where}: expected real values, got {x.dtype}")
    return x.to(device=device, dtype=dtype)
