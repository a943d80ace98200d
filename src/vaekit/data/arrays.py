"""User arrays (.npy, .npz): read without unpickling, checked, and recognised as images or not.

The image rule: an array is images when each example is (C, H, W) with C in {1, 3}, (H, W)
(made (1, H, W)) or, unambiguously, channels-last (H, W, C) with C in {1, 3} and H not in
{1, 3} (made (C, H, W)); and its values are either uint8 or all in [0, 1]. uint8 arrays are
8-bit levels: scaled by 1/255 as MNIST is, with bin width 1/256, unless every value is 0 or 1
(binary data, kept as is). Float images on the grid k/255 have bin width 1/256, binary ones
1/2, others none. Every other array is used exactly as given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaekit.data.paths import check_file
from vaekit.data.splits import Dataset, _split
from vaekit.errors import DataError

NAMED_SPLITS = ("train", "val", "test")
LABELS_SUFFIX = "_labels"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip (.npz) with files, an empty one
IMAGE_CHANNELS = (1, 3)
#: Grids of levels a float image may lie on (binary, 8-bit), smallest first: k / (L - 1).
GRID_LEVELS = (2, 256)
_GRID_TOLERANCE = 1e-4  # in units of one level: float32 rounding of k/255 is far below it

#: How to bring examples of each image layout to (C, H, W); x is (N, *example_shape).
LAYOUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "chw": lambda x: x,
    "hw": lambda x: x.unsqueeze(1),
    "hwc": lambda x: x.permute(0, 3, 1, 2),
}


def load_array_dataset(path: Path, val_fraction: float, images: bool | None = None) -> Dataset:
    """A .npy array of shape (N, ...) or a .npz holding either one array or `train` [, `val`,
    `test`] arrays, each optionally with integer labels `train_labels` [, ...]. Images (see
    the module's rule) are brought to (N, C, H, W) in [0, 1]; all else is used as given, and so
    is everything with images=False."""
    arrays = read_arrays(check_file(path, "data file", if_dir="--data takes a .npy/.npz "
                                    "file; IDX files go with --data mnist|fashion-mnist "
                                    "--data-dir DIR"))
    if "train" in arrays:
        return _named_splits_dataset(arrays, path, val_fraction, images)
    if len(arrays) != 1:
        raise DataError(f"{path} holds {len(arrays)} arrays ({', '.join(sorted(arrays))}); "
                        "use one array, or name them train/val/test")
    raw = next(iter(arrays.values()))
    (x,), is_images, bin_width = as_images([raw], [check_array(raw, str(path))], images)
    return _split(path.name, x, None, val_fraction, images=is_images, bin_width=bin_width)


def _named_splits_dataset(arrays: dict[str, np.ndarray], path: Path, val_fraction: float,
                          images: bool | None) -> Dataset:
    """An .npz of train [, val, test] (with their labels or none): no test set is carved out;
    without val, val is held out of train."""
    parts, labels = _named_parts(arrays, path)
    names = list(parts)
    xs, is_images, bin_width = as_images([parts[k] for k in names],
                                         [check_array(parts[k], f"{path}[{k}]") for k in names],
                                         images)
    x = dict(zip(names, xs))
    y = {k: check_labels(v, len(x[k]), f"{path}[{k}{LABELS_SUFFIX}]")
         for k, v in labels.items()}
    train, test = x["train"], x.get("test", x["train"][:0])
    train_labels = y.get("train")
    test_labels = y.get("test", train_labels[:0] if train_labels is not None else None)
    if "val" not in x:
        return _split(path.name, train, test, val_fraction, images=is_images, bin_width=bin_width,
                      labels=train_labels, test_labels=test_labels)
    full = torch.cat([train, x["val"], test])
    split_labels = None
    if train_labels is not None and test_labels is not None:
        split_labels = {"train": train_labels, "val": y["val"], "test": test_labels,
                        "all": torch.cat([train_labels, y["val"], test_labels])}
    return Dataset(path.name, train, x["val"], test, is_images, bin_width, full, split_labels)


def _named_parts(arrays: dict[str, np.ndarray], path: Path
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The data arrays (train, val, test) and their labels; labels for all splits or none."""
    label_names = tuple(k + LABELS_SUFFIX for k in NAMED_SPLITS)
    unknown = set(arrays) - set(NAMED_SPLITS) - set(label_names)
    if unknown:
        raise DataError(f"{path}: unexpected arrays {sorted(unknown)}; an .npz holds one "
                        "array, or train/val/test [with train_labels/val_labels/test_labels]")
    parts = {k: arrays[k] for k in NAMED_SPLITS if k in arrays}
    labels = {k: arrays[k + LABELS_SUFFIX] for k in NAMED_SPLITS if k + LABELS_SUFFIX in arrays}
    if labels and set(labels) != set(parts):
        raise DataError(f"{path}: labels are given for {sorted(labels)} but the data for "
                        f"{sorted(parts)}; give labels for every split or for none")
    shapes = {tuple(np.shape(v)[1:]) for v in parts.values()}
    if len(shapes) > 1:
        raise DataError(f"{path}: train/val/test have different example shapes {shapes}")
    return parts, labels


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a .npy or .npz file, recognised by its first bytes; never unpickles."""
    try:
        with path.open("rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}") from None
    if not head.startswith((NPY_MAGIC, *ZIP_MAGICS)):
        if path.suffix in (".npy", ".npz"):
            raise DataError(f"{path} is not a valid NumPy file (it does not start like a "
                            f"{path.suffix} file)")
        kind = f"{path.suffix} files" if path.suffix else "this file"
        raise DataError(f"{path}: vaekit does not read {kind}; --data takes digits, mnist, "
                        "fashion-mnist, a NumPy .npy/.npz array, a .csv/.parquet table or a "
                        "folder of PNG/JPEG images")
    try:
        if head.startswith(ZIP_MAGICS):
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        return {"x": np.load(path, allow_pickle=False)}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path} holds Python objects (pickled data), which vaekit refuses "
                            "to load; save a numeric array") from None
        raise DataError(f"{path} is not a valid NumPy file: {e}") from None
    except Exception as e:  # numpy's header parser raises many types on corrupt bytes
        raise DataError(f"{path} is not a valid NumPy file ({type(e).__name__}: "
                        f"{str(e)[:100]})") from None


def check_array(x: np.ndarray, where: str) -> Tensor:
    """Refuse empty, non-numeric, complex or non-finite arrays; return float32 (N, ...)."""
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "biuf":
        kind = getattr(getattr(x, "dtype", None), "name", type(x).__name__)
        raise DataError(f"{where}: data must be numeric (got dtype {kind})")
    if x.ndim < 2:
        raise DataError(f"{where}: expected an array of shape (examples, features...), "
                        f"got shape {x.shape}")
    if x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{where}: the array is empty (shape {x.shape})")
    x32 = x.astype(np.float32)
    bad = ~np.isfinite(x32)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(f"{where}: {int(bad.sum())} values are NaN or infinite (first in example "
                        f"{int(rows[0])}); clean or drop them first")
    return torch.from_numpy(np.ascontiguousarray(x32))


def check_labels(y: np.ndarray, n: int, where: str) -> Tensor:
    """Labels: one integer per example, (n,) -> int64."""
    if y.dtype.kind not in "biu" or y.shape != (n,):
        raise DataError(f"{where}: labels must be integers of shape ({n},), one per example; "
                        f"got {y.dtype.name} {y.shape}")
    return torch.from_numpy(y.astype(np.int64))


def image_layout(example_shape: tuple[int, ...]) -> str | None:
    """The key in LAYOUTS of an example shape that can be an image, or None."""
    if len(example_shape) == 2:
        return "hw"
    if len(example_shape) == 3:
        if example_shape[0] in IMAGE_CHANNELS:
            return "chw"  # channels-first wins where both ends could be channels
        if example_shape[-1] in IMAGE_CHANNELS:
            return "hwc"
    return None


def as_images(raw: list[np.ndarray], xs: list[Tensor], images: bool | None = None
              ) -> tuple[list[Tensor], bool, float | None]:
    """(arrays, images, bin_width) by the module's rule; `raw` are the arrays as read, `xs`
    their float32 copies (the parts of one dataset, judged together); images=False: as given."""
    layout = image_layout(tuple(xs[0].shape[1:]))
    if layout is None or images is False:
        return xs, False, None
    to_chw = LAYOUTS[layout]
    in_unit = all(float(x.min()) >= 0 and float(x.max()) <= 1 for x in xs)
    binary = in_unit and all(on_grid(x, 2) for x in xs)
    if all(a.dtype == np.uint8 for a in raw) and not binary:  # 8-bit levels 0..255
        return [to_chw(x / 255.0).contiguous() for x in xs], True, 1 / 256
    if not in_unit:
        return xs, False, None
    levels = next((n for n in GRID_LEVELS if all(on_grid(x, n) for x in xs)), None)
    return [to_chw(x).contiguous() for x in xs], True, 1 / levels if levels else None


def on_grid(x: Tensor, levels: int) -> bool:
    """Whether every value of x (in [0, 1]) is k / (levels - 1) for an integer k."""
    scaled = x * (levels - 1)
    return bool(((scaled - scaled.round()).abs() <= _GRID_TOLERANCE).all())
