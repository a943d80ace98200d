"""Atomic file writes and the safetensors/JSON files of a run directory.

Every file is written to a temporary file in the same directory, flushed, fsynced and renamed
over the target, so a crash or a full disk leaves either the old file or the new one, never
half of either. It gets the permissions an ordinary open() would give (the umask's, or those of
the file it replaces). Nothing here pickles or unpickles.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from vaekit.errors import ConfigError, RunDirError, VaekitError


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel reports it (Linux 4.7+:
    /proc/self/status); elsewhere set and restored at once, as a last resort."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: Path) -> int:
    """The permission bits an ordinary open(path, "w") would leave: an existing file's own,
    otherwise 0o666 & ~umask (mkstemp's 0o600 would hide the file from the group)."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~current_umask()


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = new_file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise VaekitError(f"could not write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
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


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or (hard links) one inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def claim_output(path: str | Path, *, reads: Sequence[str | Path] = (),
                 read_dirs: Sequence[str | Path] = (), force: bool = False) -> Path:
    """Check, before any work is done, that a command may write its output `path`.

    Refused always: a file the command reads (`reads`), or any path inside a directory it reads
    (`read_dirs`: the run directory, the data directory), however spelt (symlinks, `..`, hard
    links). Refused unless `force`: any other existing file, which is then replaced atomically.
    """
    out = Path(path)
    for source in map(Path, reads):
        if _same_file(out, source):
            raise ConfigError(f"-o {out} is {source}, which this command reads; choose another "
                              "output file")
    resolved = out.resolve()
    for folder in map(Path, read_dirs):
        if folder.is_dir() and resolved.is_relative_to(folder.resolve()):
            raise ConfigError(f"-o {out} is inside {folder}, which this command reads; write "
                              "the output elsewhere")
    if out.is_dir():
        raise ConfigError(f"-o {out} is a directory; give a file name")
    if (out.exists() or out.is_symlink()) and not force:
        raise ConfigError(f"-o {out} already exists; pass --force to replace it, or choose "
                          "another file name")
    return out
