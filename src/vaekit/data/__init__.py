"""Data: the built-in datasets, MNIST and Fashion-MNIST (IDX), arrays, image folders and
tables, loaded as in-memory tensors with their splits and labels; binarization and
dequantization; a table's schema (its columns, types and transforms). Layer: data, just above
the foundation; it may import `vaekit.errors` and `vaekit.io` only, never a model, a
distribution or the configuration (readying data for a run's config is
`vaekit.train.prepare`; see tests/test_architecture.py).
"""

from vaekit.data.binarize import binarize, binarize_fixed, dequantize, dequantize_fixed
from vaekit.data.datasets import SPLITS, Dataset, check_array, load_dataset

__all__ = ["SPLITS", "Dataset", "binarize", "binarize_fixed", "check_array", "dequantize",
           "dequantize_fixed", "load_dataset"]
