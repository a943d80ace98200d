"""Datasets held as float tensors in memory: the built-in 8x8 digits, MNIST, Fashion-MNIST and
user arrays (.npy/.npz), split into train / val / test by a fixed permutation."""

from __future__ import annotations

import gzip
import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaekit.errors import DataError

SPLITS = ("train", "val", "test", "all")
IDX_DATASETS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Fixed seed of the train/val/test permutation: splits never depend on the run's --seed.
SPLIT_SEED = 20140101
#: Fraction held out as the test split for data that has no official test set.
TEST_FRACTION = 0.1


@dataclass
class Dataset:
    """Splits of one dataset as float32 tensors (N, *event_shape); `images` marks pixel data in
    [0, 1] that binarization applies to; `bin_width` is the quantization step of 8-bit data."""

    name: str
    train: Tensor
    val: Tensor
    test: Tensor
    images: bool
    bin_width: float | None = None
    full: Tensor | None = None  # every example in the source's own order (split "all")

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def split(self, name: str) -> Tensor:
        if name == "all":  # in the order of the source (file rows), not the split permutation
            return self.full if self.full is not None else torch.cat(
                [self.train, self.val, self.test])
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose from: {', '.join(SPLITS)}")
        return getattr(self, name)


def array_file(name: str) -> Path | None:
    """The path `name` names when it is a user's array file rather than a built-in dataset."""
    if name == "digits" or name in IDX_DATASETS:
        return None
    path = Path(name)
    return path if path.suffix in (".npy", ".npz") or path.exists() else None


def load_dataset(name: str, data_dir: str | None = None, val_fraction: float = 0.1,
                 download: bool | None = None) -> Dataset:
    """Load `name` (digits, mnist, fashion-mnist, or a .npy/.npz path) and split it."""
    if name == "digits":
        from sklearn.datasets import load_digits

        x = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0).unsqueeze(1)
        return _split(name, x, None, val_fraction, images=True, bin_width=1 / 17)
    if name in IDX_DATASETS:
        folder = _idx_dir(name, data_dir)
        train = _read_idx_images(folder, "train", name, download)
        test = _read_idx_images(folder, "test", name, download=False)
        return _split(name, train, test, val_fraction, images=True, bin_width=1 / 256)
    path = array_file(name)
    if path is not None:
        return load_array_dataset(path, val_fraction)
    raise DataError(f"unknown dataset {name!r}: use digits, mnist, fashion-mnist, or the path of "
                    "a .npy/.npz file")


def _split(name: str, x: Tensor, test: Tensor | None, val_fraction: float, *, images: bool,
           bin_width: float | None = None) -> Dataset:
    """Fixed-seed split: the official test set if given, else 10% of x; then val from the rest."""
    full = x if test is None else torch.cat([x, test])
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    if test is None:
        n_test = round(TEST_FRACTION * len(x)) if len(x) >= 10 else 0
        test, perm = x[perm[:n_test]], perm[n_test:]
    n_val = round(val_fraction * len(perm))
    val, train = x[perm[:n_val]], x[perm[n_val:]]
    if len(train) == 0:
        raise DataError(f"{name}: no training examples left after holding out val/test "
                        f"(only {len(x)} examples)")
    return Dataset(name, train.contiguous(), val.contiguous(), test.contiguous(), images, bin_width,
                   full)


# --- user arrays

def load_array_dataset(path: Path, val_fraction: float) -> Dataset:
    """A .npy array of shape (N, ...) or a .npz holding either one array or `train` [, `val`,
    `test`] arrays. Values are used exactly as given: no rescaling."""
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    arrays = _read_arrays(path)
    if set(arrays) >= {"train"}:
        unknown = set(arrays) - {"train", "val", "test"}
        if unknown:
            raise DataError(f"{path}: unexpected arrays {sorted(unknown)}; an .npz holds one "
                            "array or train/val/test")
        parts = {k: check_array(v, f"{path}[{k}]") for k, v in arrays.items()}
        shapes = {tuple(v.shape[1:]) for v in parts.values()}
        if len(shapes) > 1:
            raise DataError(f"{path}: train/val/test have different example shapes {shapes}")
        train = parts["train"]
        test = parts.get("test", train[:0])  # named splits: no test set is carved out
        if "val" in parts:
            full = torch.cat([train, parts["val"], test])
            return Dataset(path.name, train, parts["val"], test, False, full=full)
        return _split(path.name, train, test, val_fraction, images=False)
    if len(arrays) != 1:
        raise DataError(f"{path} holds {len(arrays)} arrays ({', '.join(sorted(arrays))}); "
                        "use one array, or name them train/val/test")
    x = check_array(next(iter(arrays.values())), str(path))
    return _split(path.name, x, None, val_fraction, images=False)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npz" or zipfile.is_zipfile(path):
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


# --- MNIST-style IDX directories

def _idx_dir(name: str, data_dir: str | None) -> Path:
    if data_dir:
        return Path(data_dir).expanduser()
    root = os.environ.get("VAEKIT_DATA_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "vaekit"
    return base / name


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_images(folder: Path, split: str, name: str, download: bool | None) -> Tensor:
    from vaekit.data.idx import read_idx

    stem = IDX_FILES[split][0]
    path = _find(folder, stem)
    if path is None:
        if download is None:
            download = os.environ.get("VAEKIT_NO_DOWNLOAD", "") in ("", "0")
        empty = not folder.exists() or not any(folder.iterdir())
        if download and empty:
            _download(name, folder)
            path = _find(folder, stem)
        if path is None:
            state = "does not exist" if not folder.exists() else (
                "is empty" if empty else f"has no {stem}[.gz]")
            raise DataError(f"{name}: the data directory {folder} {state}; pass --data-dir with "
                            "the four IDX files (or an empty directory to download into)")
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 images of shape (N, H, W), got {images.dtype} "
                        f"{images.shape}")
    return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)


def _download(name: str, folder: Path) -> None:
    """Fetch the four .gz files from the dataset's official location (atomically, each)."""
    from vaekit.data.idx import parse_idx
    from vaekit.io import atomic_write_bytes

    base = IDX_DATASETS[name]
    folder.mkdir(parents=True, exist_ok=True)
    for stems in IDX_FILES.values():
        for stem in stems:
            url = f"{base}{stem}.gz"
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    payload = r.read()
            except OSError as e:
                raise DataError(f"{name}: could not download {url} ({e}); put the IDX files in "
                                f"{folder} yourself") from None
            try:
                parse_idx(gzip.decompress(payload), url)
            except (OSError, EOFError):
                raise DataError(f"{name}: {url} did not return a gzip file") from None
            atomic_write_bytes(folder / f"{stem}.gz", payload)
