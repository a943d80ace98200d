"""Paths a user gives for data (issue #16, items 1 and 17b): every one is checked and each
problem ends in one line; where mnist and fashion-mnist are looked for, and downloads."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FASHION_DIR
from tests.test_data import idx_bytes, write_idx_dir
from vaekit.data import load_dataset
from vaekit.errors import DataError

# --- user paths: every one checked, each problem one line (issue #16, item 1)

PATH_CASES = ("data dir is a file", "data dir does not exist", "data dir below a file",
              "data dir is empty", "IDX file is a directory", "VAEKIT_DATA_DIR is a file",
              "an empty folder", "data file below a file",
              "missing data file of another format", "a .csv table without rows",
              "text in a .npy file")


def _path_cases(tmp: Path) -> list[tuple[str, list[str], dict[str, str], str]]:
    """(case, argv, environment, text the one-line message must contain), files in tmp."""
    a_file = tmp / "passwd"
    a_file.write_text("root:x:0:0\n")
    empty = tmp / "empty"
    empty.mkdir()
    odd = tmp / "odd"
    (odd / "train-images-idx3-ubyte").mkdir(parents=True)
    table = tmp / "table.csv"
    table.write_text("a,b\n")
    text_npy = tmp / "text.npy"
    text_npy.write_text("1 2 3\n")
    return [
        ("data dir is a file", ["--data", "mnist", "--data-dir", str(a_file)], {},
         "is not a directory"),
        ("data dir does not exist", ["--data", "mnist", "--data-dir", str(tmp / "no")], {},
         "does not exist"),
        ("data dir below a file", ["--data", "mnist", "--data-dir", str(a_file / "d")], {},
         "does not exist"),
        ("data dir is empty", ["--data", "fashion-mnist", "--data-dir", str(empty)], {},
         "is empty"),
        ("IDX file is a directory", ["--data", "mnist", "--data-dir", str(odd)], {},
         "is a directory, not an IDX file"),
        ("VAEKIT_DATA_DIR is a file", ["--data", "mnist"], {"VAEKIT_DATA_DIR": str(a_file)},
         "$VAEKIT_DATA_DIR"),
        ("an empty folder", ["--data", str(empty)], {}, "holds no PNG or JPEG images"),
        ("data file below a file", ["--data", str(a_file / "x.npy")], {}, "does not exist"),
        ("missing data file of another format", ["--data", str(tmp / "x.csv")], {},
         "does not exist"),
        ("a .csv table without rows", ["--data", str(table)], {}, "holds no rows"),
        ("text in a .npy file", ["--data", str(text_npy)], {}, "not a valid NumPy file"),
    ]


@pytest.mark.parametrize("case", PATH_CASES)
def test_bad_data_paths_end_in_one_line_error(case: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from vaekit.cli import main

    cases = {name: rest for name, *rest in _path_cases(tmp_path)}
    assert tuple(cases) == PATH_CASES
    argv, env, text = cases[case]
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = main(["train", *argv, "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("vaekit: error: ") and err.count("\n") == 1, err
    assert text in err and "Traceback" not in err and "pickled" not in err


@pytest.mark.parametrize("target", ["data file", "data dir"])
def test_unreadable_data_paths_end_in_one_line_error(target: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Permission is denied by the operating system (as a user without rights; root reads
    everything, so the refusal is simulated for the one path)."""
    import os

    from vaekit.cli import main

    path = tmp_path / ("x.npy" if target == "data file" else "idx")
    if target == "data file":
        np.save(path, np.zeros((20, 3)))
        argv = ["--data", str(path)]
    else:
        path.mkdir()
        (path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((20, 4, 4))))
        argv = ["--data", "mnist", "--data-dir", str(path)]
    access, scandir = os.access, os.scandir

    def denied(p: object) -> bool:
        return Path(str(p)) == path

    monkeypatch.setattr(os, "access", lambda p, mode: not denied(p) and access(p, mode))

    def no_listing(p: object) -> object:
        if denied(p):
            raise PermissionError(13, "Permission denied", str(p))
        return scandir(p)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", no_listing)
    assert main(["train", *argv, "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot be read" in err and err.count("\n") == 1, err


def test_evaluating_with_a_folder_without_images_as_data_is_one_line(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vaekit.cli import main

    (tmp_path / "notes.txt").write_text("no images here")
    assert main(["evaluate", str(tiny_run), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no PNG or JPEG images (1 other files skipped)" in err
    assert err.count("\n") == 1


# --- where mnist / fashion-mnist are looked for (item 17b)

@pytest.fixture
def data_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """$VAEKIT_DATA_DIR, ~ and a system directory, all empty and under tmp_path."""
    from vaekit.data import mnist

    dirs = {"env": tmp_path / "env", "home": tmp_path / "home", "system": tmp_path / "sys"}
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(dirs["env"]))
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", {"fashion-mnist": (dirs["system"],)})
    return dirs


def test_fashion_mnist_is_searched_in_the_users_then_the_systems_directories(
        data_homes: dict[str, Path]) -> None:
    from vaekit.data.mnist import search_dirs

    env = data_homes["env"] / "fashion-mnist"
    cache = data_homes["home"] / ".cache/vaekit/fashion-mnist"
    assert search_dirs("fashion-mnist") == [env, cache, data_homes["system"]]
    assert search_dirs("mnist") == [data_homes["env"] / "mnist",
                                    data_homes["home"] / ".cache/vaekit/mnist"]
    for fill, folder in ((3, data_homes["system"]), (2, cache), (1, env)):
        write_idx_dir(folder, 20, 5, fill=fill)  # each found directory hides those after it
        d = load_dataset("fashion-mnist")
        assert round(float(d.train.flatten()[0]) * 255) % 10 == fill


def test_a_failed_download_leaves_no_directory_behind(data_homes: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.request

    def offline(url: str, timeout: float) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="could not download"):
        load_dataset("fashion-mnist", download=True)
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load_dataset("mnist", download=False)
    assert not data_homes["env"].exists() and not data_homes["home"].exists()


def test_a_download_fills_the_first_directory_searched(data_homes: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import urllib.request

    source = write_idx_dir(data_homes["home"].parent / "source", 20, 5)

    def serve(url: str, timeout: float) -> io.BytesIO:
        stem = url.rsplit("/", 1)[1].removesuffix(".gz")
        raw = (source / stem).read_bytes() if (source / stem).exists() else \
            gzip.decompress((source / f"{stem}.gz").read_bytes())
        return io.BytesIO(gzip.compress(raw))

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    d = load_dataset("mnist", download=True)
    assert len(d.train) + len(d.val) == 20 and d.labels is not None
    assert len(list((data_homes["env"] / "mnist").glob("*.gz"))) == 4


def test_fashion_mnist_is_found_in_the_debian_package_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    monkeypatch.setenv("VAEKIT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    d = load_dataset("fashion-mnist")
    assert len(d.test) == 10000 and d.split_labels("test")[:3].tolist() == [9, 2, 1]
    assert not any(tmp_path.iterdir())
