"""Sample quality: the Fréchet distance, k-NN precision/recall and the feature networks, each
checked on inputs with a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import MNIST_DIR
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


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="needs ../shared/data/mnist")
def test_noise_scores_worse_than_blurred_data_which_scores_worse_than_real_data() -> None:
    data = load_dataset("mnist", str(MNIST_DIR), 0.0)
    data.train, data.test = data.train[:20000], data.test[:1000]
    data.labels = {k: v[:len(getattr(data, k))] for k, v in (data.labels or {}).items()
                   if k in ("train", "test")}
    net = feature_network(data, progress=False)
    held_out = data.train[-1000:]  # real digits the classifier saw no more than the floor's
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None]) / 16
    blurred = torch.nn.functional.conv2d(data.test, kernel[None, None], padding=1)
    noise = torch.rand(data.test.shape, generator=torch.Generator().manual_seed(0))
    scores = {name: sample_quality(x, data, net) for name, x in
              (("real", held_out), ("blurred", blurred), ("noise", noise))}
    fd = {name: r["fd"] for name, r in scores.items()}
    assert fd["real"] < 2 * scores["real"]["floor"]["fd"] + 1
    assert fd["real"] < fd["blurred"] < fd["noise"], fd
    recall = {name: r["recall"] for name, r in scores.items()}
    assert recall["real"] > recall["blurred"] > recall["noise"], recall
    assert scores["noise"]["precision"] < scores["real"]["precision"]


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
