"""Data loading: IDX files, built-in digits, MNIST/Fashion-MNIST, user arrays; and the strict
config parser. Property-based tests check that any bytes give data or a clean DataError."""

from __future__ import annotations

import contextlib
import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FASHION_DIR, MNIST_DIR
from vaekit.config import Config
from vaekit.data import SPLITS, load_dataset
from vaekit.data.idx import parse_idx, read_idx
from vaekit.errors import ConfigError, DataError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_round_trip_plain_and_gzip(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, size=(5, 3, 4)).astype(np.uint8)
    (tmp_path / "a").write_bytes(idx_bytes(a))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(a)))
    assert np.array_equal(read_idx(tmp_path / "a"), a)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), a)


@pytest.mark.parametrize("mutate,message", [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b + b"\x00", "longer than its header"),
    (lambda b: b"\x01\x02" + b[2:], "wrong magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "names no known type"),
    (lambda b: b[:6], "header is incomplete"),
    (lambda b: b"", "wrong magic"),
])
def test_corrupt_idx_is_refused_with_its_cause(mutate, message: str) -> None:
    good = idx_bytes(np.zeros((4, 2, 2)))
    with pytest.raises(DataError, match=message):
        parse_idx(mutate(good))


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    payload = gzip.compress(idx_bytes(np.zeros((50, 4, 4))))
    (tmp_path / "t.gz").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_idx(tmp_path / "t.gz")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_random_bytes_as_idx_give_data_or_a_clean_error(raw: bytes) -> None:
    with contextlib.suppress(DataError):
        parse_idx(raw)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3))
def test_well_formed_idx_of_any_shape_parses(shape: list[int]) -> None:
    a = np.arange(np.prod(shape)).reshape(shape).astype(np.uint8)
    assert np.array_equal(parse_idx(idx_bytes(a)), a)


def test_digits_are_built_in_and_split_without_overlap() -> None:
    d = load_dataset("digits")
    assert d.event_shape == (1, 8, 8) and d.images
    assert len(d.train) + len(d.val) + len(d.test) == 1797
    assert float(d.train.min()) >= 0 and float(d.train.max()) <= 1
    again = load_dataset("digits")
    assert np.array_equal(d.test.numpy(), again.test.numpy())


@pytest.mark.parametrize("name,folder", [("mnist", MNIST_DIR), ("fashion-mnist", FASHION_DIR)])
def test_idx_datasets_read_from_a_directory(name: str, folder: Path) -> None:
    if not folder.is_dir():
        pytest.skip(f"{folder} is not installed")
    d = load_dataset(name, str(folder), val_fraction=0.1)
    assert d.event_shape == (1, 28, 28)
    assert (len(d.train), len(d.val), len(d.test)) == (54000, 6000, 10000)
    assert float(d.train.max()) == 1.0 and float(d.train.min()) == 0.0


def test_arrays_are_used_exactly_as_given(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(5, 3, size=(100, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    d = load_dataset(str(tmp_path / "x.npy"), val_fraction=0.2)
    together = np.concatenate([d.train.numpy(), d.val.numpy(), d.test.numpy()])
    assert np.allclose(np.sort(together, axis=0), np.sort(x, axis=0))
    assert (len(d.train), len(d.val), len(d.test)) == (72, 18, 10)
    assert len(d.split("all")) == 100


def test_npz_with_named_splits(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", train=np.ones((30, 2)), test=np.zeros((5, 2)))
    d = load_dataset(str(tmp_path / "d.npz"), val_fraction=0.0)
    assert (len(d.train), len(d.val), len(d.test)) == (30, 0, 5)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["latent_dim", "latent-dim", "hidden", "lr", "epochs",
                                        "net", "seed", "bogus", "binarize", "grad_clip"]),
                       st.one_of(st.integers(-5, 300), st.floats(allow_nan=True),
                                 st.text(max_size=8), st.lists(st.integers(-3, 50), max_size=3),
                                 st.booleans(), st.none()), max_size=4))
def test_config_parser_accepts_valid_values_or_names_the_problem(values: dict) -> None:
    try:
        config = Config.from_dict(values)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert config.latent_dim > 0 and config.lr > 0 and all(h > 0 for h in config.hidden)


# --- labels (item 9): read where the source has them, and kept with their examples

def write_idx_dir(folder: Path, n_train: int, n_test: int, fill: int = 0,
                  labels: bool = True) -> Path:
    """Tiny IDX files: image i is filled with 10 * its label + fill, so an image names its
    label (and `fill` names the directory it came from)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n_train)
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        images = np.repeat(10 * y + fill, 16).reshape(n, 4, 4)
        prefix = "train" if split == "train" else "t10k"
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        if labels:
            (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y)))
    return folder


def _labelled_sources(tmp: Path) -> dict[str, tuple[str, str | None, Callable]]:
    """name -> (dataset, data_dir, label of an example (1-D or image tensor))."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 90)
    x = np.stack([y * 3.0, rng.normal(size=90)], axis=1)  # column 0 names the label
    np.savez(tmp / "one.npz", train=x[:70], train_labels=y[:70], test=x[70:],
             test_labels=y[70:])
    np.savez(tmp / "three.npz", train=x[:60], train_labels=y[:60], val=x[60:75],
             val_labels=y[60:75], test=x[75:], test_labels=y[75:])
    write_idx_dir(tmp / "idx", 80, 20)
    return {"npz train/test": (str(tmp / "one.npz"), None, lambda e: e[0] / 3),
            "npz train/val/test": (str(tmp / "three.npz"), None, lambda e: e[0] / 3),
            "idx directory": ("mnist", str(tmp / "idx"), lambda e: (e.flatten()[0] * 255) / 10)}


@pytest.mark.parametrize("source", ["npz train/test", "npz train/val/test", "idx directory"])
def test_labels_follow_their_examples_through_the_split(source: str, tmp_path: Path) -> None:
    name, data_dir, label_of = _labelled_sources(tmp_path)[source]
    d = load_dataset(name, data_dir, val_fraction=0.25)
    assert d.labels is not None
    for split in SPLITS:
        x, y = d.split(split), d.split_labels(split)
        assert y is not None and y.dtype == torch.int64 and len(y) == len(x) > 0
        assert [round(float(label_of(e))) for e in x] == y.tolist(), split


def test_digits_carry_their_labels_in_every_split() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    d = load_dataset("digits")
    assert np.array_equal(d.split_labels("all").numpy(), digits.target)
    labels_of = {}
    for image, label in zip(digits.images, digits.target):
        labels_of.setdefault((image / 16).astype(np.float32).tobytes(), set()).add(int(label))
    for split in ("train", "val", "test"):
        for image, label in zip(d.split(split), d.split_labels(split)):
            assert int(label) in labels_of[image[0].numpy().tobytes()]


def test_idx_images_without_label_files_load_without_labels(tmp_path: Path) -> None:
    d = load_dataset("mnist", str(write_idx_dir(tmp_path / "idx", 30, 10, labels=False)))
    assert d.labels is None and d.split_labels("train") is None and len(d.test) == 10


def test_an_idx_label_file_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    folder = write_idx_dir(tmp_path / "idx", 30, 10)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(9))))
    with pytest.raises(DataError, match="expected 10 integer labels"):
        load_dataset("mnist", str(folder))


@pytest.mark.parametrize("arrays,message", [
    ({"train": np.zeros((10, 2)), "train_labels": np.zeros(10, int), "test": np.zeros((5, 2))},
     "labels are given for"),
    ({"train": np.zeros((10, 2)), "train_labels": np.zeros(9, int)}, r"shape \(10,\)"),
    ({"train": np.zeros((10, 2)), "train_labels": np.zeros(10)}, "must be integers"),
    ({"train": np.zeros((10, 2)), "labels": np.zeros(10, int)}, "unexpected arrays"),
])
def test_npz_labels_that_do_not_fit_are_refused(arrays: dict, message: str,
                                                tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(str(tmp_path / "d.npz"))


def test_latent_map_of_a_labelled_dataset_is_coloured_by_label(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vaekit
    from vaekit.views import plots

    seen: dict[str, object] = {}
    monkeypatch.setattr(plots, "save_latent_plots",
                        lambda model, x, path, shape, labels=None: seen.update(x=x, labels=labels))
    data = load_dataset("digits")
    vaekit.train(data=data, out=tmp_path / "r", progress=False, hidden=(16,), latent_dim=2,
                 epochs=1)
    assert seen["labels"] is not None
    assert torch.equal(seen["labels"], data.split_labels("test"))


@pytest.mark.parametrize("n_classes,legend", [(10, True), (12, False)])
def test_latent_plot_shows_a_legend_or_a_colour_bar(n_classes: int, legend: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from vaekit.views import plots

    figures: list = []
    monkeypatch.setattr(plots, "_save_figure", lambda fig, path: figures.append(fig))

    class Encoder:  # a stand-in: z = the first two inputs
        def encode(self, x: torch.Tensor) -> torch.distributions.Normal:
            return torch.distributions.Normal(x[:, :2], 1.0)

    x = torch.randn(60, 2)
    plots.save_latent_plots(Encoder(), x, "unused.png", None,
                            labels=torch.arange(60) % n_classes)
    ax = figures[0].axes[0]
    if legend:
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(i) for i in range(10)]
    else:
        assert ax.get_legend() is None and len(figures[0].axes) == 2  # the colour bar's axes


# --- the latent dimension (item 17a)

def test_a_latent_space_larger_than_the_data_is_refused_in_training(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vaekit.cli import main
    from vaekit.train.prepare import check_data_fits

    digits = load_dataset("digits")  # 64 dimensions
    check_data_fits(Config(latent_dim=64), digits, "none")
    with pytest.raises(DataError, match="larger than the dimension of the data"):
        check_data_fits(Config(latent_dim=65), digits, "none")
    check_data_fits(Config(latent_dim=65), digits, "none", training=False)  # evaluating: as saved
    assert main(["train", "--latent-dim", "100000", "--hidden", "8", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--latent-dim 100000 is larger" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_saved_model_with_a_wider_latent_space_is_still_evaluated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs made before the refusal keep working: evaluation takes the model as saved."""
    import vaekit
    from vaekit.cli import main

    config = Config(hidden=(8,), latent_dim=70)
    vaekit.save(vaekit.build_model(config, (1, 8, 8)), tmp_path / "wide")
    assert main(["evaluate", str(tmp_path / "wide"), "--n", "10"]) == 0, capsys.readouterr().err
