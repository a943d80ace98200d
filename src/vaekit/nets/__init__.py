"""Parameter-only building blocks: encoder bodies x -> features and decoders z -> likelihood
parameters, for MLP, convolutional and purely linear networks.

Layer: distributions, networks, flows, just above data; it may import the foundation and
`vaekit.data` only (see tests/test_architecture.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaekit.errors import ConfigError

#: Activation layers by --activation name: the one list of choices.
ACTIVATION_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid,
}


def mlp(sizes: list[int], activation: str, *, final_activation: bool) -> nn.Sequential:
    """Dense layers sizes[0] -> ... -> sizes[-1] with `activation` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(sizes) - 2:
            layers.append(ACTIVATION_LAYERS[activation]())
    return nn.Sequential(*layers)


class Unflatten(nn.Module):
    """(*batch, prod(shape)) -> (*batch, *shape), for any number of batch dimensions."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], *self.shape)


class FlattenEvent(nn.Module):
    """(*batch, *event_shape) -> (*batch, prod(event_shape))."""

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_ndim = len(event_shape)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(-self.event_ndim) if self.event_ndim > 1 else x


def with_condition(h: Tensor, condition: Tensor | None) -> Tensor:
    """Features (*batch, F) with a one-hot condition (batch[-1], C) appended: (*batch, F + C)."""
    if condition is None:
        return h
    return torch.cat([h, condition.expand(*h.shape[:-1], condition.shape[-1])], dim=-1)


class DenseBody(nn.Sequential):
    """Flatten x, append the condition where there is one (the conditional VAE's encoder sees
    [x, c], Sohn et al. 2015), then the dense layers (if any)."""

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        layers = iter(self)
        h = with_condition(next(layers)(x), condition)
        for layer in layers:
            h = layer(h)
        return h


class ConvEncoder(nn.Module):
    """Stride-2 4x4 convolutions (each halves H and W), then a dense layer: images (C, H, W).
    A condition joins the flattened feature maps at the dense layer."""

    def __init__(self, event_shape: tuple[int, ...], channels: tuple[int, ...], hidden: int,
                 activation: str, condition_dim: int = 0) -> None:
        super().__init__()
        c, h, w = event_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), ACTIVATION_LAYERS[activation]()]
            c, h, w = out, h // 2, w // 2
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(c * h * w + condition_dim, hidden),
                                   ACTIVATION_LAYERS[activation]())

    def forward(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        batch = x.shape[:-3]
        h = self.conv(x.reshape(-1, *x.shape[-3:])).flatten(1)  # (B, C*H*W)
        return self.dense(with_condition(h, condition)).reshape(*batch, -1)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder: dense layer to a (C, H/2^s, W/2^s) map, then transposed convs."""

    def __init__(self, event_shape: tuple[int, ...], channels: tuple[int, ...], hidden: int,
                 latent_dim: int, activation: str) -> None:
        super().__init__()
        c_out, h, w = event_shape
        s = 2 ** len(channels)
        self.start = (channels[-1], h // s, w // s)
        self.dense = mlp([latent_dim, hidden, math.prod(self.start)], activation,
                         final_activation=True)
        layers: list[nn.Module] = []
        chans = [*list(channels[::-1]), c_out]
        for i, (a, b) in enumerate(itertools.pairwise(chans)):
            layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
            if i < len(chans) - 2:
                layers.append(ACTIVATION_LAYERS[activation]())
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        batch = z.shape[:-1]
        h = self.dense(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        out = self.deconv(h)
        return out.reshape(*batch, *out.shape[1:])


def _linear_encoder(event_shape: tuple[int, ...], hidden: tuple[int, ...],
                    channels: tuple[int, ...], activation: str,
                    condition_dim: int) -> tuple[nn.Module, int]:
    return DenseBody(FlattenEvent(event_shape)), math.prod(event_shape) + condition_dim


def _linear_decoder(event_shape: tuple[int, ...], latent_dim: int, hidden: tuple[int, ...],
                    channels: tuple[int, ...], activation: str) -> nn.Module:
    return nn.Sequential(nn.Linear(latent_dim, math.prod(event_shape)), Unflatten(event_shape))


def _mlp_encoder(event_shape: tuple[int, ...], hidden: tuple[int, ...],
                 channels: tuple[int, ...], activation: str,
                 condition_dim: int) -> tuple[nn.Module, int]:
    body = mlp([math.prod(event_shape) + condition_dim, *hidden], activation,
               final_activation=True)
    return DenseBody(FlattenEvent(event_shape), body), hidden[-1]


def _mlp_decoder(event_shape: tuple[int, ...], latent_dim: int, hidden: tuple[int, ...],
                 channels: tuple[int, ...], activation: str) -> nn.Module:
    return nn.Sequential(mlp([latent_dim, *hidden[::-1], math.prod(event_shape)], activation,
                             final_activation=False), Unflatten(event_shape))


def _conv_encoder(event_shape: tuple[int, ...], hidden: tuple[int, ...],
                  channels: tuple[int, ...], activation: str,
                  condition_dim: int) -> tuple[nn.Module, int]:
    _check_conv_shape(event_shape, channels)
    width = hidden[-1] if hidden else 256
    return ConvEncoder(event_shape, channels, width, activation, condition_dim), width


def _conv_decoder(event_shape: tuple[int, ...], latent_dim: int, hidden: tuple[int, ...],
                  channels: tuple[int, ...], activation: str) -> nn.Module:
    _check_conv_shape(event_shape, channels)
    width = hidden[-1] if hidden else 256
    return ConvDecoder(event_shape, channels, width, latent_dim, activation)


@dataclass(frozen=True)
class NetFamily:
    """A family of networks: `encoder(event_shape, hidden, channels, activation,
    condition_dim)` gives a body mapping x (*batch, *event_shape) (and, with condition_dim > 0,
    a one-hot condition (B, condition_dim) as its second argument) to features (*batch, F) and
    F;
    `decoder(param_shape, latent_dim, hidden, channels, activation)` maps z (*batch, latent_dim)
    to the likelihood's parameters (*batch, *param_shape)."""

    encoder: Callable[[tuple[int, ...], tuple[int, ...], tuple[int, ...], str, int],
                      tuple[nn.Module, int]]
    decoder: Callable[[tuple[int, ...], int, tuple[int, ...], tuple[int, ...], str], nn.Module]


#: The network families, by --net name: the one list of choices (Config validates against it).
NETS: dict[str, NetFamily] = {
    "mlp": NetFamily(_mlp_encoder, _mlp_decoder),
    "conv": NetFamily(_conv_encoder, _conv_decoder),
    "linear": NetFamily(_linear_encoder, _linear_decoder),
}


def build_encoder(net: str, event_shape: tuple[int, ...], hidden: tuple[int, ...],
                  channels: tuple[int, ...], activation: str,
                  condition_dim: int = 0) -> tuple[nn.Module, int]:
    """An encoder body mapping x of shape (*batch, *event_shape) (and a one-hot condition, for
    condition_dim > 0) to features (*batch, F)."""
    return _family(net).encoder(tuple(event_shape), hidden, channels, activation, condition_dim)


def build_decoder(net: str, param_shape: tuple[int, ...], latent_dim: int,
                  hidden: tuple[int, ...], channels: tuple[int, ...], activation: str) -> nn.Module:
    """A decoder mapping z of shape (*batch, latent_dim) to likelihood parameters
    (*batch, *param_shape): the likelihood's `param_shape()`, which is the data's event shape
    or, for an image likelihood with several parameters per pixel, (P, H, W)."""
    return _family(net).decoder(tuple(param_shape), latent_dim, hidden, channels, activation)


def _family(net: str) -> NetFamily:
    if net not in NETS:
        raise ConfigError(f"unknown --net {net!r}; choose from: {', '.join(NETS)}")
    return NETS[net]


def _check_conv_shape(event_shape: tuple[int, ...], channels: tuple[int, ...]) -> None:
    s = 2 ** len(channels)
    if len(event_shape) != 3 or event_shape[1] % s or event_shape[2] % s:
        raise ConfigError(
            f"--net conv needs images of shape (C, H, W) with H and W divisible by {s} "
            f"({len(channels)} stride-2 stages); the data has shape {tuple(event_shape)}")
