"""Files vaekit writes: the permissions an ordinary open() gives, and outputs that never
replace a file the command reads."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vaekit.errors import VaekitError
from vaekit.io import atomic_write_bytes, claim_output, current_umask


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process's umask after a test that sets it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path: Path, umask: None, mask: int,
                                                  expected: int) -> None:
    os.umask(mask)
    assert current_umask() == mask
    atomic_write_bytes(tmp_path / "atomic", b"payload")
    with open(tmp_path / "plain", "wb"):
        pass
    assert _mode(tmp_path / "atomic") == _mode(tmp_path / "plain") == expected


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_every_file_of_a_saved_run_is_as_readable_as_the_umask_allows(
        tmp_path: Path, tiny_run: Path, umask: None, mask: int) -> None:
    import vaekit

    model = vaekit.load(tiny_run)
    os.umask(mask)
    vaekit.save(model, tmp_path / "copy")
    modes = {p.name: _mode(p) for p in (tmp_path / "copy").iterdir()}
    assert modes == {"config.json": 0o666 & ~mask, "model.safetensors": 0o666 & ~mask}


def test_a_replaced_file_keeps_its_own_mode(tmp_path: Path, umask: None) -> None:
    target = tmp_path / "shared.npy"
    target.write_bytes(b"old")
    target.chmod(0o640)
    os.umask(0o077)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and _mode(target) == 0o640


def test_an_output_that_is_an_input_is_refused_however_it_is_spelt(tmp_path: Path) -> None:
    data = tmp_path / "data.npy"
    data.write_bytes(b"input")
    (tmp_path / "link.npy").symlink_to(data)
    os.link(data, tmp_path / "hard.npy")
    (tmp_path / "sub").mkdir()
    for spelling in (data, tmp_path / "sub" / ".." / "data.npy", tmp_path / "link.npy",
                     tmp_path / "hard.npy"):
        with pytest.raises(VaekitError, match="which this command reads"):
            claim_output(spelling, reads=[data], force=True)
    assert data.read_bytes() == b"input"


def test_an_output_inside_a_directory_the_command_reads_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "elsewhere").symlink_to(run)
    for out in (run / "model.safetensors", run / "new.npy", tmp_path / "elsewhere" / "x.npy",
                run):
        with pytest.raises(VaekitError, match="inside"):
            claim_output(out, read_dirs=[run], force=True)


def test_an_existing_output_is_replaced_only_with_force(tmp_path: Path) -> None:
    out = tmp_path / "scores.npy"
    assert claim_output(out) == out  # a new file: fine
    out.write_bytes(b"earlier results")
    with pytest.raises(VaekitError, match="already exists; pass --force"):
        claim_output(out)
    assert claim_output(out, force=True) == out
    with pytest.raises(VaekitError, match="is a directory"):
        claim_output(tmp_path, force=True)
