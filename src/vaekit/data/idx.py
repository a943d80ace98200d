"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzip-compressed), strict
about every header field so that a truncated or foreign file is refused with a clear message."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import DataError

# Third byte of the magic number: the element type (IDX spec, LeCun et al.).
_IDX_DTYPES: dict[int, Any] = {
    0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_MAX_BYTES = 1 << 31


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file into an array of shape given by its header."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                raw = f.read(_MAX_BYTES + 1)
    except OSError as e:
        raise DataError(f"cannot read IDX file {path}: {e.strerror or e}") from None
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise DataError(f"{path} is a corrupt or truncated gzip file") from None
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an IDX file: magic 0x0000TTNN (T = type, N = number of dimensions),
    N big-endian uint32 sizes, then the data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name} is not an IDX file (wrong magic number)")
    dtype, ndim = _IDX_DTYPES.get(raw[2]), raw[3]
    if dtype is None or not 1 <= ndim <= 4:
        raise DataError(f"{name} is not an IDX file (magic number 0x{raw[:4].hex()} names no "
                        "known type or a bad number of dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name} is truncated (the header is incomplete)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    itemsize = np.dtype(dtype).itemsize
    expected = math.prod(shape) * itemsize
    if expected > _MAX_BYTES:
        raise DataError(f"{name} declares an implausible shape {shape}")
    if len(raw) - header != expected:
        problem = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise DataError(f"{name} is {problem}: header shape {shape} needs {expected} bytes of "
                        f"data, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype, copy=True)
