"""Sample quality: the Fréchet distance, k-NN precision/recall and the feature networks, each
checked on inputs with a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import FASHION_DIR, MNIST_DIR
from vaekit.cli import main
from vaekit.data import load_dataset
from vaekit.quality import (
    GaussianStatistics,
    feature_network,
    frechet_distance,
    frechet_distance_of,
    precision_recall,
    sample_quality,
)
from vaekit.quality import features as features_module


@pytest.fixture(autouse=True)
def _short_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
                  ) -> None:
    """A short classifier recipe (its own cache key) in a cache of the test session's own."""
    monkeypatch.setitem(features_module.RECIPE, "steps", 300)
    cache = tmp_path_factory.getbasetemp() / "vaekit-cache"
    monkeypatch.setenv("VAEKIT_CACHE", str(cache))


def _random_covariance(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ---------------------------------------------------------------- Fréchet distance

def test_frechet_distance_of_two_gaussians_matches_the_closed_form() -> None:
    """Covariances with common eigenvectors Q: Tr (S1 S2)^(1/2) = sum sqrt(a_i b_i), so
    FD = |m1 - m2|^2 + sum (sqrt a_i - sqrt b_i)^2."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    a, b = rng.uniform(0.1, 4, 6), rng.uniform(0.1, 4, 6)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = ((m1 - m2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(GaussianStatistics(m1, s1, 2), GaussianStatistics(m2, s2, 2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_is_symmetric_and_matches_scipy_sqrtm_on_general_covariances() -> None:
    import scipy.linalg

    rng = np.random.default_rng(1)
    s1, s2 = _random_covariance(5, rng), _random_covariance(5, rng)
    m1, m2 = rng.normal(size=5), rng.normal(size=5)
    reference = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(
        scipy.linalg.sqrtm(s1 @ s2)))
    a, b = GaussianStatistics(m1, s1, 2), GaussianStatistics(m2, s2, 2)
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)
    assert frechet_distance(b, a) == pytest.approx(reference, rel=1e-8)


def test_frechet_distance_of_samples_converges_to_that_of_their_gaussians() -> None:
    rng = np.random.default_rng(2)
    s1, s2 = _random_covariance(4, rng), _random_covariance(4, rng)
    m1, m2 = np.zeros(4), np.full(4, 0.5)
    exact = frechet_distance(GaussianStatistics(m1, s1, 2), GaussianStatistics(m2, s2, 2))
    x = torch.from_numpy(rng.multivariate_normal(m1, s1, size=200_000))
    y = torch.from_numpy(rng.multivariate_normal(m2, s2, size=200_000))
    assert frechet_distance_of(x, y) == pytest.approx(exact, rel=0.02)


def test_a_set_scored_against_itself_gives_zero_and_full_precision_and_recall() -> None:
    x = torch.randn(500, 16)
    x[:, 3] = 1.0  # a constant feature (a dead unit): a singular covariance
    assert frechet_distance_of(x, x) == pytest.approx(0.0, abs=1e-8)
    assert precision_recall(x, x.clone()) == (1.0, 1.0)


# ---------------------------------------------------------------- precision and recall

def _clusters(modes: list[int], per_mode: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = 20 * torch.randn(10, 8, generator=torch.Generator().manual_seed(99))  # far apart
    return torch.cat([centres[m] + torch.randn(per_mode, 8, generator=g) for m in modes])


def test_dropping_modes_lowers_recall_and_keeps_precision() -> None:
    real = _clusters(list(range(10)), 100, seed=0)
    all_modes = _clusters(list(range(10)), 100, seed=1)
    half = _clusters(list(range(5)), 200, seed=2)
    p_all, r_all = precision_recall(real, all_modes)
    p_half, r_half = precision_recall(real, half)
    # two finite draws of one distribution: high, not 1 (k-NN balls leave gaps in 8-d)
    assert p_all > 0.8 and r_all > 0.8
    assert p_half > 0.8 and r_half < 0.5  # half of the data's modes are covered


def test_samples_off_the_data_lower_precision() -> None:
    real = _clusters(list(range(10)), 100, seed=0)
    off = real + 8 * torch.randn(real.shape, generator=torch.Generator().manual_seed(3))
    precision, _ = precision_recall(real, off)
    assert precision < 0.2


# ---------------------------------------------------------------- feature networks

def test_the_classifier_is_trained_once_then_read_from_its_cache(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("digits", None, 0.1)
    first = feature_network(data, progress=False)
    assert first.kind == "classifier" and first.test_accuracy > 0.8
    assert first.describe()["not_data_class"] and first.net.head.out_features == 11

    def no_training(*args: object) -> None:
        raise AssertionError("the cached classifier was trained again")

    monkeypatch.setattr(features_module, "train_classifier", no_training)
    second = feature_network(data, progress=False)
    assert second.checksum == first.checksum and second.test_accuracy == first.test_accuracy
    x = data.test[:7]
    assert torch.equal(first.features(x), second.features(x))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other weights"])
def test_a_corrupted_feature_cache_is_rebuilt_never_trusted(
        damage: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(features_module.RECIPE, "steps", 20)  # a quick recipe of its own
    data = load_dataset("digits", None, 0.1)
    good = feature_network(data, progress=False)
    path = features_module.cache_path(data.name, data.train, data.split_labels("train"))
    assert path.exists()
    if damage == "garbage":
        path.write_bytes(b"\x80\x04 not a safetensors file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:  # valid safetensors whose weights do not match the recorded checksum
        from vaekit.io import load_tensors, save_tensors

        tensors, meta = load_tensors(path)
        tensors = {k: v + 1 for k, v in tensors.items()}
        save_tensors(path, tensors, meta)
    capsys.readouterr()
    rebuilt = feature_network(data, progress=False)
    assert "corrupted" in capsys.readouterr().err
    assert rebuilt.checksum == good.checksum  # the recipe is deterministic


def test_data_without_labels_get_the_seeded_random_network_and_reports_say_so() -> None:
    data = load_dataset("digits", None, 0.1)
    data.labels = None
    net = feature_network(data)
    assert net.kind == "random" and net.name == feature_network(data).name
    report = sample_quality(data.val, data, net)
    assert report["feature_network"]["kind"] == "random"
    assert "untrained" in report["feature_network"]["note"]


def test_gaussian_blur_keeps_a_constant_image_and_spreads_a_point_by_sigma() -> None:
    flat = torch.full((2, 1, 9, 9), 0.3)
    sigma = torch.tensor([0.7, 1.6])
    assert torch.allclose(features_module.gaussian_blur(flat, sigma), flat, atol=1e-6)
    point = torch.zeros(2, 1, 41, 41)
    point[:, :, 20, 20] = 1.0
    blurred = features_module.gaussian_blur(point, sigma)
    assert torch.allclose(blurred.sum((1, 2, 3)), torch.ones(2), atol=1e-5)
    t = torch.arange(41.0) - 20
    variance_x = (blurred.sum(2)[:, 0] * t ** 2).sum(1)  # per image, across columns
    assert torch.allclose(variance_x, sigma ** 2, rtol=0.02)


def test_corruptions_are_seeded_and_keep_pixels_in_0_1() -> None:
    x = load_dataset("digits", None, 0.1).train[:64]
    a = features_module.corrupt(x, torch.Generator().manual_seed(5))
    b = features_module.corrupt(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, x)


# ---------------------------------------------------------------- noise < blur < real (issue #24)

#: The shipped recipe's steps (the autouse fixture shortens it for the other tests).
SHIPPED_STEPS = features_module.RECIPE["steps"]


def _blurred_twice(x: torch.Tensor) -> torch.Tensor:
    """x blurred twice by the 3x3 binomial kernel [1 2 1]^T [1 2 1] / 16, channel by channel."""
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = ((k[:, None] * k[None]) / 16).expand(x.shape[1], 1, 3, 3)
    for _ in range(2):
        x = torch.nn.functional.conv2d(x, kernel, padding=1, groups=x.shape[1])
    return x


def _real_blurred_noise(name: str, data_dir: Path | None, n: int,
                        monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, float]]:
    """The reports of n held-out real images (the validation split, which the classifier never
    saw), the same blurred twice, and uniform noise, against the test split, in the feature
    network of the shipped recipe."""
    monkeypatch.setitem(features_module.RECIPE, "steps", SHIPPED_STEPS)
    data = load_dataset(name, None if data_dir is None else str(data_dir), 0.1)
    net = feature_network(data, progress=False)
    real = data.val[:n]
    noise = torch.rand(real.shape, generator=torch.Generator().manual_seed(0))
    return {label: sample_quality(x, data, net) for label, x in
            (("real", real), ("blurred", _blurred_twice(real)), ("noise", noise))}


def _check_order(scores: dict[str, dict[str, float]]) -> None:
    fd = {label: r["fd"] for label, r in scores.items()}
    precision = {label: r["precision"] for label, r in scores.items()}
    recall = {label: r["recall"] for label, r in scores.items()}
    assert fd["real"] < 2 * scores["real"]["floor"]["fd"] + 1, fd
    assert fd["real"] < fd["blurred"] < fd["noise"], fd
    # the old classifier put 74% of uniform noise on the digits' manifold
    assert precision["noise"] < 0.05, precision
    assert precision["blurred"] < precision["real"], precision
    assert recall["real"] > recall["blurred"] >= recall["noise"], recall


def test_on_the_digits_noise_scores_worse_than_blurred_digits_worse_than_real_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _check_order(_real_blurred_noise("digits", None, 1000, monkeypatch))


@pytest.mark.slow
@pytest.mark.parametrize("name,folder", [("mnist", MNIST_DIR), ("fashion-mnist", FASHION_DIR)])
def test_on_mnist_and_fashion_noise_scores_worse_than_blurred_images_worse_than_real_ones(
        name: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not folder.is_dir():
        pytest.skip(f"needs {folder}")
    _check_order(_real_blurred_noise(name, folder, 2000, monkeypatch))


# ---------------------------------------------------------------- the command

def test_quality_of_a_run_prints_the_floor_and_saves_its_report(
        tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["quality", str(tiny_run), "--n", "150", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["n"] == 150 and report["feature_network"]["kind"] == "classifier"
    assert {"fd", "precision", "recall"} <= set(report) and "fd" in report["floor"]
    assert "Fréchet distance" in out and "floor" in out
    saved = json.loads((tiny_run / "quality.json").read_text())
    assert saved["fd"] == report["fd"]


def test_a_samples_file_is_scored_like_a_runs_samples(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    data = load_dataset("digits", None, 0.1)
    own = tmp_path / "own.npy"
    np.save(own, (data.val.numpy() * 255).round().astype(np.uint8))  # uint8 levels are fine
    capsys.readouterr()
    assert main(["quality", "--samples", str(own), "--data", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # real digits score about as the training set does
    assert report["fd"] < 3 * report["floor"]["fd"] + 1
    assert report["samples_file"] == str(own)


def test_runs_with_different_validation_splits_are_scored_in_one_feature_space(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = []
    for fraction in ("0", "0.2"):
        run = tmp_path / f"val{fraction}"
        assert main(["train", "--out", str(run), "--val-fraction", fraction, "--hidden", "16",
                     "--latent-dim", "2", "--epochs", "1", "--quiet"]) == 0
        capsys.readouterr()
        assert main(["quality", str(run), "--n", "60", "--json"]) == 0
        names.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])[
            "feature_network"]["name"])
    assert names[0] == names[1]
