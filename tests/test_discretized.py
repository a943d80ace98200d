"""Likelihoods of 8-bit data: probabilities of the 256 levels sum to 1 for every pixel, the
edge bins take the tails exactly, and bits/dim is then a discrete likelihood."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.distributions import LIKELIHOODS
from vaekit.distributions.discretized import (
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    logistic_bin_log_prob,
)

LEVELS = torch.arange(256, dtype=torch.float64) / 255  # every 8-bit level in [0, 1]


def _random_params(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 2).clamp(-6, 6)


@pytest.mark.parametrize(("mu", "log_scale"), [(0.0, -1.0), (-0.99, -6.0), (1.2, -3.0),
                                                (0.3, 2.0), (-5.0, -7.5)])
def test_the_levels_of_a_discretized_logistic_sum_to_one(mu: float, log_scale: float) -> None:
    log_p = logistic_bin_log_prob(2 * LEVELS - 1, torch.tensor(mu, dtype=torch.float64),
                                  torch.tensor(log_scale, dtype=torch.float64))
    assert torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_the_edge_bins_take_the_tails_exactly() -> None:
    """P(0) = F(-1 + h) and P(255) = 1 - F(1 - h), with F the logistic's CDF."""
    mu, log_scale = torch.tensor(0.1, dtype=torch.float64), torch.tensor(-1.5, dtype=torch.float64)
    s, h = log_scale.exp(), 1 / 255
    log_p = logistic_bin_log_prob(2 * LEVELS - 1, mu, log_scale)
    torch.testing.assert_close(log_p[0].exp(), torch.sigmoid((-1 + h - mu) / s))
    torch.testing.assert_close(log_p[-1].exp(), 1 - torch.sigmoid((1 - h - mu) / s))
    interior = torch.sigmoid((2 * LEVELS[100] - 1 + h - mu) / s) - torch.sigmoid(
        (2 * LEVELS[100] - 1 - h - mu) / s)
    torch.testing.assert_close(log_p[100].exp(), interior)


@pytest.mark.parametrize("mixture", [False, True])
def test_every_pixel_sums_to_one_over_its_256_levels(mixture: bool) -> None:
    """64 pixels with random parameters, as a batch; each pixel's 256 probabilities."""
    if mixture:
        dist = DiscretizedLogisticMixture(_random_params((64, 3 * 5, 1, 1), seed=1), (1, 1, 1), 5)
    else:
        dist = DiscretizedLogistic(_random_params((64, 2, 1, 1)), (1, 1, 1))
    log_p = dist.log_prob(LEVELS.reshape(256, 1, 1, 1, 1))  # (256 levels, 64 pixels)
    assert log_p.shape == (256, 64) and torch.isfinite(log_p).all()
    torch.testing.assert_close(log_p.exp().sum(0), torch.ones(64, dtype=torch.float64))


def test_a_coupled_colour_pixel_sums_to_one_over_every_joint_level() -> None:
    """The joint of R, G and B with the PixelCNN++ coupling, summed over all 16^3 outcomes of
    16-level data (the coupling's algebra does not depend on the number of levels; 256^3 would
    take minutes)."""
    levels = torch.arange(16, dtype=torch.float64) / 15
    dist = DiscretizedLogisticMixture(_random_params((3 * 10, 1, 1), seed=4), (3, 1, 1), 3,
                                      levels=16)
    x = torch.cartesian_prod(levels, levels, levels).reshape(-1, 3, 1, 1)
    torch.testing.assert_close(dist.log_prob(x).exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    coupled = DiscretizedLogisticMixture(dist.params.clone(), (3, 1, 1), 3, levels=16)
    coupled.coupling = torch.zeros_like(coupled.coupling)  # the coupling matters:
    assert not torch.allclose(coupled.log_prob(x), dist.log_prob(x))


@pytest.mark.parametrize("name", ["discretized-logistic", "logistic-mixture"])
def test_means_and_samples_are_levels_of_the_distribution(name: str) -> None:
    likelihood = vaekit.build_model(Config(likelihood=name, mixture_components=3, net="conv",
                                           channels=(8,), hidden=(16,), latent_dim=2),
                                    (3, 4, 4)).likelihood
    params = _random_params((2, *likelihood.param_shape()), seed=5).float()
    dist = likelihood(params)
    draws = dist.sample((4000,))  # (4000, 2, 3, 4, 4)
    assert draws.shape == (4000, 2, 3, 4, 4)
    np.testing.assert_array_equal((draws * 255).round() / 255, draws)
    error = (draws.mean(0) - likelihood.mean(params)).abs()
    # exact where nothing is coupled: every channel of the single logistic, the first channel
    # of the mixture (later channels' means take the coupling at the earlier means)
    exact = error if name == "discretized-logistic" else error[:, 0]
    assert float(exact.max()) < 0.03  # 4,000 draws of values with sd < 0.5


@pytest.mark.parametrize("name", ["discretized-logistic", "logistic-mixture"])
def test_8_bit_images_train_and_report_a_discrete_bits_per_dim(name: str, tmp_path) -> None:
    rng = np.random.default_rng(0)
    images = (rng.random((120, 1, 8, 8)) * 255).round().astype(np.float32) / 255
    np.save(tmp_path / "x.npy", images)
    model = vaekit.fit(images, likelihood=name, mixture_components=2, latent_dim=2,
                       hidden=(32,), epochs=2)
    from vaekit.evaluate import evaluate

    report = evaluate(model, torch.from_numpy(images[:20]), k=8)
    # a discrete likelihood: -log P >= 0, and uniform levels give at most 8 bits
    assert 0 < report["bits_per_dim"] < 10
    assert report["nll"] > 0


def test_data_off_the_8_bit_grid_are_refused() -> None:
    from vaekit.data import load_dataset
    from vaekit.train.prepare import check_data_fits

    with pytest.raises(vaekit.VaekitError, match="256 levels"):
        check_data_fits(Config(likelihood="discretized-logistic"), load_dataset("digits"),
                        "none")


def test_the_registry_holds_the_8_bit_likelihoods() -> None:
    assert {"discretized-logistic", "logistic-mixture"} <= set(LIKELIHOODS)
    for a, b in itertools.combinations(["discretized-logistic", "logistic-mixture"], 2):
        assert LIKELIHOODS[a] is not LIKELIHOODS[b]
