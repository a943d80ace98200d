"""Data as a model sees it: the binarization a config implies, the range check a likelihood
needs, and the fixed transforms of validation and test data."""

from __future__ import annotations

from torch import Tensor

from vaekit.config import Config
from vaekit.data.binarize import binarize_fixed, dequantize_fixed
from vaekit.data.datasets import Dataset
from vaekit.distributions import likelihood_support
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


def check_data_fits(config: Config, data: Dataset, binarize_mode: str) -> None:
    """Refuse data the likelihood is not defined on, before any step is taken."""
    needs_unit = config.likelihood == "bernoulli" or binarize_mode != "none"
    if not needs_unit:
        return
    for split in ("train", "val", "test"):
        x = data.split(split)
        if len(x) and (x.min() < 0 or x.max() > 1):
            why = "a Bernoulli likelihood" if config.likelihood == "bernoulli" else "binarization"
            raise DataError(
                f"{data.name} ({split}): values span [{x.min():.4g}, {x.max():.4g}] but {why} "
                "needs data in [0, 1]; rescale it, or use --likelihood gaussian")


def prepare_eval_data(x: Tensor, binarize_mode: str, bin_width: float | None) -> Tensor:
    """Validation/test data as the model sees it: binarized or dequantized once, fixed seed."""
    if binarize_mode != "none":
        return binarize_fixed(x)
    if bin_width:
        return dequantize_fixed(x, bin_width)
    return x
