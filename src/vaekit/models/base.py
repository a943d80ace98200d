"""The model contract: what a latent-variable model gives the rest of vaekit.

The trainer, evaluation, diagnostics, the CLI and the run directory hold a `LatentVariableModel`
and use only what is written here, so a new latent structure (one layer, a top-down hierarchy,
later discrete codes) is one more implementation, never a second copy of the loop.

A model gives:

- `terms(x, k, noise, cache)`: the log-weight terms of k samples (`vaekit.objectives.terms`):
  log p(x|z), log p(z) and log q(z|x) summed over every latent group, each (k, B); the KL of
  each group, in closed form given the samples above it where it has one; and any auxiliary
  loss (`LogWeightTerms.aux_loss`) the objective adds.
- its randomness as one tensor: `draw_noise(k, B, generator)` is noise of shape
  (k, B, noise_dim) of the kind the model declares (`noise_kind`, a key of `NOISE_KINDS`):
  standard normal N(0, 1) for a reparameterized Gaussian (the default), or uniform U[0, 1)
  for a categorical model, which turns it into Gumbel noise g = -log(-log u) (the Gumbel-max
  trick for exact discrete samples, the Gumbel-softmax relaxation for training). It is drawn
  by the caller from the trainer's generator, whatever its kind. `terms` consumes it
  deterministically, so a resumed run draws the same numbers, and N DDP processes each take
  their slice `noise[:, rows]` of one global draw and train as one.
- `inference_cache(x)`: whatever `terms` may reuse across chunks of samples of the same x (the
  encoder's pass), so the importance-weighted estimate runs the encoder once per example.
- the latent space as one vector of `latent_dim` = sum(`latent_groups`) numbers, the groups
  concatenated: `encode(x)` gives a distribution over it (for a hierarchy, the groups'
  posteriors along the posterior means), `decode(z)` maps it to p(x|z), `sample(n,
  temperature=T)` draws from the prior with its noise scaled by T, and `reconstruct(x)` decodes
  the posterior mean.
- the joint density at any latent vector, for a model with continuous latents
  (`has_joint_density`): `log_joint(x, z)` = log p(x|z) + log p(z) (*batch,), differentiable in
  z, from `prior_and_decoder(z)`, which gives log p(z) and the likelihood's parameters in one
  pass (a hierarchy's log p(z) = sum_l log p(z_l | z_>l), top-down from the given z). MCMC
  evaluation (annealed importance sampling) needs nothing else.
- a prior fitted afterwards to its codes (`vaekit fit-prior`), over `prior_slice` of the latent
  vector (all of it for one layer; a hierarchy's top group), as its `prior`.
- the data's units: `standardize` (or None), applied on the way in and undone on the way out,
  its Jacobian included in log p(x|z).
- a condition, where the model is conditional (`condition_dim` > 0: a conditional VAE, Sohn et
  al. 2015, on class labels): every call that sees x or z also takes `condition`. The public
  calls (`encode`, `decode`, `elbo`, `sample`, `reconstruct`) take class labels (an int or name
  for all rows, or one per row); `terms`, `inference_cache` and `decoder_params`, the hot path,
  take them one-hot, (B, condition_dim) floats, as `as_condition` makes them. An unconditional
  model refuses a condition, and a conditional one refuses to run without one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import Likelihood
from vaekit.errors import DataError
from vaekit.models.inputs import as_float_tensor, is_whole
from vaekit.models.standardize import Standardize
from vaekit.objectives import elbo as elbo_of_terms
from vaekit.objectives.terms import LogWeightTerms

#: The noise a model may draw for `terms`, by `noise_kind`: each fills a (k, B, noise_dim)
#: tensor from the caller's generator (normal: N(0, 1); uniform: U[0, 1)).
NOISE_KINDS = {"normal": torch.randn, "uniform": torch.rand}


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
    #: False for a model with no density over continuous latents (a plain autoencoder, discrete
    #: codes): no `log_joint`, so no annealed importance sampling
    has_joint_density: bool = True
    #: the kind of noise `draw_noise` gives (a key of NOISE_KINDS)
    noise_kind: str = "normal"
    #: what its latent variables are, named beside every reported bound ("continuous", or
    #: "discrete": the numbers are the discrete model's, never a relaxation's)
    latent_kind: str = "continuous"

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
        #: the numbers (of `noise_kind`) that `terms` consumes per sample and example
        self.noise_dim = self.latent_dim
        #: the names of the classes a conditional model is conditioned on (label order); () for
        #: an unconditional model
        self.condition_classes: tuple[str, ...] = ()
        self.config: Any = None  # the vaekit.Config it was built from, if any
        #: config.json's record of the data (binarization, dequantization, ...), if any
        self.run_record: dict[str, Any] = {}

    @property
    def group_names(self) -> list[str]:
        """A name for each latent group, in the order of `latent_groups` (and of every per-group
        report): by default numbered from the data up."""
        n = len(self.latent_groups)
        if n == 1:
            return ["z"]
        return [f"group {i + 1}" + (" (bottom)" if i == 0 else " (top)" if i == n - 1 else "")
                for i in range(n)]

    @property
    def evaluated_name(self) -> str:
        """What its evaluated bound is called in reports: "discrete ELBO" where z is discrete
        (the discrete model's, never a relaxation's), else the objective's name."""
        if self.latent_kind == "continuous":
            return self.objective_name
        return f"{self.latent_kind} ELBO"

    @property
    def evaluation_note(self) -> str | None:
        """What its evaluated numbers are, where a reader could mistake them (a discrete
        model's): said beside them in every report; None for a continuous model."""
        return None

    @property
    def prior_slice(self) -> slice:
        """The part of the latent vector whose prior `vaekit fit-prior` replaces (as `prior`):
        all of it for one layer; a hierarchy's top group."""
        return slice(0, self.latent_dim)

    @property
    def condition_dim(self) -> int:
        """The length of the one-hot condition (0: unconditional)."""
        return len(self.condition_classes)

    @property
    def data_dim(self) -> int:
        return math.prod(self.event_shape)

    # ------------------------------------------------------------------ what a model defines

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              cache: Any = None, condition: Tensor | None = None) -> LogWeightTerms:
        """The log-weight terms of k samples for x (B, *event_shape) in the data's units, with
        `noise` (k, B, noise_dim) (drawn here if None), a `cache` from `inference_cache(x)` and,
        for a conditional model, the one-hot `condition` (B, condition_dim)."""
        raise NotImplementedError

    def inference_cache(self, x: Tensor, condition: Tensor | None = None) -> Any:
        """What `terms(x, cache=...)` may reuse across chunks of samples of the same x."""
        return None

    def encode(self, x: Tensor | np.ndarray, *, condition: Any = None,
               grad: bool = False) -> Distribution:
        """A distribution over the latent vector (B, latent_dim) given x (B, *event_shape) (and
        its class labels, for a conditional model)."""
        raise NotImplementedError

    def decoder_params(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """The likelihood's parameters (*batch, *param_shape) for latents (*batch, latent_dim)
        (and a one-hot condition (*batch, condition_dim)), in the model's units
        (differentiable; no input checks)."""
        raise NotImplementedError

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Tensor:
        """n latent vectors (n, latent_dim) from the prior, its noise scaled by `temperature`."""
        raise NotImplementedError

    def prior_and_decoder(self, z: Tensor, condition: Tensor | None = None
                          ) -> tuple[Tensor, Tensor]:
        """(log p(z) (*batch,), the likelihood's parameters (*batch, *param_shape)) at latents
        z (*batch, latent_dim) (and a one-hot condition), differentiable in z; no input
        checks. A model without `has_joint_density` refuses."""
        raise NotImplementedError

    @property
    def can_sample(self) -> bool:
        """Whether `sample` has a prior to draw from (an autoencoder: once one is fitted)."""
        return True

    def epoch_metrics(self) -> dict[str, float]:
        """Numbers about its latents that the model reports with every training epoch's metrics
        (a categorical model's temperature, a code space's usage), called once at the end of
        each epoch; none by default."""
        return {}

    # ------------------------------------------------------------------ given by the contract

    def draw_noise(self, k: int, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | None = None) -> Tensor:
        """Noise of shape (k, batch, noise_dim) for `terms`, of the model's `noise_kind`."""
        device = device or self._device()
        draw = NOISE_KINDS[self.noise_kind]
        return draw(k, batch, self.noise_dim, generator=generator, device=device)

    def joint_terms(self, x: Tensor, z: Tensor,
                    condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(log p(z), log p(x|z)), each (*batch,), for x (B, *event_shape) in the data's units
        and latents z (*batch, B, latent_dim) (x broadcasts over the leading dimensions), with
        a one-hot `condition` (B, condition_dim) for a conditional model."""
        log_pz, params = self.prior_and_decoder(z, condition)
        return log_pz, self.log_px_z(params, self.to_model_units(x))

    def log_joint(self, x: Tensor, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x, z) = log p(x|z) + log p(z), (*batch,), differentiable in z (see
        `joint_terms`): the unnormalised posterior that MCMC samples."""
        log_pz, log_px_z = self.joint_terms(x, z, condition)
        return log_pz + log_px_z

    def reseed(self, seed: int) -> None:
        """Restart, from `seed`, the noise that parts of the model draw inside a log-density
        rather than from `draw_noise` (a diffusion prior's forward trajectories, Hutchinson's
        probes): each part with a `reseed(seed)` of its own. Evaluation calls it with its seed,
        so that an estimate depends on the seed, not on what ran before it in the process."""
        for module in self.modules():
            part = getattr(module, "reseed", None) if module is not self else None
            if callable(part):
                part(seed)

    def decode(self, z: Tensor | np.ndarray, *, condition: Any = None,
               grad: bool = False) -> Distribution:
        """p(x|z) (or p(x|z, c)) for latents z of shape (*batch, latent_dim), in the data's
        units."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            z = self.as_latent(z)
            c = self.as_condition(condition, _rows(z), "decode")
            p = self.likelihood(self.decoder_params(z, c))
            return p if self.standardize is None else self.standardize.push(p)

    def decode_mean(self, z: Tensor | np.ndarray, *, condition: Any = None,
                    grad: bool = False) -> Tensor:
        """The mean of p(x|z), (*batch, *event_shape), without building the distribution."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            z = self.as_latent(z)
            c = self.as_condition(condition, _rows(z), "decode")
            return self.to_data_units(self.likelihood.mean(self.decoder_params(z, c)))

    def elbo(self, x: Tensor | np.ndarray, k: int = 1, *, condition: Any = None,
             grad: bool = False) -> dict[str, Tensor]:
        """Per-example ELBO, reconstruction E_q[log p(x|z)] and KL(q||p), in nats, each (B,)."""
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            x = self.as_input(x, "elbo")
            c = self.as_condition(condition, len(x), "elbo")
            return elbo_of_terms(self.terms(x, k, condition=c))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean: bool = True,
               temperature: float = 1.0, condition: Any = None) -> Tensor:
        """n draws x ~ p(x|z), z ~ p(z) (its noise scaled by `temperature`): the likelihood's
        mean (default) or a sample of it. A conditional model draws x ~ p(x|z, c) for the class
        `condition` (one for all, or one per draw)."""
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        c = self.as_condition(condition, n, "sample")
        params = self.decoder_params(self.sample_latents(n, generator, temperature), c)
        if mean:
            return self.to_data_units(self.likelihood.mean(params))
        device = params.device  # p(x|z) draws with torch's sampler, seeded from `generator`
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if generator is not None:
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator,
                                                    device=generator.device)))
            return self.to_data_units(self.likelihood(params).sample())

    @torch.no_grad()
    def reconstruct(self, x: Tensor | np.ndarray, condition: Any = None) -> Tensor:
        """The mean of p(x|z) at z = the posterior mean of q(z|x)."""
        return self.decode_mean(self.encode(x, condition=condition).mean, condition=condition)

    # ------------------------------------------------------------------ conditions

    def as_condition(self, condition: Any, rows: int | None, where: str = "input") -> Tensor | None:
        """Class labels as the one-hot condition (rows, condition_dim) that `terms` and
        `decoder_params` take: an int or a class name for every row, or one per row (a
        sequence, an integer array or tensor of length `rows`); (condition_dim,) for a single
        latent vector (`rows` None). None for an unconditional model, which refuses one."""
        labels = self.class_labels(condition, rows, where)
        return None if labels is None else F.one_hot(labels, self.condition_dim).to(self._dtype())

    def class_labels(self, condition: Any, rows: int | None, where: str = "input") -> Tensor | None:
        """The class indices (rows,) (or () for `rows` None) that `as_condition` one-hot
        encodes, checked the same way; None for an unconditional model, which refuses one."""
        if self.condition_dim == 0:
            if condition is not None:
                raise DataError(f"{where}: this model is not conditional; it takes no condition")
            return None
        names = self.condition_classes
        if condition is None:
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            raise DataError(f"{where}: this model is conditioned on class labels ({len(names)} "
                            f"classes: {shown}); pass condition= a class or one per row")
        labels = self._labels(condition, where)
        if labels.dim() == 0:
            return labels.expand(rows) if rows is not None else labels
        if rows is None or labels.shape != (rows,):
            raise DataError(f"{where}: expected one class for all rows or one per row "
                            f"({rows}), got shape {tuple(labels.shape)}")
        return labels

    def _labels(self, condition: Any, where: str) -> Tensor:
        """Class indices (a 0-d or 1-d int64 tensor on the model's device) from ints, names,
        arrays or tensors; a clear error for a class the model does not have."""
        names = self.condition_classes
        if isinstance(condition, np.ndarray) and condition.dtype.kind in "iu":
            condition = torch.from_numpy(condition)
        if isinstance(condition, Tensor) and not condition.is_floating_point() \
                and condition.dtype != torch.bool and condition.dim() <= 1:
            labels = condition.to(device=self._device(), dtype=torch.int64)  # a dataset's
            bad = (labels < 0) | (labels >= len(names))
            if not bad.any():
                return labels
            condition = labels[bad][:1]  # reported below
        values = condition.tolist() if isinstance(condition, (Tensor, np.ndarray)) else condition
        scalar = not isinstance(values, (list, tuple))
        items: list[Any] = [values] if scalar else list(values)
        out = []
        for item in items:
            if isinstance(item, str):
                if item not in names:
                    raise DataError(f"{where}: unknown class {item!r}; the model's classes are "
                                    f"{', '.join(names)}")
                out.append(names.index(item))
            elif is_whole(item) and 0 <= item < len(names):
                out.append(int(item))
            else:
                raise DataError(f"{where}: a class must be an integer in [0, {len(names) - 1}] "
                                f"or one of the class names; got {item!r}")
        t = torch.tensor(out, dtype=torch.int64, device=self._device())
        return t[0] if scalar else t

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
        t = as_float_tensor(x, where, self._dtype(), self._device())
        n = len(self.event_shape)
        if t.dim() < n + 1 or tuple(t.shape[-n:]) != self.event_shape:
            raise DataError(f"{where}: expected examples of shape {self.event_shape} in a batch "
                            f"(B, {', '.join(map(str, self.event_shape))}), got shape "
                            f"{tuple(t.shape)}")
        return t

    def as_latent(self, z: Tensor | np.ndarray) -> Tensor:
        t = as_float_tensor(z, "decode", self._dtype(), self._device())
        if t.dim() == 0 or t.shape[-1] != self.latent_dim:
            raise DataError(f"decode: expected latents of shape (..., {self.latent_dim}), got "
                            f"shape {tuple(t.shape)}")
        return t


def _rows(z: Tensor) -> int | None:
    """The rows a condition must match for latents z (*batch, latent_dim): the last batch
    dimension, or None for a single vector."""
    return int(z.shape[-2]) if z.dim() >= 2 else None
