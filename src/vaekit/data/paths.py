"""Checks of the paths a user names for data (a data file, a data directory): each is refused
with one line saying what is wrong with it, before anything tries to read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from vaekit.errors import DataError


def path_mode(path: Path, what: str) -> int | None:
    """The file type bits of `path`, or None where nothing is there."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:  # a parent that cannot be searched, a symlink loop, ...
        raise DataError(f"{what} {path} cannot be read: {e.strerror or e}") from None


def check_file(path: Path, what: str = "data file", if_dir: str = "") -> Path:
    """`path` names a readable regular file; `if_dir` is advice for a directory given."""
    mode = path_mode(path, what)
    if mode is None:
        raise DataError(f"{what} {path} does not exist")
    if stat.S_ISDIR(mode):
        raise DataError(f"{what} {path} is a directory, not a file" + (f"; {if_dir}" if if_dir
                                                                     else ""))
    if not stat.S_ISREG(mode):
        raise DataError(f"{what} {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise DataError(f"{what} {path} cannot be read: permission denied")
    return path


def dir_state(path: Path, what: str = "data directory") -> str:
    """'missing', 'empty' or 'full' for a directory the user named; refuses a file or a
    directory that cannot be listed."""
    mode = path_mode(path, what)
    if mode is None:
        return "missing"
    if not stat.S_ISDIR(mode):
        raise DataError(f"{what} {path} is not a directory (it is a file)")
    try:
        with os.scandir(path) as entries:
            return "full" if any(True for _ in entries) else "empty"
    except OSError as e:
        raise DataError(f"{what} {path} cannot be read: {e.strerror or e}") from None
