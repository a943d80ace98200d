"""Data: built-in and user datasets as in-memory tensors, and binarization."""

from vaekit.data.binarize import binarize, binarize_fixed, dequantize, dequantize_fixed
from vaekit.data.datasets import SPLITS, Dataset, check_array, load_dataset

__all__ = ["SPLITS", "Dataset", "binarize", "binarize_fixed", "check_array", "dequantize",
           "dequantize_fixed", "load_dataset"]
