"""Datasets held as float tensors in memory: the built-in 8x8 digits, MNIST, Fashion-MNIST and
user arrays (.npy/.npz), split into train / val / test by a fixed permutation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.arrays import check_array, load_array_dataset
from vaekit.data.folders import FolderOptions, load_image_folder
from vaekit.data.mnist import IDX_DATASETS, load_idx_dataset
from vaekit.data.splits import SPLITS, Dataset, _split
from vaekit.data.tables import is_table_file, load_table_dataset
from vaekit.errors import DataError

__all__ = ["BUILT_IN", "SPLITS", "Dataset", "_split", "array_file", "check_array",
           "load_dataset"]


def load_digits_dataset(data_dir: str | None, val_fraction: float,
                        download: bool | None = None) -> Dataset:
    """scikit-learn's 8x8 digits, 17 grey levels scaled by 1/16, with their digit labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return _split("digits", x, None, val_fraction, images=True, bin_width=1 / 17, labels=labels)


def _idx_loader(name: str) -> Callable[[str | None, float, bool | None], Dataset]:
    return lambda data_dir, val_fraction, download: load_idx_dataset(
        name, data_dir, val_fraction, download)


#: The datasets known by name: loader(data_dir, val_fraction, download).
BUILT_IN: dict[str, Callable[[str | None, float, bool | None], Dataset]] = {
    "digits": load_digits_dataset, **{name: _idx_loader(name) for name in IDX_DATASETS}}


def array_file(name: str) -> Path | None:
    """The path `name` names when it is a user's data file rather than a built-in dataset:
    anything with a suffix or a directory part, or that exists."""
    if name in BUILT_IN:
        return None
    path = Path(name).expanduser()
    return path if path.suffix or len(path.parts) > 1 or path.exists() else None


def load_dataset(name: str, data_dir: str | None = None, val_fraction: float = 0.1,
                 download: bool | None = None, images: bool | None = None,
                 settings: Any = None) -> Dataset:
    """Load `name` (digits, mnist, fashion-mnist, a .npy/.npz path, a folder of images or a
    .csv/.parquet table) and split it. An array is judged by the image rule
    (vaekit.data.arrays) unless `images` is False: then it is used exactly as given, as a run
    that recorded images=False was trained on it (runs made before the rule included).
    `settings` (a Config: a run's, for its own or new data) gives a folder's `image_size` and
    `image_channels` (vaekit.data.folders) and a table's `columns` types, or the fitted `table`
    schema that new rows must follow (vaekit.data.tables)."""
    if name in BUILT_IN:
        return BUILT_IN[name](data_dir, val_fraction, download)
    path = array_file(name)
    if path is not None and path.is_dir():
        size = tuple(getattr(settings, "image_size", ()))
        return load_image_folder(path, val_fraction, FolderOptions(
            size * 2 if len(size) == 1 else size, getattr(settings, "image_channels", 0)))
    if path is not None and is_table_file(name):
        return load_table_dataset(path, val_fraction, getattr(settings, "table", None) or None,
                                  getattr(settings, "columns", ""),
                                  getattr(settings, "condition", ""),
                                  tuple(getattr(settings, "condition_classes", ())))
    if path is not None:
        return load_array_dataset(path, val_fraction, images)
    raise DataError(f"unknown dataset {name!r}: use digits, mnist, fashion-mnist, the path of "
                    "a .npy/.npz file, or a folder of images")
