"""A vector-quantised autoencoder on the model contract, evaluated as the discrete latent model
it is (van den Oord et al. 2017, "Neural Discrete Representation Learning").

A convolutional encoder maps an image to a grid z_e(x) of G = h w vectors of D numbers; a
quantizer (`vaekit.quantizers`: a learned codebook, `vq`, or finite scalar quantisation, `fsq`,
Mentzer et al. 2023) replaces each by a code of a space of K, z_q(x), with indices c(x) in
[0, K)^G; the decoder reads the quantised grid. Gradients pass straight through the
quantisation; the commitment loss beta ||z_e - sg(z_q)||^2 enters as `LogWeightTerms.aux_loss`.

As a latent-variable model, q(c|x) is a point mass at c(x), so log q = 0 and, for any prior p(c),

    log p(x) = log sum_c p(c) p(x|c) >= log p(x | c(x)) + log p(c(x)),

the bound this model reports as its ELBO (and its importance-weighted estimate: with a point
mass every importance sample is the same code, so k adds nothing). Its "KL" is the rate
-log p(c(x)). Before a prior is fitted, p(c) is uniform over the K^G grids: log p(c) = -G log K,
a constant, so training maximises log p(x|c(x)) and the commitment alone. `vaekit fit-prior RUN
--kind autoregressive` fits an autoregressive p(c) to the frozen codes; the fitted run's bound
uses it, and only then can the model sample.

The latent vector (`encode`, `decode`, `latent_dim` = G) is the grid of code indices in raster
order, as floats: `encode(x).mean` gives (B, G) indices, and `decode` maps indices to p(x|c).
Each training epoch reports the code space's `usage` (the fraction of the K codes used) and
`perplexity` (exp of the entropy of the codes' frequencies) over the epoch's batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributions import Distribution

from vaekit.distributions import Likelihood, PointMass
from vaekit.errors import ConfigError, DataError
from vaekit.models.base import LatentVariableModel
from vaekit.models.standardize import Standardize
from vaekit.objectives.terms import LogWeightTerms
from vaekit.quantizers import Quantized, Quantizer, build_quantizer, code_statistics

#: metadata "only" of an option that applies to the codebook quantizer alone (shown, in a
#: run's description, only where it applies)
VQ_ONLY = ("quantizer", "vq")


@dataclass(frozen=True)
class VectorQuantizedOptions:
    """The VQ model's own settings (flags --vqvae-*)."""

    quantizer: Literal["vq", "fsq"] = field(default="vq", metadata={
        "help": "vq: a learned codebook (nearest code); fsq: finite scalar quantisation"})
    codebook_size: int = field(default=512, metadata={
        "only": VQ_ONLY, "help": "K, the codes of the codebook (vq)"})
    code_dim: int = field(default=64, metadata={
        "only": VQ_ONLY, "help": "D, the numbers of each code (vq)"})
    levels: tuple[int, ...] = field(default=(8, 5, 5, 5), metadata={
        "only": ("quantizer", "fsq"),
        "help": "fsq's levels per dimension: D = their count, K = their product"})
    codebook_update: Literal["ema", "loss"] = field(default="ema", metadata={
        "only": VQ_ONLY,
        "help": "how the codebook learns (vq): ema (decay --vqvae-decay) or the codebook loss"})
    decay: float = field(default=0.99, metadata={
        "only": VQ_ONLY, "help": "the codebook's EMA decay (vq)"})
    commitment: float = field(default=0.25, metadata={"help": "beta of the commitment loss"})
    restart_below: float = field(default=1e-3, metadata={
        "only": VQ_ONLY,
        "help": "restart a code whose moving count falls below this (vq; 0: never)"})
    widths: tuple[int, ...] = field(default=(32, 64), metadata={
        "help": "channels of each stride-2 stage: the grid is the image / 2^stages"})
    blocks: int = field(default=2, metadata={"help": "residual blocks at the grid's resolution"})

    def check(self) -> None:
        if not self.widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1
                                  for w in self.widths):
            raise ConfigError(f"--vqvae-widths needs one positive integer per stride-2 stage, "
                              f"got {self.widths!r}")
        if not isinstance(self.blocks, int) or isinstance(self.blocks, bool) or self.blocks < 0:
            raise ConfigError(f"--vqvae-blocks must be an integer >= 0, got {self.blocks!r}")

    def build_quantizer(self) -> Quantizer:
        if self.quantizer == "fsq":
            return build_quantizer("fsq", levels=self.levels)
        return build_quantizer(self.quantizer, codebook_size=self.codebook_size,
                               code_dim=self.code_dim, update=self.codebook_update,
                               decay=self.decay, commitment=self.commitment,
                               restart_below=self.restart_below)


class Residual(nn.Module):
    """x + conv1x1(relu(conv3x3(relu(x)))) (van den Oord et al. 2017's residual block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CodeTerms(LogWeightTerms):
    """The terms of the point mass q(c|x) at the code c(x), for each of k (identical) samples:
    log p(x|c) (k, B), log p(c) (B,) and log q = 0; the rate -log p(c) is the KL."""

    def __init__(self, log_px_z: Tensor, log_pc: Tensor, aux_loss: Tensor) -> None:
        self.log_px_z, self.log_pc = log_px_z, log_pc
        self.aux_loss = aux_loss

    @property
    def log_pz(self) -> Tensor:
        return self.log_pc.expand_as(self.log_px_z)  # (k, B)

    @property
    def log_qz(self) -> Tensor:
        return torch.zeros_like(self.log_px_z)  # a point mass: q(c(x)|x) = 1

    @property
    def kl(self) -> Tensor:
        return -self.log_pc  # (B,): KL(delta_c || p) = -log p(c)

    @property
    def kl_groups(self) -> list[Tensor]:
        return [self.kl]


class VectorQuantizedVAE(LatentVariableModel):
    """Encoder, quantizer and decoder over a grid of codes (see the module's docstring), for
    images (C, H, W) with H and W divisible by 2^len(widths). `prior` is None (uniform p(c))
    until `vaekit fit-prior --kind autoregressive` fits one."""

    code_counts: Tensor
    latent_kind = "discrete"
    #: no density over continuous latents (the codes are discrete): no annealed importance
    #: sampling
    has_joint_density = False

    def __init__(self, likelihood: Likelihood, event_shape: tuple[int, ...],
                 options: VectorQuantizedOptions, standardize: Standardize | None = None) -> None:
        if len(event_shape) != 3:
            raise ConfigError(f"--model vqvae needs images (C, H, W); the data have shape "
                              f"{tuple(event_shape)}")
        channels, height, width = event_shape
        s = 2 ** len(options.widths)
        if height % s or width % s:
            raise ConfigError(f"--model vqvae with {len(options.widths)} stride-2 stages needs H "
                              f"and W divisible by {s}; the images are {height}x{width}")
        params = likelihood.param_shape()
        if tuple(params[1:]) != (height, width):
            raise ConfigError(f"--model vqvae: the likelihood's parameters {params} are not per "
                              f"pixel of {height}x{width}")
        self.grid = (height // s, width // s)
        super().__init__(likelihood, event_shape, (math.prod(self.grid),), standardize)
        self.noise_dim = 0  # deterministic: q is a point mass
        self.options = options
        self.quantizer = options.build_quantizer()
        self.codebook_size, self.code_dim = self.quantizer.codebook_size, self.quantizer.code_dim
        widths = options.widths
        down: list[nn.Module] = []
        c = channels
        for i, w in enumerate(widths):
            down += [nn.Conv2d(c, w, 4, stride=2, padding=1)] + \
                ([nn.ReLU()] if i < len(widths) - 1 else [])
            c = w
        self.encoder = nn.Sequential(*down, *[Residual(c) for _ in range(options.blocks)],
                                     nn.ReLU(), nn.Conv2d(c, self.code_dim, 1))
        up: list[nn.Module] = [nn.Conv2d(self.code_dim, c, 3, padding=1),
                               *[Residual(c) for _ in range(options.blocks)]]
        for w in [*reversed(widths[:-1]), params[0]]:
            up += [nn.ReLU(), nn.ConvTranspose2d(c, w, 4, stride=2, padding=1)]
            c = w
        self.decoder = nn.Sequential(*up)
        self.prior: nn.Module | None = None
        #: the codes used in this epoch's training batches (reset by `epoch_metrics`)
        self.register_buffer("code_counts", torch.zeros(self.codebook_size, dtype=torch.float64))

    # ------------------------------------------------------------------ the hot path

    def quantize(self, y: Tensor) -> Quantized:
        """The quantised grid of inputs y (B, C, H, W) in the model's units."""
        return self.quantizer(self.encoder(y))

    def inference_cache(self, x: Tensor, condition: Tensor | None = None) -> Quantized:
        self.as_condition(condition, None, "encode")  # unconditional: refuses one
        return self.quantize(self.to_model_units(x))

    def log_prior(self, indices: Tensor) -> Tensor:
        """log p(c) (B,) of index grids (B, *grid): the fitted prior's, else uniform."""
        if self.prior is None:
            return torch.full(indices.shape[:1], -self.latent_dim * math.log(self.codebook_size),
                              dtype=self._dtype(), device=indices.device)
        return self.prior(None).log_prob(indices.flatten(1).to(self._dtype()))

    def terms(self, x: Tensor, k: int = 1, noise: Tensor | None = None,
              cache: Any = None, condition: Tensor | None = None) -> CodeTerms:
        self.as_condition(condition, None, "terms")
        y = self.to_model_units(x)
        q = self.quantize(y) if cache is None else cache
        if self.training and torch.is_grad_enabled():  # the global batch's: every process
            # keeps the same counts (DDP broadcasts rank 0's buffers before each forward)
            counts = torch.bincount(q.indices.reshape(-1), minlength=self.codebook_size)
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(counts)
            self.code_counts += counts
        log_px_z = self.log_px_z(self.decoder(q.codes), y)  # (B,)
        k = k if noise is None else noise.shape[0]
        return CodeTerms(log_px_z.unsqueeze(0).expand(k, -1), self.log_prior(q.indices),
                         q.aux_loss.mean())

    @property
    def evaluation_note(self) -> str:
        if self.prior is None:
            uniform = -self.latent_dim * math.log(self.codebook_size)
            prior = (f"the uniform prior, log p(c) = -G log K = -{self.latent_dim} log "
                     f"{self.codebook_size} = {uniform:.2f}")
        else:
            prior = f"the fitted {type(self.prior).__name__}'s exact log p(c)"
        return ("the discrete model's bound log p(x) >= log p(x|c(x)) + log p(c(x)), q a point "
                f"mass at the code c(x) (k adds nothing), with {prior}")

    def epoch_metrics(self) -> dict[str, float]:
        """The code space's usage and perplexity over this epoch's training batches (the
        global batches' under torch.distributed); the counts then start again."""
        counts = self.code_counts.clone()
        self.code_counts.zero_()
        if counts.sum() == 0:
            return {}
        indices = torch.repeat_interleave(torch.arange(self.codebook_size),
                                          counts.long().cpu())
        return {f"code_{k}": v for k, v in code_statistics(indices, self.codebook_size).items()}

    # ------------------------------------------------------------------ the latent vector

    def codes_of(self, z: Tensor) -> Tensor:
        """Index grids (*batch, h, w) int64 from latent vectors (*batch, G) of indices, checked:
        each must be an integer in [0, K)."""
        if z.dim() == 0 or z.shape[-1] != self.latent_dim:
            raise DataError(f"decode: expected code indices of shape (..., {self.latent_dim}) "
                            f"(a {self.grid[0]}x{self.grid[1]} grid), got {tuple(z.shape)}")
        bad = (z != z.round()) | (z < 0) | (z >= self.codebook_size)
        if bad.any():
            raise DataError(f"decode: code indices must be integers in [0, {self.codebook_size})"
                            f"; got {float(z[bad][0])!r}")
        return z.long().view(*z.shape[:-1], *self.grid)

    def decoder_params(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        self.as_condition(condition, None, "decode")
        c = self.codes_of(z)
        flat = c.reshape(-1, *self.grid)
        params = self.decoder(self.quantizer.lookup(flat).to(self._dtype()))
        return params.reshape(*c.shape[:-2], *params.shape[1:])

    def encode(self, x: Tensor | np.ndarray, *, condition: Any = None,
               grad: bool = False) -> Distribution:
        """The point mass at the code c(x): its mean is the index grid in raster order, (B, G)
        floats holding integers in [0, K)."""
        self.as_condition(condition, None, "encode")
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            q = self.quantize(self.to_model_units(self.as_input(x, "encode")))
            return PointMass(q.indices.flatten(1).to(self._dtype()))

    @property
    def can_sample(self) -> bool:
        return self.prior is not None

    def sample_latents(self, n: int, generator: torch.Generator | None = None,
                       temperature: float = 1.0) -> Tensor:
        """n index grids (n, G) from the fitted prior (its logits divided by the temperature)."""
        if self.prior is None:
            raise DataError("a VQ-VAE samples only through a prior fitted to its codes; fit "
                            "one with: vaekit fit-prior RUN --kind autoregressive --out NEW_RUN")
        codes: Tensor = self.prior.sample(n, generator=generator,  # type: ignore[operator]
                                          temperature=temperature)
        return codes.to(self._dtype())

