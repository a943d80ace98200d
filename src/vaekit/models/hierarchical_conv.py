"""The convolutional family of the top-down hierarchical VAE: latents as feature maps, several
groups per resolution, residual bottleneck blocks (Child 2021, VDVAE; Vahdat & Kautz 2020).

The bottom-up path runs residual blocks at each resolution (the data's, then halved by average
pooling) and keeps each resolution's activations d_r. The top-down path starts from a learned
state at the lowest resolution and, resolution by resolution upwards, for each group:

    (mu_p, log var_p, h_p) = prior block(s)          p(z_g | z_>g)
    (dmu, dlog var)        = posterior block([s, d_r])  q(z_g | z_>g, x), relative to p
    s <- s + h_p + W_z z_g, then a residual block

with the state upsampled (nearest) between resolutions. A 1x1 convolution of the final state
gives the likelihood's parameters per pixel. The groups' draws, KLs and log-densities are the
dense family's (`GroupDraw`, `HierarchicalTerms`), on the maps flattened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaekit.distributions import Likelihood
from vaekit.errors import ConfigError
from vaekit.models.hierarchical import TopDownVAE
from vaekit.models.standardize import Standardize
from vaekit.models.top_down_terms import (
    POSTERIOR_LOG_VAR_BOUND,
    PRIOR_LOG_VAR_BOUND,
    GroupDraw,
    soft_clamp,
)


@dataclass(frozen=True)
class ConvHierarchicalOptions:
    """The convolutional hierarchy's own settings (flags --hvae-conv-*)."""

    widths: tuple[int, ...] = field(default=(32, 64, 64), metadata={
        "help": "channels of the residual stream at each resolution, from the data's down"})
    groups: tuple[int, ...] = field(default=(1, 2, 2), metadata={
        "help": "latent groups at each resolution, same order"})
    latent_channels: int = field(default=8, metadata={
        "help": "channels of each latent group's feature map"})
    blocks: int = field(default=1, metadata={
        "help": "residual bottleneck blocks per resolution on the bottom-up path"})

    def check(self) -> None:
        for name in ("widths", "groups"):
            sizes = getattr(self, name)
            if not sizes or any(not isinstance(s, int) or isinstance(s, bool) or s < 0
                                for s in sizes):
                raise ConfigError(f"--hvae-conv-{name} needs one integer >= 0 per resolution, "
                                  f"got {sizes!r}")
        if any(w == 0 for w in self.widths):
            raise ConfigError(f"--hvae-conv-widths must be positive, got {self.widths!r}")
        if len(self.groups) != len(self.widths):
            raise ConfigError(f"--hvae-conv-groups needs one count per resolution: "
                              f"{len(self.widths)} widths, {len(self.groups)} group counts")
        if sum(self.groups) == 0:
            raise ConfigError("--hvae-conv-groups: at least one latent group is needed")
        for name in ("latent_channels", "blocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"--hvae-conv-{name.replace('_', '-')} must be a positive "
                                  f"integer, got {value!r}")


class Block(nn.Module):
    """A bottleneck block: 1x1 to `mid` channels, two 3x3, 1x1 to `out`, GELU before each
    (VDVAE). Residual where `residual` (in == out); its last convolution starts scaled by
    `scale`, so a deep stack starts near the identity."""

    def __init__(self, n_in: int, mid: int, out: int, residual: bool = True,
                 scale: float = 1.0) -> None:
        super().__init__()
        self.residual = residual
        last = nn.Conv2d(mid, out, 1)
        with torch.no_grad():
            last.weight.mul_(scale)
        self.convs = nn.ModuleList([nn.Conv2d(n_in, mid, 1), nn.Conv2d(mid, mid, 3, padding=1),
                                    nn.Conv2d(mid, mid, 3, padding=1), last])

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for conv in self.convs:
            h = conv(F.gelu(h))
        return x + h if self.residual else h


class ConvHierarchicalVAE(TopDownVAE):
    """A top-down hierarchy of feature-map latents (see the module's docstring) for images
    (C, H, W) with H and W divisible by 2^(resolutions - 1)."""

    top_group = 0  # the groups are listed from the top

    def __init__(self, likelihood: Likelihood, event_shape: tuple[int, ...],
                 options: ConvHierarchicalOptions, standardize: Standardize | None = None) -> None:
        if len(event_shape) != 3:
            raise ConfigError(f"--model hvae-conv needs images (C, H, W); the data have shape "
                              f"{tuple(event_shape)}")
        channels, height, width = event_shape
        n_res = len(options.widths)
        if height % 2 ** (n_res - 1) or width % 2 ** (n_res - 1):
            raise ConfigError(f"--model hvae-conv with {n_res} resolutions needs H and W "
                              f"divisible by {2 ** (n_res - 1)}; the images are {height}x{width}")
        shapes = [(height // 2 ** r, width // 2 ** r) for r in range(n_res)]
        zc = options.latent_channels
        order = [(r, g) for r in reversed(range(n_res)) for g in range(options.groups[r])]
        super().__init__(likelihood, event_shape,
                         tuple(zc * math.prod(shapes[r]) for r, _ in order), standardize)
        #: (H_r, W_r) of each resolution, the data's first
        self.shapes = shapes
        #: (resolution, group) of each latent group, in the order the top-down path draws them
        #: (the top first: unlike the dense hierarchy's, these groups are listed from the top)
        self.order = order
        self.options = options
        widths, blocks = options.widths, options.blocks
        scale = 1 / math.sqrt(n_res * blocks + 2 * sum(options.groups))

        def mid(w: int) -> int:
            return max(8, w // 4)

        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.encoder_stages = nn.ModuleList(
            nn.Sequential(*[Block(w, mid(w), w, scale=scale) for _ in range(blocks)])
            for w in widths)
        self.encoder_downs = nn.ModuleList(nn.Conv2d(widths[r], widths[r + 1], 1)
                                           for r in range(n_res - 1))
        low = self.shapes[-1]
        self.initial_state = nn.Parameter(torch.zeros(widths[-1], *low))
        self.decoder_ups = nn.ModuleList(nn.Conv2d(widths[r + 1], widths[r], 1)
                                         for r in range(n_res - 1))
        # zero at the start: p(z_g | z_>g) = N(0, I) and no feature, as in VDVAE
        self.prior_blocks = nn.ModuleList(
            Block(widths[r], mid(widths[r]), 2 * zc + widths[r], residual=False, scale=0.0)
            for r, _ in self.order)
        self.posterior_blocks = nn.ModuleList(
            Block(2 * widths[r], mid(widths[r]), 2 * zc, residual=False, scale=0.1)
            for r, _ in self.order)
        self.z_projections = nn.ModuleList(nn.Conv2d(zc, widths[r], 1) for r, _ in self.order)
        self.state_blocks = nn.ModuleList(Block(widths[r], mid(widths[r]), widths[r], scale=scale)
                                          for r, _ in self.order)
        self.output = nn.Conv2d(widths[0], likelihood.param_shape()[0], 1)
        if tuple(likelihood.param_shape()[1:]) != (height, width):
            raise ConfigError(f"--model hvae-conv: the likelihood's parameters "
                              f"{likelihood.param_shape()} are not per pixel of {height}x{width}")

    @property
    def group_names(self) -> list[str]:
        """Each group by its resolution, in the order drawn: the top (coarsest) first."""
        names = [f"{h}x{w} #{g + 1}" for (h, w), g in ((self.shapes[r], g) for r, g in self.order)]
        return [name + (" (top)" if i == 0 else " (bottom)" if i == len(names) - 1 else "")
                for i, name in enumerate(names)]

    def _bottom_up(self, y: Tensor) -> list[Tensor]:
        """The activations d_r at each resolution, (B, width_r, H_r, W_r)."""
        h = self.stem(y)
        features = []
        for r, stage in enumerate(self.encoder_stages):
            if r:
                h = self.encoder_downs[r - 1](F.avg_pool2d(h, 2))
            h = stage(h)
            features.append(h)
        return features

    def _prior(self, i: int, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        zc = self.options.latent_channels
        mu, log_var, feature = self.prior_blocks[i](state).split([zc, zc, state.shape[1]], dim=1)
        return mu, soft_clamp(log_var, PRIOR_LOG_VAR_BOUND), feature

    def _top_down(self, n: int, features: list[Tensor] | None, eps: list[Tensor],
                  given: list[Tensor] | None = None, temperature: float = 1.0,
                  top_latent: Tensor | None = None
                  ) -> tuple[list[GroupDraw], list[Tensor], Tensor]:
        """The top-down path for n rows (see `TopDownVAE`); the groups in the order of
        `self.order`, the lowest resolution first."""
        zc = self.options.latent_channels
        state = self.initial_state.expand(n, *self.initial_state.shape)
        draws, zs = [], []
        resolution = len(self.shapes) - 1
        for i, (r, _) in enumerate(self.order):
            while resolution > r:
                resolution -= 1
                state = self.decoder_ups[resolution](F.interpolate(state, scale_factor=2.0))
            shape = (n, zc, *self.shapes[r])
            mu_p, log_var_p, feature = self._prior(i, state)
            if given is not None:
                z = given[i].view(shape)
                draws.append(GroupDraw.of_prior(given[i], mu_p.flatten(1), log_var_p.flatten(1)))
            elif features is None and i == 0 and top_latent is not None:
                z = top_latent.reshape(shape)  # the top group from a fitted prior
            elif features is None:
                z = mu_p + torch.exp(0.5 * log_var_p) * (temperature * eps[i].view(shape))
            else:
                dmu, dlog_var = self.posterior_blocks[i](
                    torch.cat([state, features[r]], 1)).chunk(2, dim=1)
                dlog_var = soft_clamp(dlog_var, POSTERIOR_LOG_VAR_BOUND)
                z = mu_p + dmu + torch.exp(0.5 * (log_var_p + dlog_var)) * eps[i].view(shape)
                draws.append(GroupDraw(log_var_p.flatten(1), dmu.flatten(1),
                                       dlog_var.flatten(1), eps[i]))
            zs.append(z.flatten(1))
            state = self.state_blocks[i](state + feature + self.z_projections[i](z))
        while resolution > 0:
            resolution -= 1
            state = self.decoder_ups[resolution](F.interpolate(state, scale_factor=2.0))
        return draws, zs, self.output(state)
