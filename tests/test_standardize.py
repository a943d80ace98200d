"""Standardisation inside the model: the networks see (x - m)/s, every output stays in the data's
units, and log p(x) carries the Jacobian, so it is a density of x itself."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.data import load_dataset
from vaekit.evaluate import exact_log_likelihood, log_likelihood
from vaekit.train.prepare import resolve_standardize


def _scaled_table(n: int = 600, seed: int = 0) -> np.ndarray:
    """Six correlated columns on scales from 1e-3 to 1e4, offset far from 0 (like raw tables)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    w = rng.normal(size=(2, 6))
    x = z @ w + 0.3 * rng.normal(size=(n, 6))
    return (x * np.array([1e-3, 0.1, 1.0, 10.0, 1e3, 1e4]) + 500.0).astype(np.float32)


@pytest.mark.parametrize(("likelihood", "name", "expected"), [
    ("gaussian", "table.npy", "on"), ("gaussian", "digits", "off"),
    ("bernoulli", "table.npy", "off"), ("continuous-bernoulli", "table.npy", "off")])
def test_auto_standardises_real_valued_non_image_data_only(
        likelihood: str, name: str, expected: str, tmp_path) -> None:
    np.save(tmp_path / "table.npy", np.random.default_rng(0).random((50, 4)).astype("f4"))
    data = load_dataset(name if name == "digits" else str(tmp_path / name))
    assert resolve_standardize(Config(likelihood=likelihood), data) == expected


def test_raw_table_scales_train_to_a_sane_model_recorded_in_the_run(tmp_path) -> None:
    x = _scaled_table()
    model = vaekit.fit(x, likelihood="gaussian", latent_dim=2, hidden=(32,), epochs=40,
                       out=tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["standardize"] == "on"
    out = model.elbo(x)
    # on the raw scales the KL ran to thousands of nats; standardised it is a few nats a latent
    assert float(out["kl"].mean()) < 20
    samples = model.sample(2000, generator=torch.Generator().manual_seed(0), mean=False)
    sd = x.std(0)  # moments compared in units of each column's spread
    assert np.all(np.abs(samples.mean(0).numpy() - x.mean(0)) < 0.2 * sd)
    assert np.all(np.abs(samples.std(0).numpy() / sd - 1) < 0.5)
    recon = model.reconstruct(x[:200]).numpy()
    assert np.abs(recon - x[:200]).mean(0)[-1] < x[:, -1].std()  # in the data's units


def test_log_p_of_rescaled_data_moves_by_exactly_the_log_jacobian(tmp_path) -> None:
    """The same network on a*x + b, with the constants refitted, gives
    log p(a x + b) = log p(x) - D log a: the density of the rescaled data."""
    x = torch.from_numpy(_scaled_table(300))
    torch.manual_seed(0)
    model = vaekit.build_model(Config(likelihood="gaussian", latent_dim=2, hidden=(16,),
                                      standardize="on"), (6,))
    model.standardize.fit(x)  # type: ignore[union-attr]
    before = log_likelihood(model, x[:50], k=64, seed=3).per_example
    a, b = 7.0, -3.0
    model.standardize.fit(a * x + b)  # type: ignore[union-attr]
    after = log_likelihood(model, a * x[:50] + b, k=64, seed=3).per_example
    # float32 rounding of values ~1e4 leaves ~0.03 nats; the Jacobian is 6 log 7 = 11.7
    torch.testing.assert_close(after, before - 6 * math.log(a), rtol=0, atol=0.1)


def test_a_standardised_linear_gaussian_vae_has_the_exact_marginal_of_the_raw_data() -> None:
    """With a linear decoder p(x) is known in closed form: the importance-weighted estimate,
    computed through the model's standardisation, must agree with it in the data's units."""
    x = torch.from_numpy(_scaled_table(400))
    torch.manual_seed(0)
    model = vaekit.build_model(Config(net="linear", likelihood="gaussian", latent_dim=2,
                                      standardize="on"), (6,))
    model.standardize.fit(x)  # type: ignore[union-attr]
    exact = exact_log_likelihood(model, x[:40])
    estimate = log_likelihood(model, x[:40], k=20_000, seed=0).per_example
    torch.testing.assert_close(estimate, exact, rtol=0, atol=0.05)
    z = torch.zeros(1, 2)
    decoded = model.decode(z)  # p(x|z), a distribution over x itself
    torch.testing.assert_close(decoded.mean, model.decode_mean(z))
    torch.testing.assert_close(decoded.log_prob(x[:5]),  # the training path's log p(x|z)
                               model.terms(x[:5], noise=torch.zeros(1, 5, 2), cache=(
                                   torch.distributions.Independent(torch.distributions.Normal(
                                       torch.zeros(5, 2), 1.0), 1), None)).log_px_z[0])


def test_standardize_on_is_refused_for_a_bounded_likelihood() -> None:
    with pytest.raises(vaekit.VaekitError, match="--standardize on is for likelihoods on the real"):
        Config(likelihood="bernoulli", standardize="on").validate()
