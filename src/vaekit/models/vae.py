"""The one-layer VAE: a prior p(z), a posterior q(z|x), a decoder and a likelihood p(x|z),
composed on the model contract (`models.base`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from vaekit.distributions import DiagonalNormal, Likelihood, analytic_kl, rsample_and_log_prob
from vaekit.errors import ConfigError
from vaekit.flows import FlowDistribution
from vaekit.models.base import LatentVariableModel
from vaekit.models.standardize import Standardize
from vaekit.nets import with_condition
from vaekit.objectives.terms import LogWeightTerms


class OneLayerTerms(LogWeightTerms):
    """The log-weight terms of one latent layer: log p(x|z_k), log p(z_k) and log q(z_k|x), each
    (k, B), for samples z (k, B, L) drawn with `noise`, and KL(q(z|x) || p(z)) of shape (B,)
    where it has a closed form, in whole or in part (see `kl`). log p(z), the KL and (for a diagonal
    Gaussian q) log q(z) are computed on first use: the ELBO with an analytic KL needs neither
    log density, and the IWAE bound never needs the KL."""

    def __init__(self, log_px_z: Tensor, log_qz: Tensor | None, z: Tensor, q: Distribution,
                 p: Distribution, noise: Tensor | None = None) -> None:
        self.log_px_z, self.z, self.q, self.p = log_px_z, z, q, p
        self.noise = noise
        self.units = int(z.shape[-1])
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
        """The analytic KL where torch registers one. The flow-KL split below belongs to the
        one-layer model, whose single q may be a flow on a Gaussian base. For a flow posterior
        q_K (base q_0, steps with log-dets) against a prior with a closed-form KL from q_0, the
        exact split

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
    def kl_groups(self) -> list[Tensor]:
        return [self.kl_estimate]

    def kl_units(self) -> Tensor | None:
        """KL(q(z_j|x) || p(z_j)) per example and dimension (B, L), where q and p both
        factorise into Gaussians; None otherwise."""
        q, p = self.q, self.p
        if isinstance(q, Independent) and isinstance(p, Independent) and \
                isinstance(q.base_dist, Normal) and isinstance(p.base_dist, Normal):
            return kl_divergence(q.base_dist, p.base_dist)
        return None


class VAE(LatentVariableModel):
    """A variational autoencoder with one latent layer (Kingma & Welling 2014).

    With `condition_classes`, a conditional VAE (Sohn et al. 2015) on class labels c: the
    encoder reads [x, c] and the decoder [z, c] (c one-hot), and the prior stays p(z), so that
    the ELBO is log p(x|c) >= E_q(z|x,c)[log p(x|z,c)] - KL(q(z|x,c) || p(z)), and a sample of
    one class is x ~ p(x|z, c), z ~ p(z).

    Example:
        >>> model = build_model(Config(latent_dim=8), event_shape=(64,))
        >>> q = model.encode(x)              # q(z|x), a torch Distribution
        >>> px = model.decode(q.rsample())   # p(x|z), a torch Distribution
        >>> model.elbo(x)["elbo"]            # (B,) nats per example
        >>> cvae.sample(64, condition=3)     # a conditional model: 64 draws of class 3
    """

    def __init__(self, prior: nn.Module, posterior: nn.Module, decoder: nn.Module,
                 likelihood: Likelihood, event_shape: tuple[int, ...], latent_dim: int,
                 standardize: Standardize | None = None,
                 condition_classes: tuple[str, ...] = ()) -> None:
        super().__init__(likelihood, event_shape, (latent_dim,), standardize)
        self.prior = prior
        self.posterior = posterior
        self.decoder = decoder
        self.condition_classes = tuple(condition_classes)

    def encode(self, x: Tensor | np.ndarray, *, condition: Any = None,
               grad: bool = False) -> Distribution:
        """q(z|x) (or q(z|x, c)) for a batch x of shape (B, *event_shape)."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            x = self.as_input(x, "encode")
            c = self.as_condition(condition, len(x), "encode")
            return self.posterior(self.to_model_units(x), c)

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Tensor:
        return draw_from_prior(self.prior(self.posterior), n, self.latent_dim, generator,
                               temperature, self._device())

    def decoder_params(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """The likelihood's parameters (*batch, *event) for latents z (*batch, latent_dim) (and
        a one-hot condition, which the decoder reads beside z). The decoder sees z as one
        (N, latent_dim) matrix: linear layers on 3-d inputs cost extra reshapes, fore and back."""
        z = with_condition(z, condition)  # (*batch, latent_dim + condition_dim)
        if z.dim() == 2:  # each reshape is a node in the backward graph: none where none is due
            return self.decoder(z)
        batch = z.shape[:-1]
        params = self.decoder(z.reshape(-1, z.shape[-1]))
        return params.reshape(*batch, *params.shape[1:])

    def prior_and_decoder(self, z: Tensor, condition: Tensor | None = None
                          ) -> tuple[Tensor, Tensor]:
        """log p(z) (*batch,) under the model's prior (its own, a VampPrior's mixture of
        posteriors, or a fitted one) and the decoder's parameters at z (*batch, latent_dim).
        A fitted diffusion prior is refused: its log p(z) is a bound from one random
        trajectory, not a density differentiable in z."""
        p_z = self.prior(self.posterior)
        if not getattr(p_z, "has_exact_log_prob", True):
            raise ConfigError(f"the model's prior ({type(p_z).__name__}) has no exact log p(z) "
                              f"differentiable in z (a one-trajectory bound); MCMC needs one")
        return p_z.log_prob(z), self.decoder_params(z, condition)

    def inference_cache(self, x: Tensor,
                        condition: Tensor | None = None) -> tuple[Distribution, Distribution]:
        """(q(z|x), p(z)): one encoder pass and one prior (a VampPrior encodes its
        pseudo-inputs) for every chunk of samples."""
        return self.posterior(self.to_model_units(x), condition), self.prior(self.posterior)

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              cache: Any = None, condition: Tensor | None = None) -> OneLayerTerms:
        """k reparameterized samples z_k ~ q(z|x) and their log-densities, each (k, B), for x in
        the data's units (B, *event_shape) (and a one-hot condition (B, C) for a conditional
        model). `cache` = (q, p) reuses a posterior and a prior (`inference_cache`; the
        amortization gap passes its own q)."""
        y = x if self.standardize is None else self.standardize(x)  # what the networks see
        if cache is None:
            q, p_z = self.posterior(y, condition), self.prior(self.posterior)
        else:
            q, p_z = cache
        if noise is None:
            noise = self.draw_noise(k, x.shape[0], device=x.device)
        log_qz: Tensor | None
        if isinstance(q, DiagonalNormal):  # log q(z) on first use: an analytic KL never needs it
            if noise.shape[0] == 1:  # one sample: (B, L) throughout, one reshape at the end
                z = q.sample_from_noise(noise[0])
                log_px_z = self.log_px_z(self.decoder_params(z, condition), y).unsqueeze(0)
                return OneLayerTerms(log_px_z, None, z.unsqueeze(0), q, p_z, noise)
            z, log_qz = q.sample_from_noise(noise), None
        else:
            z, log_qz = rsample_and_log_prob(q, noise)  # (k, B, L), (k, B)
        # y broadcasts over k; the likelihood's log-density without building p(x|z)
        log_px_z = self.log_px_z(self.decoder_params(z, condition), y)
        return OneLayerTerms(log_px_z, log_qz, z, q, p_z, noise)


def draw_from_prior(p_z: Distribution, n: int, latent_dim: int,
                    generator: torch.Generator | None, temperature: float,
                    device: torch.device) -> Tensor:
    """n draws (n, latent_dim) from p(z), reparameterized from standard-normal noise scaled by
    `temperature`; a prior without reparameterization (a mixture) uses torch's own sampler,
    seeded from `generator`, at temperature 1 only."""
    eps = torch.randn(n, latent_dim, generator=generator, device=device)
    try:
        z, _ = rsample_and_log_prob(p_z, temperature * eps)
    except TypeError:  # no reparameterization (a mixture): torch's own sampler
        if temperature != 1:
            raise ConfigError(f"--temperature {temperature:g}: sampling at a temperature needs "
                              f"a reparameterized prior; {type(p_z).__name__} has none") from None
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if generator is not None:
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator,
                                                    device=device)))
            z = p_z.sample((n,))
    return z
