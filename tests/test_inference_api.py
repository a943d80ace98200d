"""The model's inference calls meet users where they are: NumPy arrays or tensors of any float
dtype in, plain tensors out (no autograd graph unless asked), one clear line for a wrong shape;
and every "log p(x)" says when it is not a likelihood of the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.distributions import ContinuousBernoulliLikelihood
from vaekit.errors import DataError
from vaekit.evaluate import evaluate


@pytest.fixture(scope="module")
def model() -> vaekit.VAE:
    torch.manual_seed(0)
    return vaekit.build_model(Config(likelihood="gaussian", latent_dim=3, hidden=(16,)), (5,))


@pytest.mark.parametrize("make", [
    lambda a: a,  # NumPy float64
    lambda a: a.astype(np.float32),
    lambda a: torch.from_numpy(a),  # float64 tensor
    lambda a: torch.from_numpy(a).half(),
    lambda a: torch.tensor(a, dtype=torch.bfloat16),
], ids=["numpy64", "numpy32", "tensor64", "tensor16", "bfloat16"])
def test_inference_takes_arrays_and_any_float_dtype(model: vaekit.VAE, make) -> None:
    x = np.random.default_rng(0).random((4, 5))
    q = model.encode(make(x))
    assert q.mean.numpy().shape == (4, 3)  # .numpy() works: no graph
    out = model.elbo(make(x))
    assert out["elbo"].numpy().shape == (4,)
    assert model.reconstruct(make(x)).numpy().shape == (4, 5)
    assert model.decode(q.mean.numpy()).mean.numpy().shape == (4, 5)
    assert model.decode_mean(q.mean.numpy()).shape == (4, 5)


def test_inference_builds_no_graph_unless_asked(model: vaekit.VAE) -> None:
    x = torch.rand(4, 5)
    assert not model.encode(x).mean.requires_grad
    assert not model.elbo(x)["elbo"].requires_grad
    assert not model.decode(torch.zeros(2, 3)).mean.requires_grad
    loss = -model.elbo(x, grad=True)["elbo"].sum()
    loss.backward()  # a custom training loop asks for the graph
    assert all(p.grad is not None for p in model.posterior.parameters())
    assert model.encode(x, grad=True).mean.requires_grad


@pytest.mark.parametrize(("call", "bad", "message"), [
    ("encode", np.zeros((4, 6)), r"encode: expected examples of shape \(5,\)"),
    ("elbo", np.zeros(5), r"elbo: expected examples of shape \(5,\)"),
    ("decode", np.zeros((2, 4)), r"decode: expected latents of shape \(\.\.\., 3\)"),
    ("encode", np.array([["a"] * 5]), "encode: expected a numeric array"),
    ("encode", [[0.0] * 5], "encode: expected a tensor or a NumPy array, got list"),
])
def test_wrong_inputs_get_one_clear_line(model: vaekit.VAE, call: str, bad, message: str) -> None:
    with pytest.raises(DataError, match=message):
        getattr(model, call)(bad)


def test_the_continuous_bernoulli_is_a_density_on_the_unit_interval() -> None:
    """Its probabilities integrate to 1 over [0, 1] for every logit, where the plain Bernoulli's
    cross-entropy does not (its 'density' of grey levels integrates to less than 1)."""
    likelihood = ContinuousBernoulliLikelihood((1,))
    logits = torch.tensor([[-6.0], [-1.0], [0.0], [0.3], [4.0]])
    u = torch.linspace(0, 1, 20_001)[:, None, None].expand(-1, 5, 1)  # (grid, 5, 1)
    grid_logits = logits.expand(len(u), 5, 1)
    density = likelihood.log_prob(grid_logits, u).exp()  # (grid, 5)
    torch.testing.assert_close(torch.trapezoid(density, u[:, 0, 0], dim=0), torch.ones(5),
                               atol=1e-3, rtol=0)
    bernoulli = vaekit.build_model(Config(likelihood="bernoulli"), (1,)).likelihood
    mass = torch.trapezoid(bernoulli.log_prob(grid_logits, u).exp(), u[:, 0, 0], dim=0)
    assert (mass < 0.99).all()
    means = likelihood.mean(logits)[:, 0]
    numeric = torch.trapezoid(density * u[:, :, 0], u[:, 0, 0], dim=0)
    torch.testing.assert_close(means, numeric, atol=1e-3, rtol=0)


@pytest.mark.parametrize(("likelihood", "binary", "caveat"), [
    ("bernoulli", False, True), ("bernoulli", True, False),
    ("continuous-bernoulli", False, False), ("gaussian", False, False)])
def test_a_bernoulli_on_grey_levels_is_reported_as_no_likelihood(
        likelihood: str, binary: bool, caveat: bool) -> None:
    torch.manual_seed(0)
    model = vaekit.build_model(Config(likelihood=likelihood, latent_dim=2, hidden=(8,)), (6,))
    x = torch.rand(10, 6)
    report = evaluate(model, x.round() if binary else x, k=4)
    assert ("caveat" in report) == caveat
    if caveat:
        assert "not a likelihood of the grey-level data" in report["caveat"]
