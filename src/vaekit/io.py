"""Atomic file writes and the safetensors/JSON files of a run directory.

Every file is written to a temporary file in the same directory, flushed, fsynced and renamed
over the target, so a crash or a full disk leaves either the old file or the new one, never
half of either. Nothing here pickles or unpickles.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaekit.errors import RunDirError, VaekitError


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise VaekitError(f"could not write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise VaekitError(f"could not write {path}: {e.strerror or e}; the previous version "
                              "of the file is unchanged") from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_bytes(path: str | Path, payload: bytes) -> None:
    def write(f: BinaryIO) -> None:
        f.write(payload)

    _atomic_write(Path(path), write)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 metadata: dict[str, Any] | None = None) -> None:
    """Write tensors (and JSON-able metadata, stored in the safetensors header) atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"json": json.dumps(metadata)} if metadata is not None else None
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read a safetensors file written by `save_tensors`; a corrupt file raises RunDirError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        tensors = st_load(raw)
        from safetensors import safe_open  # header metadata, parsed by the same strict reader

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata()
    except (SafetensorError, ValueError, OSError, RuntimeError) as e:
        raise RunDirError(f"{path} is not a valid safetensors file (truncated or corrupted: "
                          f"{str(e).splitlines()[0][:120]})") from None
    meta = None
    if header and "json" in header:
        try:
            meta = json.loads(header["json"])
        except json.JSONDecodeError:
            raise RunDirError(f"{path} has corrupted metadata") from None
    return tensors, meta


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{path} is not a readable JSON file ({type(e).__name__})") from None
