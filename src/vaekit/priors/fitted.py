"""Priors fitted afterwards to the codes of a trained model (a second stage, encoder and decoder
frozen): `vaekit fit-prior RUN --kind gaussian|mog|flow|diffusion|autoregressive`; for a
hierarchy, the prior of its top group, z_L ~ q(z_L|x).

The standard-normal prior of a VAE is often a poor fit to the aggregate posterior
q(z) = E_x q(z|x), the codes the decoder has learnt to read (Hoffman & Johnson 2016; Tomczak &
Welling 2018); a plain autoencoder has no prior at all. Fitting p(z) to draws z ~ q(z|x) of the
training set (z = f(x) for an autoencoder) by maximum likelihood, as the two-stage VAE does (Dai
& Wipf 2019), puts the prior where the decoder's inputs are. Each fitted prior is a module whose
`forward(posterior)` returns a Distribution with a `log_prob` (exact, or for the diffusion prior
an unbiased importance weight whose log is a bound), so the importance-weighted estimate of
log p(x) with the new prior stays an honest lower bound.

- `gaussian`: one Gaussian with a full covariance, in closed form (the sample mean and
  covariance).
- `mog`: a mixture of diagonal Gaussians, fitted by EM (scikit-learn's GaussianMixture).
- `flow`: N(0, I) pushed through affine couplings (RealNVP) and a per-dimension affine map
  started at the codes' mean and spread, trained by Adam on -log p(z).
- `diffusion`: a diffusion model on the standardised codes (`vaekit.priors.diffusion`); its
  log p(z) is the probability-flow ODE's exact density (`--sampler ode`), or the ancestral
  chain's M-trajectory importance weight, which keeps the estimate of log p(x) a lower bound.
- `autoregressive`: for discrete codes (a VQ-VAE's grid), a causal transformer
  (`vaekit.priors.autoregressive`) with an exact log p(c), trained by Adam on -log p(c).

The continuous kinds fit continuous codes only, and `autoregressive` discrete ones only
(`DISCRETE_KINDS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, MultivariateNormal

from vaekit.distributions import (
    StandardNormal,
    rsample_and_log_prob,
)
from vaekit.errors import ConfigError
from vaekit.flows import AffineCoupling, FlowDistribution
from vaekit.priors import MixturePrior
from vaekit.priors.autoregressive import CodeTransformer
from vaekit.priors.diffusion import MIN_DDIM_STEPS, SAMPLERS, DiffusionPrior


@rsample_and_log_prob.register
def _(p: MultivariateNormal, noise: Tensor) -> tuple[Tensor, Tensor]:
    z = p.loc + (noise.unsqueeze(-2) @ p.scale_tril.mT).squeeze(-2)  # (k, ..., L)
    return z, p.log_prob(z)


class GaussianPrior(nn.Module):
    """p(z) = N(mu, Sigma), Sigma = L L^T with L lower-triangular (its diagonal positive)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.scale_tril = nn.Parameter(torch.eye(latent_dim))

    def forward(self, posterior: nn.Module | None = None) -> Distribution:
        return MultivariateNormal(self.loc, scale_tril=torch.tril(self.scale_tril))

    @torch.no_grad()
    def fit(self, codes: Tensor) -> None:
        """Maximum likelihood: the sample mean and covariance (plus 1e-6 I for a rank-deficient
        set of codes)."""
        z = codes.double()
        cov = torch.cov(z.T).reshape(z.shape[1], z.shape[1])
        cov = cov + 1e-6 * torch.eye(len(cov), dtype=cov.dtype)
        self.loc.copy_(z.mean(0))
        self.scale_tril.copy_(torch.linalg.cholesky(cov))


class MixturePriorFitted(MixturePrior):
    """p(z) = sum_k pi_k N(mu_k, diag(sigma_k^2)) (`priors.MixturePrior`), fitted by EM."""

    @torch.no_grad()
    def fit(self, codes: Tensor, seed: int) -> None:
        """EM from k-means++ starts (scikit-learn's GaussianMixture, diagonal covariances)."""
        from sklearn.mixture import GaussianMixture

        k = len(self.logits)
        if len(codes) < k:
            raise ConfigError(f"--components {k}: more mixture components than codes "
                              f"({len(codes)})")
        gm = GaussianMixture(k, covariance_type="diag", reg_covar=1e-6, max_iter=500,
                             random_state=seed, init_params="k-means++")
        gm.fit(codes.double().numpy())
        self.means.copy_(torch.from_numpy(gm.means_))
        self.log_vars.copy_(torch.from_numpy(np.log(gm.covariances_)))
        self.logits.copy_(torch.from_numpy(np.log(gm.weights_)))


class ElementwiseAffine:
    """y = loc + exp(log_scale) * z, log |det| = sum log_scale."""

    def __init__(self, loc: Tensor, log_scale: Tensor) -> None:
        self.loc, self.log_scale = loc, log_scale

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        y = self.loc + torch.exp(self.log_scale) * z
        return y, self.log_scale.sum().expand(z.shape[:-1])

    def inverse(self, y: Tensor) -> Tensor:
        return (y - self.loc) * torch.exp(-self.log_scale)


class FlowPriorFitted(nn.Module):
    """p(z): N(0, I) through `steps` affine couplings, then an elementwise affine map started at
    the codes' mean and standard deviation (so the couplings start near the identity)."""

    loc0: Tensor

    def __init__(self, latent_dim: int, steps: int) -> None:
        super().__init__()
        self.couplings = nn.ModuleList(AffineCoupling(latent_dim, 0, index=i)
                                       for i in range(steps))
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))
        self.register_buffer("loc0", torch.zeros(latent_dim), persistent=False)

    def forward(self, posterior: nn.Module | None = None) -> Distribution:
        steps: list[Any] = [c() for c in self.couplings]
        steps.append(ElementwiseAffine(self.loc, self.log_scale))
        return FlowDistribution(StandardNormal(self.loc0), steps)

    @torch.no_grad()
    def init_from_codes(self, codes: Tensor) -> None:
        self.loc.copy_(codes.mean(0))
        self.log_scale.copy_(codes.std(0).clamp_min(1e-3).log())

    def training_loss(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """-mean log p(z) over codes z (B, L): maximum likelihood."""
        return -self(None).log_prob(z).mean()


@dataclass(frozen=True)
class FittedPriorSpec:
    """A kind of fitted prior: `build(latent_dim, options)`; `trained` says whether it is fitted
    by gradient steps (resumable, with --epochs) rather than in closed form or by EM. An option
    is an integer, a float (> 0) or a string of `choices[name]`, by the type of its default;
    `legacy` gives the value of an option absent from a record saved before it existed."""

    build: Callable[[int, dict[str, Any]], nn.Module]
    defaults: dict[str, Any]
    trained: bool
    help: str
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    legacy: dict[str, Any] = field(default_factory=dict)
    #: the decay of an exponential moving average of the weights, which the run keeps (0: none)
    ema: float = 0.0


def _diffusion(d: int, o: dict[str, Any]) -> DiffusionPrior:
    return DiffusionPrior(d, int(o["diffusion_steps"]), int(o["width"]), int(o["sampling_steps"]),
                          depth=int(o["depth"]), denoiser=str(o["denoiser"]),
                          sampler=str(o["sampler"]), trajectories=int(o["trajectories"]),
                          tolerance=float(o["tolerance"]))


def _autoregressive(g: int, o: dict[str, Any]) -> CodeTransformer:
    return CodeTransformer(g, int(o["categories"]), width=int(o["transformer_width"]),
                           depth=int(o["transformer_depth"]), heads=int(o["heads"]))


#: The kinds of `vaekit fit-prior --kind`: the one list of choices.
FITTED_PRIORS: dict[str, FittedPriorSpec] = {
    "gaussian": FittedPriorSpec(lambda d, o: GaussianPrior(d), {}, False,
                                "one Gaussian, full covariance (closed form)"),
    "mog": FittedPriorSpec(lambda d, o: MixturePriorFitted(d, int(o["components"])),
                           {"components": 10}, False,
                           "a mixture of diagonal Gaussians (EM; --components)"),
    "flow": FittedPriorSpec(lambda d, o: FlowPriorFitted(d, int(o["flow_steps"])),
                            {"flow_steps": 6}, True,
                            "RealNVP affine couplings (Adam on -log p(z); --flow-steps)"),
    "diffusion": FittedPriorSpec(
        _diffusion, {"diffusion_steps": 100, "width": 512, "depth": 3, "sampling_steps": 0,
                     "denoiser": "residual", "sampler": "ancestral", "trajectories": 1,
                     "tolerance": 1e-5}, True,
        "a VP diffusion on the codes, residual-MLP denoiser (--diffusion-steps, --width, "
        "--depth); --sampler ode: the probability-flow ODE, exact log p(z); ancestral: "
        "log p(z) by the --trajectories M weight; ddim: --sampling-steps N",
        choices={"denoiser": ("residual", "mlp"), "sampler": SAMPLERS},
        legacy={"denoiser": "mlp"}, ema=0.999),
    "autoregressive": FittedPriorSpec(
        _autoregressive, {"categories": 2, "transformer_width": 128, "transformer_depth": 2,
                          "heads": 4}, True,
        "discrete codes only (a VQ-VAE's grid): a causal transformer, exact log p(c) "
        "(--transformer-width, --transformer-depth, --heads); categories: the model's K"),
}

#: The kinds that fit discrete codes (a VQ-VAE's index grid); the others fit continuous ones.
DISCRETE_KINDS = ("autoregressive",)
#: The models whose prior a fitted one can replace: one latent layer (vae, ae), a VQ-VAE's code
#: grid, and the top group of a hierarchy (hvae, hvae-conv), whose lower groups keep their own.
FITTED_PRIOR_MODELS = ("vae", "ae", "vqvae", "hvae", "hvae-conv")


def fitted_prior_options(record: dict[str, Any],
                         saved: bool = True) -> tuple[str, dict[str, Any]]:
    """(kind, options with defaults) of a config's `fitted_prior` record, checked. A `saved`
    record (a run's) takes the legacy value of an option it lacks; a new fit the default."""
    if not isinstance(record, dict) or "kind" not in record:
        raise ConfigError("fitted_prior must be a mapping with a 'kind'")
    kind = record["kind"]
    if kind not in FITTED_PRIORS:
        raise ConfigError(f"unknown fitted prior {kind!r}; choose from: "
                          f"{', '.join(FITTED_PRIORS)}")
    spec = FITTED_PRIORS[kind]
    options = {**spec.defaults, **(spec.legacy if saved else {})}
    for key, value in record.items():
        if key in ("kind", "source"):
            continue
        if key not in spec.defaults:
            raise ConfigError(f"fitted prior {kind} has no option {key!r}")
        options[key] = _checked_option(kind, key, value, spec)
    if saved and "sampler" not in record and \
            0 < options.get("sampling_steps", 0) < options.get("diffusion_steps", 0):
        options["sampler"] = "ddim"  # a record from before --sampler: DDIM by its steps
    return kind, options


def _checked_option(kind: str, key: str, value: Any, spec: FittedPriorSpec) -> Any:
    default, flag = spec.defaults[key], "--" + key.replace("_", "-")
    if isinstance(default, str):
        if value not in spec.choices[key]:
            raise ConfigError(f"{flag} {value}: choose from {', '.join(spec.choices[key])}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0 < value < 1:
            raise ConfigError(f"{flag} {value}: must lie in (0, 1)")
        return float(value)
    least = 0 if key == "sampling_steps" else 1
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"fitted prior {kind}: {key} must be an integer >= {least}, got "
                          f"{value!r}")
    if key == "sampling_steps" and 0 < value < MIN_DDIM_STEPS:
        raise ConfigError(f"--sampling-steps {value}: DDIM needs at least {MIN_DDIM_STEPS} "
                          "steps (0 samples ancestrally)")
    return value


def build_fitted_prior(record: dict[str, Any], latent_dim: int) -> nn.Module:
    kind, options = fitted_prior_options(record)
    return FITTED_PRIORS[kind].build(latent_dim, options)


def log_prob_nats(prior: nn.Module, codes: Tensor, batch: int = 4096) -> float:
    """Mean log p(z) over codes (N, L), in nats."""
    with torch.no_grad():
        p = prior(None)
        total = sum(float(p.log_prob(codes[i:i + batch]).double().sum())
                    for i in range(0, len(codes), batch))
    return total / max(len(codes), 1)


__all__ = ["DISCRETE_KINDS", "FITTED_PRIORS", "FITTED_PRIOR_MODELS", "FittedPriorSpec",
           "FlowPriorFitted", "GaussianPrior", "MixturePriorFitted", "build_fitted_prior",
           "fitted_prior_options", "log_prob_nats"]
