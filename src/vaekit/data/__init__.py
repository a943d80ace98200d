"""Data: built-in and user datasets as in-memory tensors, and binarization."""

from vaekit.data.binarize import binarize, binarize_fixed, dequantize, dequantize_fixed
from vaekit.data.datasets import SPLITS, Dataset, check_array, load_dataset
from vaekit.data.prepare import (
    check_data_fits,
    prepare_eval_data,
    resolve_binarize,
    resolve_standardize,
)

__all__ = ["SPLITS", "Dataset", "binarize", "binarize_fixed", "check_array", "check_data_fits",
           "dequantize", "dequantize_fixed", "load_dataset", "prepare_eval_data",
           "resolve_binarize", "resolve_standardize"]
