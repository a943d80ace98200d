"""Data loading: IDX files, built-in digits, MNIST/Fashion-MNIST, user arrays; and the strict
config parser. Property-based tests check that any bytes give data or a clean DataError."""

from __future__ import annotations

import contextlib
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import FASHION_DIR, MNIST_DIR
from vaekit.config import Config
from vaekit.data import load_dataset
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
