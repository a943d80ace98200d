"""`--data FOLDER`: PNG/JPEG images read with Pillow, class subfolders as labels, resized and
converted on request, cached; every bad folder a one-line error naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.config import Config
from vaekit.data import load_dataset
from vaekit.errors import DataError

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))


def write_images(folder: Path, n: int, size: tuple[int, int] = (10, 12), mode: str = "L",
                 seed: int = 0, suffix: str = ".png") -> list[np.ndarray]:
    """n random images of `size` (W, H); returns their arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(n):
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(a, mode).save(folder / f"{i:03d}{suffix}")
        arrays.append(a)
    return arrays


@pytest.fixture
def classes(tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    write_images(root / "circle", 20, seed=1)
    write_images(root / "square", 16, seed=2)
    return root


def test_class_subfolders_are_labels_and_values_are_8_bit_levels(classes: Path) -> None:
    data = load_dataset(str(classes), val_fraction=0.0)
    assert data.images and data.bin_width == 1 / 256 and data.event_shape == (1, 12, 10)
    everything = data.split("all")
    assert len(everything) == 36 and data.split_labels("all").tolist() == [0] * 20 + [1] * 16
    first = np.asarray(Image.open(classes / "circle" / "000.png"), dtype=np.float32) / 255
    assert torch.equal(everything[0, 0], torch.from_numpy(first))
    assert len(data.train) + len(data.test) == 36  # a fixed 10% test split


def test_a_flat_folder_has_no_labels_and_other_files_are_skipped_with_a_count(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "flat"
    write_images(root, 12)
    (root / "notes.txt").write_text("not an image")
    (root / ".DS_Store").write_bytes(b"\0")
    data = load_dataset(str(root), val_fraction=0.0)
    assert data.labels is None and len(data.split("all")) == 12
    assert "1 files that are not PNG or JPEG were skipped" in capsys.readouterr().err


def test_size_and_channels_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "mixed"
    write_images(root, 5, size=(10, 12), mode="RGB", seed=1)
    for i, size in enumerate([(20, 24), (7, 9)]):
        Image.fromarray(np.zeros((size[1], size[0]), np.uint8)).save(root / f"odd{i}.png")
    with pytest.raises(DataError, match=r"odd0\.png is 20x24 pixels .* most images are 10x12"):
        load_dataset(str(root))
    data = load_dataset(str(root), settings=Config(image_size=(6, 8)))
    assert data.event_shape == (3, 6, 8)  # the RGB majority, with a note
    assert "all read with 3 (the majority's)" in capsys.readouterr().err
    grey = load_dataset(str(root), settings=Config(image_size=(16,), image_channels=1))
    assert grey.event_shape == (1, 16, 16)


def test_a_palette_image_and_a_jpeg_are_read(tmp_path: Path) -> None:
    root = tmp_path / "kinds"
    write_images(root, 3, mode="RGB", suffix=".jpg")
    Image.fromarray(np.zeros((12, 10, 3), np.uint8)).convert("P").save(root / "p.png")
    data = load_dataset(str(root), val_fraction=0.0)
    assert data.event_shape == (3, 12, 10) and len(data.split("all")) == 4


def test_the_decoded_array_is_cached_and_a_changed_file_is_read_again(
        classes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vaekit.data import folders

    first = load_dataset(str(classes), val_fraction=0.0).split("all")

    def no_decoding(*args: object) -> None:
        raise AssertionError("decoded again")

    with monkeypatch.context() as m:
        m.setattr(folders, "_decode_all", no_decoding)
        assert torch.equal(load_dataset(str(classes), val_fraction=0.0).split("all"), first)
    path = classes / "circle" / "000.png"
    Image.fromarray(np.full((12, 10), 255, np.uint8)).save(path)
    os.utime(path, ns=(1, 1))
    again = load_dataset(str(classes), val_fraction=0.0).split("all")
    assert torch.all(again[0] == 1.0) and not torch.equal(again, first)


def test_an_image_folder_trains_and_evaluates_end_to_end(classes: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(classes), "--hidden", "32", "--latent-dim", "2",
                 "--epochs", "2", "--batch-size", "10", "--quiet", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["images"] and config["event_shape"] == [1, 12, 10]
    assert (run / "latent.png").exists()  # coloured by the subfolders' labels
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.isfinite(report["nll"]) and report["n"] == 4
    out = tmp_path / "s.png"
    assert main(["sample", str(run), "-n", "4", "-o", str(out)]) == 0 and out.exists()
    # -o inside the data folder is refused
    assert main(["reconstruct", str(run), "-o", str(classes / "r.png")]) == 2


def _sixteen_bit(path: Path) -> None:
    Image.fromarray(np.full((12, 10), 40000, np.uint16)).save(path)


@pytest.mark.parametrize("case, message", [
    ("truncated", "truncated.png could not be decoded"),
    ("not an image", "fake.png is not a readable PNG or JPEG image"),
    ("empty", "holds no PNG or JPEG images"),
    ("16-bit", "deep.png is a I;16 image"),
    ("beside classes", "beside class subfolders"),
    ("over budget", "over the memory budget"),
])
def test_a_bad_folder_is_one_line_naming_the_problem(
        case: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    if case != "empty":
        write_images(root if case != "beside classes" else root / "cls", 4)
    if case == "truncated":
        good = (root / "000.png").read_bytes()
        (root / "truncated.png").write_bytes(good[: len(good) // 2])
    elif case == "not an image":
        (root / "fake.png").write_text("hello")
    elif case == "16-bit":
        _sixteen_bit(root / "deep.png")
    elif case == "beside classes":
        write_images(root, 1)
    elif case == "over budget":
        monkeypatch.setenv("VAEKIT_MEMORY_BUDGET_GB", "0.000001")
    capsys.readouterr()
    assert main(["train", "--data", str(root), "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vaekit: error:") and message in err[-1], err
    assert "Traceback" not in "\n".join(err)
    if case == "over budget":
        assert "--image-size" in err[-1]
    assert not (tmp_path / "run").exists()


def test_a_damaged_or_unwritable_cache_never_stops_the_read(
        classes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    first = load_dataset(str(classes), val_fraction=0.0).split("all")
    for entry in (tmp_path / "cache" / "folders").iterdir():
        entry.write_bytes(b"PK\x03\x04 not really a zip")
    assert torch.equal(load_dataset(str(classes), val_fraction=0.0).split("all"), first)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("VAEKIT_CACHE", str(blocker))  # its folders/ cannot be made
    assert torch.equal(load_dataset(str(classes), val_fraction=0.0).split("all"), first)
    assert "could not cache the decoded images" in capsys.readouterr().err
