"""Data as a model sees it: the binarization a config implies, the range check a likelihood
needs, and the fixed transforms of validation and test data."""

from __future__ import annotations

import math

from torch import Tensor

from vaekit.config import Config
from vaekit.data.binarize import binarize_fixed, dequantize_fixed
from vaekit.data.datasets import Dataset
from vaekit.errors import DataError


def resolve_binarize(config: Config, data: Dataset) -> str:
    """The binarization `config` implies for `data`, with "auto" resolved."""
    if config.binarize == "auto":
        return "dynamic" if config.likelihood == "bernoulli" and data.images else "none"
    return config.binarize


def check_data_fits(config: Config, data: Dataset, binarize_mode: str, *,
                    training: bool = True) -> None:
    """Refuse data the likelihood is not defined on, before any step is taken; in `training`
    also a latent space larger than the data (a model already trained is still evaluated)."""
    needs_unit = config.likelihood == "bernoulli" or binarize_mode != "none"
    for split in ("train", "val", "test") if needs_unit else ():
        x = data.split(split)
        if len(x) and (x.min() < 0 or x.max() > 1):
            why = "a Bernoulli likelihood" if config.likelihood == "bernoulli" else "binarization"
            raise DataError(
                f"{data.name} ({split}): values span [{x.min():.4g}, {x.max():.4g}] but {why} "
                "needs data in [0, 1]; rescale it, or use --likelihood gaussian")
    if training:
        check_latent_fits(config, data)


def check_latent_fits(config: Config, data: Dataset) -> None:
    """Refuse a latent dimension above the data's: a code of D dimensions already holds any
    D-dimensional example, and the extra width only costs memory (and checkpoint size)."""
    data_dim = math.prod(data.event_shape)
    if config.latent_dim > data_dim:
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
