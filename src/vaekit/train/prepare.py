"""Data as a model sees it: the binarization a config implies, the range check a likelihood
needs, and the fixed transforms of validation and test data."""

from __future__ import annotations

import math

from torch import Tensor

from vaekit.config import Config
from vaekit.data.arrays import on_grid
from vaekit.data.binarize import binarize_fixed, dequantize_fixed
from vaekit.data.datasets import Dataset
from vaekit.distributions import LIKELIHOODS, likelihood_support
from vaekit.errors import DataError


def resolve_binarize(config: Config, data: Dataset) -> str:
    """The binarization `config` implies for `data`, with "auto" resolved."""
    if config.binarize == "auto":
        return "dynamic" if config.likelihood == "bernoulli" and data.images else "none"
    return config.binarize


def resolve_standardize(config: Config, data: Dataset) -> str:
    """The standardisation `config` implies for `data`, with "auto" resolved: on for a
    likelihood on the real line (no bounded support, such as the Gaussian) on data that are not
    images, whose dimensions may have any scale."""
    if config.standardize == "auto":
        real_line = likelihood_support(config.likelihood) is None
        return "on" if real_line and not data.images else "off"
    return config.standardize


def check_data_fits(config: Config, data: Dataset, binarize_mode: str, *,
                    training: bool = True) -> None:
    """Refuse data the likelihood is not defined on, before any step is taken: values outside
    its `support` (or outside [0, 1] for binarization), and values off the grid of its `levels`
    for a likelihood of quantized data; in `training` also a latent space larger than the data
    (a model already trained is still evaluated)."""
    likelihood = LIKELIHOODS.get(config.likelihood)
    support = likelihood_support(config.likelihood)
    if binarize_mode != "none":
        support, why = (0.0, 1.0), "binarization"
    else:
        why = f"--likelihood {config.likelihood}"
    levels: int | None = getattr(likelihood, "levels", None)
    for split in ("train", "val", "test") if support or levels else ():
        x = data.split(split)
        if not len(x):
            continue
        low, high = float(x.min()), float(x.max())
        if support is not None and (low < support[0] or high > support[1]):
            raise DataError(
                f"{data.name} ({split}): values span [{low:.4g}, {high:.4g}] but {why} needs "
                f"data in [{support[0]:g}, {support[1]:g}]; rescale it, or use --likelihood "
                "gaussian")
        if levels is not None and binarize_mode == "none" and not on_grid(x, levels):
            raise DataError(
                f"{data.name} ({split}): --likelihood {config.likelihood} models {levels} "
                f"levels (k/{levels - 1} for k = 0..{levels - 1}, as 8-bit images are read), "
                "and these values are not on that grid")
    if training:
        check_latent_fits(config, data)


def check_latent_fits(config: Config, data: Dataset) -> None:
    """Refuse a latent dimension above the data's: a code of D dimensions already holds any
    D-dimensional example, and the extra width only costs memory (and checkpoint size)."""
    data_dim = math.prod(data.event_shape)
    if config.model == "vae" and config.latent_dim > data_dim:  # a hierarchy's sizes are its own
        raise DataError(f"--latent-dim {config.latent_dim} is larger than the dimension of the "
                        f"data ({data_dim}: {data.name} examples of shape {data.event_shape}); "
                        f"use at most {data_dim}")


def prepare_eval_data(x: Tensor, binarize_mode: str, bin_width: float | None) -> Tensor:
    """Validation/test data as the model sees it: binarized or dequantized once, fixed seed."""
    if binarize_mode != "none":
        return binarize_fixed(x)
    if bin_width:
        return dequantize_fixed(x, bin_width)
    return x
