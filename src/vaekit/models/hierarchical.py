"""A top-down hierarchical VAE on the model contract (Sønderby et al. 2016, Kingma et al. 2016,
Vahdat & Kautz 2020, Child 2021).

Groups z_1 (nearest the data) ... z_L (the top). A bottom-up deterministic path computes features
d_1, ..., d_L of x; the top-down path then runs from the top:

    p(z) = p(z_L) prod_{l<L} p(z_l | z_>l),   p(z_L) = N(0, I),
    q(z|x) = q(z_L | x) prod_{l<L} q(z_l | z_>l, x),

where the state s_l = f_l(z_{l+1}, s_{l+1}) carries z_>l down. The prior of group l comes from
s_l; its posterior from (s_l, d_l), parameterised relative to the prior (NVAE, eq. 2):

    mu_q = mu_p + dmu,   log sigma_q^2 = log sigma_p^2 + dlogvar,

with the log-variances softly bounded (b tanh(v / b)), so that the KL of each group,

    KL_l = 1/2 sum(dmu^2 / sigma_p^2 + exp(dlogvar) - 1 - dlogvar),

is computed from the differences, in closed form given the samples above it. The decoder reads
z_1 and s_1. With one group this is the one-layer VAE; with latents (100, 50) and widths
(200, 100) it has the layer sizes of Burda et al.'s (2016) two-layer model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vaekit.distributions import DiagonalNormal, Likelihood
from vaekit.errors import ConfigError
from vaekit.models.base import LatentVariableModel
from vaekit.models.standardize import Standardize
from vaekit.models.top_down_terms import (
    POSTERIOR_LOG_VAR_BOUND,
    PRIOR_LOG_VAR_BOUND,
    FittedTopDraw,
    GroupDraw,
    HierarchicalTerms,
    repeat_for_samples,
    soft_clamp,
)
from vaekit.models.vae import draw_from_prior
from vaekit.nets import FlattenEvent, Unflatten, mlp


@dataclass(frozen=True)
class HierarchicalOptions:
    """The hierarchical model's own settings (flags --hvae-*)."""

    latents: tuple[int, ...] = field(default=(64, 32, 16), metadata={
        "help": "the size of each latent group, from the data up: z_1 first, the top group last"})
    widths: tuple[int, ...] = field(default=(512, 256, 128), metadata={
        "help": "the width of each group's deterministic layers (bottom-up and top-down), "
                "same order"})
    depth: int = field(default=2, metadata={"help": "dense layers per stage of each path"})

    def check(self) -> None:
        if not self.latents:
            raise ConfigError("--hvae-latents needs at least one group size")
        for name in ("latents", "widths"):
            sizes = getattr(self, name)
            if any(not isinstance(s, int) or isinstance(s, bool) or s <= 0 for s in sizes):
                raise ConfigError(f"--hvae-{name} sizes must be positive integers, got {sizes!r}")
        if len(self.widths) != len(self.latents):
            raise ConfigError(f"--hvae-widths needs one width per latent group: "
                              f"{len(self.latents)} groups ({_join(self.latents)}), "
                              f"{len(self.widths)} widths ({_join(self.widths)})")
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth <= 0:
            raise ConfigError(f"--hvae-depth must be a positive integer, got {self.depth!r}")


class TopDownVAE(LatentVariableModel):
    """What every top-down hierarchy shares: the contract's methods on two passes that each
    family defines,

    - `_bottom_up(y)`: the deterministic features of y (B, *event) that the posteriors read;
    - `_top_down(n, features, eps, given, temperature, top_latent)`: the top-down path for n
      rows. With `features` (n rows each), z_g ~ q(z_g | z_>g, x) drawn with eps_g; without, z_g ~
      p(z_g | z_>g) with eps_g scaled by `temperature`, or the latents `given`. eps, the given
      latents and the returned draws and samples are per group, flat (n, size_g), in the order
      of `latent_groups`; the last result is the likelihood's parameters (n, *param_shape).
      The draws are the posterior's (with `features`), or the given latents under the prior
      (`GroupDraw.of_prior`, with `given`), or none (sampling from the prior). `top_latent`, when
      given (n, size of the top group), is the top group's latent drawn from a fitted prior,
      taken in place of a draw from its own.

    A prior fitted to the top group's codes z_L ~ q(z_L|x) (`vaekit fit-prior` on a
    hierarchy: the two-stage VAE of Dai & Wipf 2019 at the top of the hierarchy) becomes
    `prior`, replacing p(z_L); the groups below keep their conditional priors p(z_l | z_>l).
    Then log p(z_L) is the fitted prior's, the top group's KL its one-sample estimate
    log q(z_L|x) - log p(z_L), and sampling starts from a draw of it.
    """

    #: the index in `latent_groups` of the top group, the one drawn first
    top_group: int = -1

    def __init__(self, likelihood: Likelihood, event_shape: tuple[int, ...],
                 latent_groups: tuple[int, ...], standardize: Standardize | None = None) -> None:
        super().__init__(likelihood, event_shape, latent_groups, standardize)
        #: a prior fitted to the top group's codes, replacing its own (None: its own)
        self.prior: nn.Module | None = None

    @property
    def prior_slice(self) -> slice:
        """The top group: the codes that a fitted prior models."""
        start = sum(self.latent_groups[:self.top_group % len(self.latent_groups)])
        return slice(start, start + self.latent_groups[self.top_group])

    def _with_fitted_top(self, draws: list[GroupDraw], zs: list[Tensor],
                         exact: bool = False) -> list[Any]:
        """The draws, with a fitted prior the top group's under it (`FittedTopDraw`). An
        `exact` log p(z_L), differentiable in z, is asked for by MCMC."""
        if self.prior is None:
            return draws
        p_top = self.prior(None)
        if exact and not getattr(p_top, "has_exact_log_prob", True):
            raise ConfigError(f"the top group's fitted prior ({type(p_top).__name__}) has no "
                              "exact log p(z) differentiable in z (a one-trajectory bound); "
                              "MCMC needs one")
        out: list[Any] = list(draws)
        out[self.top_group] = FittedTopDraw(draws[self.top_group],
                                            p_top.log_prob(zs[self.top_group]))
        return out

    def _bottom_up(self, y: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def _top_down(self, n: int, features: list[Tensor] | None, eps: list[Tensor],
                  given: list[Tensor] | None = None, temperature: float = 1.0,
                  top_latent: Tensor | None = None
                  ) -> tuple[list[GroupDraw], list[Tensor], Tensor]:
        raise NotImplementedError

    def _split(self, flat: Tensor) -> list[Tensor]:
        """(n, latent_dim) -> the groups' (n, size_g)."""
        return list(flat.split(self.latent_groups, dim=-1))

    def inference_cache(self, x: Tensor, condition: Tensor | None = None) -> list[Tensor]:
        """The bottom-up features of x: one pass for every chunk of samples."""
        self.as_condition(condition, None, "encode")  # unconditional: refuses one
        return self._bottom_up(self.to_model_units(x))

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              cache: Any = None, condition: Tensor | None = None) -> HierarchicalTerms:
        self.as_condition(condition, None, "terms")  # unconditional: refuses one
        y = self.to_model_units(x)  # what the networks see
        batch = x.shape[0]
        if noise is None:
            noise = self.draw_noise(k, batch, device=x.device)
        k = noise.shape[0]
        # every sample of an example sees its features: rows (k B), sample-major
        features = repeat_for_samples(self._bottom_up(y) if cache is None else cache, k)
        draws, zs, params = self._top_down(k * batch, features,
                                           self._split(noise.reshape(k * batch, -1)))
        log_px_z = self.log_px_z(params.view(k, batch, *params.shape[1:]), y)  # (k, B)
        return HierarchicalTerms(log_px_z, self._with_fitted_top(draws, zs), zs)

    def encode(self, x: Tensor | np.ndarray, *, condition: Any = None,
               grad: bool = False) -> DiagonalNormal:
        """The groups' posteriors along the posterior means, q(z_g | z_>g = their means, x),
        concatenated into one diagonal Gaussian over (B, latent_dim)."""
        self.as_condition(condition, None, "encode")  # unconditional: refuses one
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            features = self.inference_cache(self.as_input(x, "encode"))
            n = len(features[0])
            zeros = [features[0].new_zeros(n, size) for size in self.latent_groups]
            draws, zs, _ = self._top_down(n, features, zeros)
            return DiagonalNormal(torch.cat(zs, -1), torch.cat([d.log_var_q() for d in draws],
                                                               -1))

    def decoder_params(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        self.as_condition(condition, None, "decode")  # unconditional: refuses one
        batch = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])
        _, _, params = self._top_down(len(flat), None, [], given=self._split(flat))
        return params.reshape(*batch, *params.shape[1:])

    def prior_and_decoder(self, z: Tensor, condition: Tensor | None = None
                          ) -> tuple[Tensor, Tensor]:
        """log p(z) = sum_l log p(z_l | z_>l), computed top-down from the given z
        (*batch, latent_dim), and the likelihood's parameters, in one pass."""
        self.as_condition(condition, None, "log p(x, z)")  # unconditional: refuses one
        batch = z.shape[:-1]
        flat = z.reshape(-1, z.shape[-1])  # (N, latent_dim)
        given = self._split(flat)
        draws, _, params = self._top_down(len(flat), None, [], given=given)
        draws = self._with_fitted_top(draws, given, exact=True)
        log_pz = torch.stack([d.log_p() for d in draws]).sum(0)  # (N,)
        return log_pz.view(batch), params.reshape(*batch, *params.shape[1:])

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Tensor:
        """Ancestral sampling from the top: z_g = mu_p + T sigma_p eps, the top group from a
        fitted prior where there is one (its noise scaled by T)."""
        eps = torch.randn(n, self.latent_dim, generator=generator, device=self._device())
        top = None if self.prior is None else draw_from_prior(
            self.prior(None), n, self.latent_groups[self.top_group], generator, temperature,
            self._device())
        _, zs, _ = self._top_down(n, None, self._split(eps), temperature=temperature,
                                  top_latent=top)
        return torch.cat(zs, -1)


class HierarchicalVAE(TopDownVAE):
    """A top-down hierarchical VAE of dense layers (see the module's docstring).

    Example:
        >>> model = build_model(Config(model="hvae", model_options={"hvae": {
        ...     "latents": (32, 16), "widths": (256, 128)}}), event_shape=(784,))
        >>> model.elbo(x)["kl"]                # (B,) nats: the sum of the groups' KLs
        >>> model.sample(16, temperature=0.8)  # colder samples from the prior
    """

    def __init__(self, likelihood: Likelihood, event_shape: tuple[int, ...],
                 options: HierarchicalOptions, activation: str,
                 standardize: Standardize | None = None) -> None:
        super().__init__(likelihood, event_shape, options.latents, standardize)
        latents, widths, depth = options.latents, options.widths, options.depth
        self.options = options
        top = len(latents) - 1
        self.flatten = FlattenEvent(self.event_shape)
        inputs = [self.data_dim, *widths[:-1]]
        self.bottom_up = nn.ModuleList(
            mlp([n_in, *[w] * depth], activation, final_activation=True)
            for n_in, w in zip(inputs, widths, strict=True))
        # the state s_l from (z_{l+1}, s_{l+1}), for l below the top; s_{top-1} has only z_top
        self.top_down = nn.ModuleList(
            mlp([latents[i + 1] + (widths[i + 1] if i + 1 < top else 0), *[widths[i]] * depth],
                activation, final_activation=True) for i in range(top))
        self.prior_heads = nn.ModuleList(nn.Linear(widths[i], 2 * latents[i])
                                         for i in range(top))
        self.posterior_heads = nn.ModuleList(
            nn.Linear(widths[i] + (widths[i] if i < top else 0), 2 * latents[i])
            for i in range(top + 1))
        param_shape = likelihood.param_shape()
        self.decoder = nn.Sequential(
            mlp([latents[0] + (widths[0] if top else 0), *[widths[0]] * depth,
                 math.prod(param_shape)], activation, final_activation=False),
            Unflatten(param_shape))

    def _bottom_up(self, y: Tensor) -> list[Tensor]:
        """The features d_1, ..., d_L of y (B, *event), each (B, width_l)."""
        h, features = self.flatten(y), []
        for stage in self.bottom_up:
            h = stage(h)
            features.append(h)
        return features

    def _top_down(self, n: int, features: list[Tensor] | None, eps: list[Tensor],
                  given: list[Tensor] | None = None, temperature: float = 1.0,
                  top_latent: Tensor | None = None
                  ) -> tuple[list[GroupDraw], list[Tensor], Tensor]:
        """From the top group down (the groups are numbered from the data up): s_l from
        (z_{l+1}, s_{l+1}), the prior from s_l (N(0, I) for the top), the posterior from
        (s_l, d_l) relative to it; the decoder reads (z_1, s_1)."""
        top = len(self.latent_groups) - 1
        draws: list[GroupDraw] = []
        zs: list[Tensor] = []
        state: Tensor | None = None
        for i in range(top, -1, -1):
            mu_p = log_var_p = None
            if i < top:  # the state from the group above and its state
                state = self.top_down[i](zs[0] if state is None else torch.cat([zs[0], state], -1))
                mu_p, log_var_p = self.prior_heads[i](state).chunk(2, dim=-1)
                log_var_p = soft_clamp(log_var_p, PRIOR_LOG_VAR_BOUND)
            if given is not None:
                z = given[i]
                draws.insert(0, GroupDraw.of_prior(z, mu_p, log_var_p))
            elif features is None and i == len(self.latent_groups) - 1 and top_latent is not None:
                z = top_latent  # the top group from a fitted prior
            elif features is None:  # from the prior, at a temperature
                z = temperature * eps[i]
                if mu_p is not None and log_var_p is not None:
                    z = mu_p + torch.exp(0.5 * log_var_p) * z
            else:  # from the posterior, relative to the prior
                head_in = features[i] if state is None else torch.cat([state, features[i]], -1)
                dmu, dlog_var = self.posterior_heads[i](head_in).chunk(2, dim=-1)
                draw = GroupDraw(log_var_p, dmu, soft_clamp(dlog_var, POSTERIOR_LOG_VAR_BOUND),
                                 eps[i])
                mu_q = dmu if mu_p is None else mu_p + dmu
                z = mu_q + torch.exp(0.5 * draw.log_var_q()) * eps[i]  # (n, size_i)
                draws.insert(0, draw)
            zs.insert(0, z)
        params = self.decoder(zs[0] if state is None else torch.cat([zs[0], state], -1))
        return draws, zs, params


def _join(sizes: tuple[int, ...]) -> str:
    return ",".join(map(str, sizes))
