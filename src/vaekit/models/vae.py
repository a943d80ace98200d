"""The VAE: a prior p(z), a posterior q(z|x), a decoder and a likelihood p(x|z), composed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import DiagonalNormal, Likelihood, analytic_kl, rsample_and_log_prob
from vaekit.errors import DataError
from vaekit.flows import FlowDistribution
from vaekit.models.standardize import Standardize


class LogWeightTerms:
    """The pieces of log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), each of shape (k, B),
    for samples z (k, B, L) drawn with `noise`, and KL(q(z|x) || p(z)) of shape (B,) where it
    has a closed form, in whole or in part (see `kl`). log p(z), the KL and (for a diagonal
    Gaussian q) log q(z) are computed on first use: the ELBO with an analytic KL needs neither
    log density, and the IWAE bound never needs the KL."""

    def __init__(self, log_px_z: Tensor, log_qz: Tensor | None, z: Tensor, q: Distribution,
                 p: Distribution, noise: Tensor | None = None) -> None:
        self.log_px_z, self.z, self.q, self.p = log_px_z, z, q, p
        self.noise = noise
        # Computed on first use (plain attributes, not functools.cached_property, whose lock
        # torch.compile cannot trace: it would split the training step in two graphs).
        self._log_qz = log_qz
        self._log_pz: Tensor | None = None
        self._kl: Tensor | None = None
        self._kl_done = False

    @property
    def log_qz(self) -> Tensor:
        """log q(z_k|x), (k, B): as given, or (a diagonal Gaussian q, log_qz=None) from the
        noise on first use."""
        if self._log_qz is None:
            if not isinstance(self.q, DiagonalNormal) or self.noise is None:
                raise ValueError("log_qz=None needs a DiagonalNormal q and the noise it was "
                                 "drawn with")
            self._log_qz = self.q.log_prob_from_noise(self.noise)
        return self._log_qz

    @property
    def log_pz(self) -> Tensor:
        """log p(z_k), (k, B)."""
        if self._log_pz is None:
            self._log_pz = self.p.log_prob(self.z)
        return self._log_pz

    @property
    def kl(self) -> Tensor | None:
        """The analytic KL where torch registers one. For a flow posterior q_K (base q_0, steps
        with log-dets) against a prior with a closed-form KL from q_0, the exact split

            KL(q_K || p) = KL(q_0 || p) + E_q0[(log q_K(z_K) - log q_0(z_0))
                                               - (log p(z_K) - log p(z_0))]

        takes the first term analytically and only the bracket by Monte Carlo. The bracket is
        minus the log-dets and the change of log p(z) along the flow, small for steps near the
        identity, so the estimate has far less variance than mean_k[log q_K - log p]; the
        expectation is the same. None where neither applies (learned mixture priors)."""
        if not self._kl_done:
            self._kl, self._kl_done = self._closed_form_kl(), True
        return self._kl

    def _closed_form_kl(self) -> Tensor | None:
        kl = analytic_kl(self.q, self.p)
        if kl is not None or not isinstance(self.q, FlowDistribution) or self.noise is None:
            return kl
        base_kl = analytic_kl(self.q.base, self.p)
        if base_kl is None:
            return None
        z0, log_q0 = rsample_and_log_prob(self.q.base, self.noise)
        bracket = (self.log_qz - log_q0) - (self.log_pz - self.p.log_prob(z0))
        return base_kl + bracket.mean(0)

    @property
    def kl_estimate(self) -> Tensor:
        """KL(q(z|x) || p(z)) per example, (B,): `kl` where it exists, else the Monte Carlo
        estimate mean_k[log q(z_k|x) - log p(z_k)] (not cached: cheap once its parts are)."""
        kl = self.kl
        return kl if kl is not None else (self.log_qz - self.log_pz).mean(0)

    @property
    def log_w(self) -> Tensor:
        return self.log_px_z + self.log_pz - self.log_qz  # (k, B)


class VAE(nn.Module):
    """A variational autoencoder (Kingma & Welling 2014).

    The inference calls (`encode`, `decode`, `decode_mean`, `elbo`, `sample`, `reconstruct`)
    take tensors or NumPy arrays of any float dtype, on any device, and build no autograd graph
    unless asked (`grad=True`); `terms` is the differentiable primitive that training uses.

    Example:
        >>> model = build_model(Config(latent_dim=8), event_shape=(64,))
        >>> q = model.encode(x)              # q(z|x), a torch Distribution
        >>> px = model.decode(q.rsample())   # p(x|z), a torch Distribution
        >>> model.elbo(x)["elbo"]            # (B,) nats per example
    """

    def __init__(self, prior: nn.Module, posterior: nn.Module, decoder: nn.Module,
                 likelihood: Likelihood, event_shape: tuple[int, ...], latent_dim: int,
                 standardize: Standardize | None = None) -> None:
        super().__init__()
        self.prior = prior
        self.posterior = posterior
        self.decoder = decoder
        self.likelihood = likelihood
        #: y = (x - m) / s inside the model, where the data are standardised (else None)
        self.standardize = standardize
        self.event_shape = tuple(event_shape)
        self.latent_dim = latent_dim
        self.config: Any = None  # the vaekit.Config it was built from, if any
        #: config.json's record of the data (binarization, dequantization, ...), if any
        self.run_record: dict[str, Any] = {}

    @property
    def data_dim(self) -> int:
        return math.prod(self.event_shape)

    # ------------------------------------------------------------------ inference (no graphs)

    def encode(self, x: Tensor | np.ndarray, *, grad: bool = False) -> Distribution:
        """q(z|x) for a batch x of shape (B, *event_shape)."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return self.posterior(self.to_model_units(self.as_input(x, "encode")))

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
        from vaekit.objectives import elbo

        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return elbo(self.terms(self.as_input(x, "elbo"), k))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               mean: bool = True) -> Tensor:
        """n draws x ~ p(x|z), z ~ p(z): the likelihood's mean (default) or a sample of it."""
        device = self._device()
        p_z = self.prior(self.posterior)
        eps = torch.randn(n, self.latent_dim, generator=generator, device=device)
        try:
            z, _ = rsample_and_log_prob(p_z, eps)
        except TypeError:  # no reparameterization (a mixture): torch's own sampler
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                if generator is not None:
                    torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator,
                                                        device=device)))
                z = p_z.sample((n,))
        params = self.decoder(z)
        x = self.likelihood.mean(params) if mean else self.likelihood(params).sample()
        return self.to_data_units(x)

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

    # ------------------------------------------------------------------ the training primitive

    def decoder_params(self, z: Tensor) -> Tensor:
        """The likelihood's parameters (*batch, *event) for latents z (*batch, latent_dim). The
        decoder sees z as one (N, latent_dim) matrix: linear layers on 3-d inputs cost extra
        reshapes, fore and back."""
        if z.dim() == 2:  # each reshape is a node in the backward graph: none where none is due
            return self.decoder(z)
        batch = z.shape[:-1]
        params = self.decoder(z.reshape(-1, z.shape[-1]))
        return params.reshape(*batch, *params.shape[1:])

    def draw_noise(self, k: int, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | None = None) -> Tensor:
        """Standard-normal noise of shape (k, batch, latent_dim) for the reparameterization."""
        device = device or self._device()
        return torch.randn(k, batch, self.latent_dim, generator=generator, device=device)

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              q: Distribution | None = None, p: Distribution | None = None) -> LogWeightTerms:
        """The shared primitive of the ELBO, the IWAE bound and importance-sampled evaluation:
        k reparameterized samples z_k ~ q(z|x) and their log-densities, each (k, B), for x in
        the data's units (B, *event_shape). `q` and the prior `p` may be passed to reuse them
        across chunks of samples."""
        y = x if self.standardize is None else self.standardize(x)  # what the networks see
        q = self.posterior(y) if q is None else q
        if noise is None:
            noise = self.draw_noise(k, x.shape[0], device=x.device)
        log_qz: Tensor | None
        p_z = self.prior(self.posterior) if p is None else p
        if isinstance(q, DiagonalNormal):  # log q(z) on first use: an analytic KL never needs it
            if noise.shape[0] == 1:  # one sample: (B, L) throughout, one reshape at the end
                z = q.sample_from_noise(noise[0])
                log_px_z = self._log_px_z(self.decoder(z), y).unsqueeze(0)
                return LogWeightTerms(log_px_z, None, z.unsqueeze(0), q, p_z, noise)
            z, log_qz = q.sample_from_noise(noise), None
        else:
            z, log_qz = rsample_and_log_prob(q, noise)  # (k, B, L), (k, B)
        # y broadcasts over k; the likelihood's log-density without building p(x|z)
        log_px_z = self._log_px_z(self.decoder_params(z), y)
        return LogWeightTerms(log_px_z, log_qz, z, q, p_z, noise)

    def _log_px_z(self, params: Tensor, y: Tensor) -> Tensor:
        """log p(x|z) in the data's units: log p(y|z) + log |dy/dx| where x is standardised."""
        log_py_z = self.likelihood.log_prob(params, y)
        return log_py_z if self.standardize is None else log_py_z + self.standardize.log_abs_det


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
