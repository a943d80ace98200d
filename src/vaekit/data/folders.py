"""Folders of images (`--data path/to/folder`), read with Pillow, ImageFolder-style.

    folder/cat/001.png, folder/dog/002.jpg, ...   class subfolders: labels 0, 1, ... in the
                                                  sorted order of the subfolders' names
    folder/001.png, folder/002.png, ...           a flat folder: no labels

PNG and JPEG files are read (by extension, then by content); other files (a README, a
.DS_Store, a thumbnail database) are skipped, and the count of skipped files is printed. Hidden
files and folders are ignored. Images are 8-bit: values are scaled by 1/255 to [0, 1] with bin
width 1/256, so that bits/dim and the discretized likelihoods apply.

Size and channels: `--image-size H[,W]` resizes every image (bilinear, Pillow); without it all
images must share one size, and the first that differs from the majority is named in the error.
`--image-channels 1|3` converts to grey or RGB; without it the majority's is used, with a note
(an alpha channel is dropped; palette and grey-with-alpha images are converted).

Refused, each with an error naming the file: a file with an image extension that Pillow cannot
decode (corrupt, truncated, or not an image), 16-bit and 32-bit images (converting them to 8
bits would change the data silently), an empty folder, images at the top beside class
subfolders, and data whose float32 tensor would exceed the memory budget (half the machine's
memory, or $VAEKIT_MEMORY_BUDGET_GB): the error gives the size and suggests --image-size.

Decoding runs on a thread pool (Pillow releases the GIL while it decodes). The decoded uint8
array is cached under $VAEKIT_CACHE/folders (default ~/.cache/vaekit/folders) as an .npz, keyed
by the SHA-256 of every file's relative path, size and modification time and the size and
channel options: a second run starts at once, and any change to the folder reads it again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit.data.splits import Dataset, _split
from vaekit.errors import DataError, VaekitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Pillow modes read as they are (8 bits per channel), and those converted
EIGHT_BIT_MODES = {"L": 1, "RGB": 3, "RGBA": 3, "LA": 1, "P": 3, "CMYK": 3, "YCbCr": 3, "1": 1}
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")
#: bumped when the cached array's meaning changes
CACHE_VERSION = 1


def has_16_bit_tiles(image: Any) -> bool:
    """Whether a Pillow image's raw data are 16 bits per channel where its mode does not say
    so: a 16-bit colour PNG opens as RGB(A), its raw mode RGB;16B."""
    return any(";16" in str(getattr(tile, "args", tile[3] if len(tile) > 3 else ""))
               for tile in getattr(image, "tile", []) or [])


@dataclass(frozen=True)
class FolderOptions:
    """`--image-size` ((H, W), or () for the images' own) and `--image-channels` (0: the
    majority's)."""

    size: tuple[int, ...] = ()
    channels: int = 0


def is_image_folder(name: str) -> bool:
    return Path(name).expanduser().is_dir()


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _walk(folder: str) -> tuple[list[str], int]:
    """The image files under `folder` (paths, in sorted order, hidden ones left out) and the
    count of other files. Plain strings and os.walk: pathlib costs seconds on 70,000 files."""
    files: list[str] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if _is_image(name):
                files.append(os.path.join(dirpath, name))
            else:
                skipped += 1
    return files, skipped


def list_images(root: Path) -> tuple[list[str], list[int] | None, list[str], int]:
    """(image files, their labels or None, class names, files skipped)."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    with os.scandir(root) as scan:
        entries = sorted((e for e in scan if not e.name.startswith(".")), key=lambda e: e.name)
    folders = [e.name for e in entries if e.is_dir()]
    top_files = [e.name for e in entries if e.is_file()]
    top_images = [os.path.join(root, name) for name in top_files if _is_image(name)]
    if folders and top_images:
        raise DataError(f"{root} holds images ({os.path.basename(top_images[0])}, ...) beside "
                        f"class subfolders ({folders[0]}, ...): put every image in a class "
                        "subfolder, or use a flat folder")
    labels: list[int] | None = None
    if folders:
        files: list[str] = []
        labels = []
        skipped = 0
        for label, folder in enumerate(folders):
            found, other = _walk(os.path.join(root, folder))
            files += found
            labels += [label] * len(found)
            skipped += other
    else:
        files = top_images
        skipped = len(top_files) - len(top_images)
    if not files:
        raise DataError(f"{root} holds no PNG or JPEG images"
                        + (f" ({skipped} other files skipped)" if skipped else ""))
    return files, labels, folders, skipped


def _header(path: str) -> tuple[tuple[int, int], str]:
    """(width, height) and mode, from the file's header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size, ("I;16" if has_16_bit_tiles(image) else image.mode)
    except Image.DecompressionBombError as e:
        raise DataError(f"{path} is too large to decode safely ({e})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} is not a readable PNG or JPEG image ({e})") from None


def _decode(path: str, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """The image as uint8 (C, H, W) in `mode` (L or RGB), resized to `size` (W, H) if given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in WIDE_MODES:
                raise DataError(f"{path} is a {image.mode} image (more than 8 bits per "
                                "channel): convert it to 8-bit PNG or JPEG")
            if image.mode == "P":  # a palette: through RGBA, so transparency is honoured
                image = image.convert("RGBA")
            picture = image.convert(mode)
            if size is not None and picture.size != size:
                picture = picture.resize(size, Image.Resampling.BILINEAR)
            array = np.asarray(picture, dtype=np.uint8)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path} could not be decoded: it is corrupt or truncated ({e})") \
            from None
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def memory_budget() -> int:
    """Bytes the decoded data may take: $VAEKIT_MEMORY_BUDGET_GB, else half the machine's
    memory."""
    given = os.environ.get("VAEKIT_MEMORY_BUDGET_GB")
    if given:
        try:
            return int(float(given) * 2**30)
        except ValueError:
            raise DataError(f"VAEKIT_MEMORY_BUDGET_GB must be a number, got {given!r}") \
                from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 8 * 2**30


def _cache_dir() -> Path:
    root = os.environ.get("VAEKIT_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "vaekit") / "folders"


def _cache_key(root: Path, files: list[str], options: FolderOptions) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, list(options.size), options.channels,
                                        str(root.resolve())]).encode())
    start = len(str(root)) + 1  # every path is root/relative
    for path in files:
        stat = os.stat(path)
        digest.update(f"{path[start:]}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def read_folder(root: Path, options: FolderOptions
                ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The folder's images as uint8 (N, C, H, W), their labels (N,) or None and the class
    names (the subfolders, in label order), through the cache."""
    from vaekit.io import atomic_write_bytes

    files, labels, classes, skipped = list_images(root)
    if skipped:
        _note(f"{root}: {skipped} files that are not PNG or JPEG were skipped")
    # labels are rebuilt from the listing every time (cheap); only pixels are cached
    y = np.asarray(labels, dtype=np.int64) if labels is not None else None
    key = _cache_key(root, files, options)
    cached = _cache_dir() / f"{key}.npz"
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as stored:
                x = stored["x"]
            if len(x) == len(files):
                return x, y, classes
        except Exception:  # a damaged entry (zip, npy or I/O error): read it again
            pass
    x = _decode_all(root, files, options)
    buf = io.BytesIO()
    np.savez(buf, x=x)
    try:
        atomic_write_bytes(cached, buf.getvalue())
    except (OSError, VaekitError) as e:  # a read-only home: read, just not cached
        _note(f"could not cache the decoded images in {cached.parent}: {e}")
    return x, y, classes


def _decode_all(root: Path, files: list[str], options: FolderOptions) -> np.ndarray:
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool:
        headers = list(pool.map(_header, files))
    for path, (_, mode) in zip(files, headers, strict=True):
        if mode in WIDE_MODES:
            raise DataError(f"{path} is a {mode} image (more than 8 bits per channel): convert "
                            "it to 8-bit PNG or JPEG")
    channels = options.channels
    if not channels:
        counts = Counter(EIGHT_BIT_MODES.get(mode, 3) for _, mode in headers)
        channels = counts.most_common(1)[0][0]
        if len(counts) > 1:
            _note(f"{root}: images with 1 and 3 channels; all read with {channels} (the "
                  "majority's); --image-channels 1|3 chooses")
    if options.size:
        h, w = options.size
    else:
        sizes = Counter(size for size, _ in headers)
        (w, h), _ = sizes.most_common(1)[0]
        if len(sizes) > 1:
            odd = next(p for p, (s, _) in zip(files, headers, strict=True) if s != (w, h))
            other = dict(zip(files, headers, strict=True))[odd][0]
            raise DataError(f"{odd} is {other[0]}x{other[1]} pixels (W x H), but most images "
                            f"are {w}x{h}: give --image-size H,W to resize them all")
    need = len(files) * channels * h * w * 4  # the float32 tensor training holds
    budget = memory_budget()
    if need > budget:
        raise DataError(f"{root}: {len(files)} images of {channels}x{h}x{w} take "
                        f"{need / 2**30:.1f} GiB as float32, over the memory budget of "
                        f"{budget / 2**30:.1f} GiB: give a smaller --image-size (or set "
                        "VAEKIT_MEMORY_BUDGET_GB)")
    mode = "L" if channels == 1 else "RGB"
    target = (w, h) if options.size else None
    with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) * 2)) as pool:
        decoded = list(pool.map(lambda p: _decode(p, mode, target), files))
    return np.stack(decoded)


def load_image_folder(root: Path, val_fraction: float, options: FolderOptions) -> Dataset:
    """A Dataset of the folder's images in [0, 1] (bin width 1/256), labelled by subfolder."""
    x, y, classes = read_folder(root, options)
    images = torch.from_numpy(x).float().div_(255.0)
    labels = torch.from_numpy(y) if y is not None else None
    data = _split(root.name or str(root), images, None, val_fraction, images=True,
                  bin_width=1 / 256, labels=labels)
    if labels is not None:  # the subfolders' names, in label order
        data.class_names = tuple(classes)
    return data
