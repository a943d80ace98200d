"""A VAE with categorical latents on the model contract: N independent categorical variables of
K classes each (Jang et al. 2017; Maddison et al. 2017).

    q(z|x) = prod_n Cat(z_n; softmax(l_n(x))),   p(z) = prod_n Cat(z_n; pi_n),

with pi uniform (1/K) or learned (a categorical per variable, softmax of free logits). The
decoder reads z as N one-hot vectors, concatenated: the latent vector has N K numbers.

The model draws uniform noise u (k, B, N K) (`noise_kind = "uniform"`) and turns it into
Gumbel noise g = -log(-log u). Then, for logits l:

- evaluation (the module in eval mode) is of the discrete model: z = one_hot(argmax(l + g)) is
  an exact draw from q (the Gumbel-max trick), log q(z|x) and log p(z) are exact categorical
  log-probabilities, and the KL is the exact categorical KL sum_n sum_c q_nc log(q_nc / pi_nc);
- training uses the chosen estimator of the ELBO's gradient (`ESTIMATORS`):
  gumbel: z = softmax((l + g) / tau), relaxed (Gumbel-softmax / Concrete);
  straight-through: z = one_hot(argmax(l + g)) forward, the relaxed sample's gradient backward;
  reinforce-loo: z discrete, the score-function estimator with the leave-one-out baseline over
  the k samples (Kool et al. 2019), unbiased for the discrete ELBO:
      grad = 1/k sum_i [grad log p(x|z_i) + (f_i - 1/(k-1) sum_{j != i} f_j) grad log q(z_i|x)],
  f_i = log p(x|z_i); the KL's gradient is exact in every case.
  tau follows Jang et al.'s schedule tau = max(tau_min, tau_0 exp(-r step)), step counted in
  training steps (`temperature_at`), kept in the model's state so that a resumed run continues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import Likelihood
from vaekit.distributions.categorical import OneHotCategoricals
from vaekit.errors import ConfigError
from vaekit.models.base import LatentVariableModel
from vaekit.models.standardize import Standardize
from vaekit.objectives.terms import LogWeightTerms

#: The training estimators of the ELBO's gradient, by --categorical-estimator name.
ESTIMATORS = ("gumbel", "straight-through", "reinforce-loo")


@dataclass(frozen=True)
class CategoricalOptions:
    """The categorical model's own settings (flags --categorical-*); --latent-dim is N."""

    categories: int = field(default=10, metadata={"help": "K, the classes of each variable"})
    estimator: Literal["gumbel", "straight-through", "reinforce-loo"] = field(
        default="gumbel", metadata={"help": "the training gradient: gumbel (Gumbel-softmax), "
                                    "straight-through, reinforce-loo (unbiased; needs "
                                    "--iw-samples >= 2)"})
    prior: Literal["uniform", "learned"] = field(default="uniform", metadata={
        "help": "p(z): uniform over the classes, or learned (a categorical per variable)"})
    temperature: float = field(default=1.0, metadata={
        "help": "tau_0, the relaxation's starting temperature"})
    temperature_min: float = field(default=0.5, metadata={
        "help": "tau_min, the temperature's floor"})
    anneal_rate: float = field(default=3e-5, metadata={
        "help": "r in tau = max(tau_min, tau_0 exp(-r step)) (0: constant tau_0)"})

    def check(self) -> None:
        if not isinstance(self.categories, int) or isinstance(self.categories, bool) \
                or self.categories < 2:
            raise ConfigError(f"--categorical-categories must be an integer >= 2 (a variable "
                              f"of one class carries nothing), got {self.categories!r}")
        for name in ("temperature", "temperature_min"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"--categorical-{name.replace('_', '-')} must be a finite "
                                  f"number > 0 (the relaxation divides by it), got {value!r}")
        if not (math.isfinite(self.anneal_rate) and self.anneal_rate >= 0):
            raise ConfigError(f"--categorical-anneal-rate must be a finite number >= 0, got "
                              f"{self.anneal_rate!r}")


def temperature_at(step: int | Tensor, options: CategoricalOptions) -> float:
    """Jang et al.'s (2017) schedule: tau = max(tau_min, tau_0 exp(-r step))."""
    decayed = options.temperature * math.exp(-options.anneal_rate * float(step))
    return max(options.temperature_min, decayed)


def gumbel(u: Tensor) -> Tensor:
    """Gumbel(0, 1) noise g = -log(-log u) from uniform u in [0, 1) (u = 0 clamped)."""
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))


class CategoricalTerms(LogWeightTerms):
    """The terms of k samples of N categorical variables: log p(x|z) (k, B), the posterior's
    and prior's log-probabilities (B, N, K) and (N, K), and the discrete samples (k, B, N, K)."""

    def __init__(self, log_px_z: Tensor, log_q: Tensor, log_prior: Tensor,
                 z_hard: Tensor) -> None:
        self.log_px_z = log_px_z
        self.log_q, self.log_prior, self.z_hard = log_q, log_prior, z_hard
        self.units = log_q.shape[1]

    @property
    def log_pz(self) -> Tensor:
        return (self.z_hard * self.log_prior).sum((-2, -1))  # (k, B)

    @property
    def log_qz(self) -> Tensor:
        return (self.z_hard * self.log_q).sum((-2, -1))  # (k, B)

    def kl_units(self) -> Tensor:
        """The exact KL of each variable, sum_c q_c (log q_c - log pi_c), (B, N)."""
        return (self.log_q.exp() * (self.log_q - self.log_prior)).sum(-1)

    @property
    def kl(self) -> Tensor:
        return self.kl_units().sum(-1)  # (B,)

    @property
    def kl_groups(self) -> list[Tensor]:
        return [self.kl]


class CategoricalVAE(LatentVariableModel):
    """N categorical variables of K classes (see the module's docstring): an encoder body and
    head giving logits (B, N, K), a decoder of the N K one-hot numbers, a uniform or learned
    prior, and the training estimator of `options`."""

    steps: Tensor
    prior_logits: Tensor
    noise_kind = "uniform"
    latent_kind = "discrete"
    #: no joint density for annealed importance sampling: its z is discrete (no HMC moves)
    has_joint_density = False

    def __init__(self, body: nn.Module, features: int, decoder: nn.Module,
                 likelihood: Likelihood, event_shape: tuple[int, ...], variables: int,
                 options: CategoricalOptions, standardize: Standardize | None = None) -> None:
        super().__init__(likelihood, event_shape, (variables * options.categories,), standardize)
        if options.estimator == "gumbel":  # its training number is the relaxation's
            self.objective_name = "relaxed ELBO"
        self.options = options
        self.variables, self.categories = variables, options.categories
        self.body, self.decoder = body, decoder
        self.head = nn.Linear(features, variables * options.categories)
        shape = (variables, options.categories)
        if options.prior == "learned":
            self.prior_logits = nn.Parameter(torch.zeros(shape))
        else:
            self.register_buffer("prior_logits", torch.zeros(shape))
        #: training steps taken, for the temperature schedule (saved with the weights)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    @property
    def temperature(self) -> float:
        """The relaxation's temperature at this training step."""
        return temperature_at(int(self.steps), self.options)

    @property
    def evaluation_note(self) -> str:
        return ("the discrete model's: exact draws z ~ q(z|x), exact categorical "
                "log-probabilities and KL; never the training relaxation's")

    def epoch_metrics(self) -> dict[str, float]:
        """The temperature at the epoch's end, for the estimators that relax."""
        if self.options.estimator == "reinforce-loo":
            return {}
        return {"temperature": self.temperature}

    def logits(self, y: Tensor) -> Tensor:
        """The posterior's log-probabilities (B, N, K) for inputs in the model's units."""
        logits = self.head(self.body(y)).view(-1, self.variables, self.categories)
        return F.log_softmax(logits, -1)

    def log_prior(self) -> Tensor:
        return F.log_softmax(self.prior_logits, -1)  # (N, K)

    def inference_cache(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        self.as_condition(condition, None, "encode")  # unconditional: refuses one
        return self.logits(self.to_model_units(x))

    def decoder_params(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        self.as_condition(condition, None, "decode")
        if z.dim() == 2:
            return self.decoder(z)
        params = self.decoder(z.reshape(-1, z.shape[-1]))
        return params.reshape(*z.shape[:-1], *params.shape[1:])

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              cache: Any = None, condition: Tensor | None = None) -> CategoricalTerms:
        """k samples of z for x (B, *event_shape): discrete in eval mode, the estimator's in
        training mode (see the module's docstring)."""
        self.as_condition(condition, None, "terms")
        y = self.to_model_units(x)
        log_q = self.logits(y) if cache is None else cache  # (B, N, K)
        if noise is None:
            noise = self.draw_noise(k, x.shape[0], device=x.device)
        g = gumbel(noise).view(noise.shape[0], -1, self.variables, self.categories)  # (k,B,N,K)
        perturbed = log_q + g  # (k, B, N, K)
        z_hard = F.one_hot(perturbed.argmax(-1), self.categories).to(log_q.dtype)  # (k,B,N,K)
        estimator = self.options.estimator if self.training else "discrete"
        if estimator in ("gumbel", "straight-through"):
            if torch.is_grad_enabled():
                self.steps += 1
            relaxed = torch.softmax(perturbed / self.temperature, -1)
            z = relaxed if estimator == "gumbel" else z_hard + relaxed - relaxed.detach()
        else:
            z = z_hard
        log_px_z = self.log_px_z(self.decoder_params(z.flatten(-2)), y)  # (k, B)
        if estimator == "reinforce-loo":
            log_px_z = log_px_z + _score_surrogate(log_px_z.detach(), z_hard, log_q)
        return CategoricalTerms(log_px_z, log_q, self.log_prior(), z_hard)

    def encode(self, x: Tensor | np.ndarray, *, condition: Any = None,
               grad: bool = False) -> Distribution:
        """q(z|x) over the latent vector (B, N K): a one-hot categorical per variable; its
        `probs` are each variable's class probabilities (B, N, K)."""
        self.as_condition(condition, None, "encode")
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            log_q = self.logits(self.to_model_units(self.as_input(x, "encode")))
            return OneHotCategoricals(log_q)

    def mode(self, x: Tensor | np.ndarray) -> Tensor:
        """Each variable's most probable class, one-hot and flattened, (B, N K)."""
        log_q = self.logits(self.to_model_units(self.as_input(x, "encode")))  # (B, N, K)
        return F.one_hot(log_q.argmax(-1), self.categories).to(log_q.dtype).flatten(-2)

    @torch.no_grad()
    def reconstruct(self, x: Tensor | np.ndarray, condition: Any = None) -> Tensor:
        """The mean of p(x|z) at z = the posterior's mode (a discrete code)."""
        self.as_condition(condition, None, "reconstruct")
        return self.decode_mean(self.mode(x))

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Tensor:
        """n draws (n, N K) from p(z), by Gumbel-max on the prior's logits divided by the
        temperature (0: each variable's most probable class)."""
        log_prior = self.log_prior()  # (N, K)
        if temperature == 0:
            classes = log_prior.argmax(-1).expand(n, -1)  # (n, N)
        else:
            u = torch.rand(n, *log_prior.shape, generator=generator, device=log_prior.device)
            classes = (log_prior / temperature + gumbel(u)).argmax(-1)  # (n, N)
        return F.one_hot(classes, self.categories).to(log_prior.dtype).flatten(-2)


def _score_surrogate(f: Tensor, z_hard: Tensor, log_q: Tensor) -> Tensor:
    """0 in value, whose gradient is the leave-one-out score term (Kool et al. 2019): for f
    (k, B) and the samples' log q(z_i|x), (f_i - mean_{j != i} f_j) grad log q(z_i|x)."""
    k = f.shape[0]  # one sample: no other to take a baseline from (plain REINFORCE)
    baseline = (f.sum(0, keepdim=True) - f) / (k - 1) if k > 1 else torch.zeros_like(f)
    log_qz = (z_hard * log_q).sum((-2, -1))  # (k, B)
    score = (f - baseline) * log_qz
    return score - score.detach()
