"""MNIST and Fashion-MNIST: the four IDX files (images and labels, train and test), found in
--data-dir or in the default search path, downloaded only into an empty or absent directory."""

from __future__ import annotations

import gzip
import os
import stat
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaekit.data.paths import dir_state, path_mode
from vaekit.data.splits import Dataset, _split
from vaekit.errors import DataError

IDX_DATASETS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Directories of system packages searched after the user's own (Debian: dataset-fashion-mnist).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}


def load_idx_dataset(name: str, data_dir: str | None, val_fraction: float,
                     download: bool | None = None) -> Dataset:
    """Images scaled to [0, 1] (bin width 1/256) with their labels where the label files are
    there; the official test set is the test split."""
    folder = find_idx_dir(name, data_dir, download)
    train, test = (_read_images(folder, split, name) for split in ("train", "test"))
    labels = {split: _read_labels(folder, split, len(x)) for split, x in
              (("train", train), ("test", test))}
    return _split(name, train, test, val_fraction, images=True, bin_width=1 / 256,
                  labels=labels["train"], test_labels=labels["test"])


def search_dirs(name: str) -> list[Path]:
    """Where `name` is looked for without --data-dir: $VAEKIT_DATA_DIR/NAME, then
    ~/.cache/vaekit/NAME, then the directories of system packages."""
    root = os.environ.get("VAEKIT_DATA_DIR")
    user = []
    if root:
        dir_state(Path(root).expanduser(), "$VAEKIT_DATA_DIR")  # refuses a file
        user = [Path(root).expanduser() / name]
    return [*user, Path.home() / ".cache" / "vaekit" / name, *SYSTEM_DIRS.get(name, ())]


def find_idx_dir(name: str, data_dir: str | None, download: bool | None = None) -> Path:
    """The directory holding `name`'s training images: --data-dir, else the first of
    `search_dirs` that has them, else the first of those, downloaded into if allowed."""
    stem = IDX_FILES["train"][0]
    if data_dir:
        folder = Path(data_dir).expanduser()
        state = dir_state(folder, "--data-dir")
        if state == "full" and _find(folder, stem) is not None:
            return folder
        found = {"missing": "does not exist", "empty": "is empty"}.get(state,
                                                                       f"has no {stem}[.gz]")
        return _download_or_refuse(name, folder, state, download,
                                   f"the data directory {folder} {found}")
    candidates = search_dirs(name)
    first_state = ""
    for folder in candidates:
        state = dir_state(folder, "data directory")
        first_state = first_state or state
        if state == "full" and _find(folder, stem) is not None:
            return folder
    return _download_or_refuse(name, candidates[0], first_state, download,
                               f"no {stem}[.gz] in any of {', '.join(map(str, candidates))}")


def _download_or_refuse(name: str, folder: Path, state: str, download: bool | None,
                        problem: str) -> Path:
    """Download into `folder` where allowed and it is absent or empty; else refuse."""
    if download is None:
        download = os.environ.get("VAEKIT_NO_DOWNLOAD", "") in ("", "0")
    if download and state != "full":
        _download(name, folder)
        return folder
    raise DataError(f"{name}: {problem}; pass --data-dir with the four IDX files (or an empty "
                    "directory to download into)")


def _find(folder: Path, stem: str) -> Path | None:
    """FOLDER/STEM or FOLDER/STEM.gz, whichever is there; refuses a directory of that name."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        mode = path_mode(candidate, "IDX file")
        if mode is None:
            continue
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise DataError(f"{candidate} is {kind}, not an IDX file")
        return candidate
    return None


def _read_images(folder: Path, split: str, name: str) -> Tensor:
    """(N, 1, H, W) float32 in [0, 1] from the split's uint8 IDX images."""
    from vaekit.data.idx import read_idx

    stem = IDX_FILES[split][0]
    path = _find(folder, stem)
    if path is None:
        raise DataError(f"{name}: the data directory {folder} has no {stem}[.gz]")
    images = read_idx(path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{path}: expected uint8 images of shape (N, H, W), got {images.dtype} "
                        f"{images.shape}")
    return torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)


def _read_labels(folder: Path, split: str, n: int) -> Tensor | None:
    """(N,) int64 class of each image, or None where the label file is not there."""
    from vaekit.data.idx import read_idx

    path = _find(folder, IDX_FILES[split][1])
    if path is None:
        return None
    labels = read_idx(path)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != n:
        raise DataError(f"{path}: expected {n} integer labels, one per image, got "
                        f"{labels.dtype} {labels.shape}")
    return torch.from_numpy(labels.astype(np.int64))


def _download(name: str, folder: Path) -> None:
    """Fetch the four .gz files from the dataset's official location; the directory is made
    and the files written (atomically, each) only once all four have arrived intact."""
    from vaekit.data.idx import parse_idx
    from vaekit.io import atomic_write_bytes

    base = IDX_DATASETS[name]
    payloads: dict[str, bytes] = {}
    for stem in (stem for stems in IDX_FILES.values() for stem in stems):
        url = f"{base}{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                payloads[stem] = r.read()
        except OSError as e:
            raise DataError(f"{name}: could not download {url} ({e}); put the IDX files in "
                            f"{folder} yourself") from None
        try:
            parse_idx(gzip.decompress(payloads[stem]), url)
        except (OSError, EOFError):
            raise DataError(f"{name}: {url} did not return a gzip file") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{name}: cannot create {folder}: {e.strerror or e}") from None
    for stem, payload in payloads.items():
        atomic_write_bytes(folder / f"{stem}.gz", payload)
