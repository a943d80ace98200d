"""Annealed importance sampling and its bidirectional Monte Carlo bounds, on known answers: a
linear Gaussian model's exact marginal, importance sampling from the prior at T = 1, the HMC
kernel's invariant distribution, and the errors of bad settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from vaekit import Config, build_model
from vaekit.errors import ConfigError, NoLikelihoodError
from vaekit.evaluate import ais_log_likelihood, bdmc, exact_log_likelihood
from vaekit.evaluate.ais import PathPoint, hmc_transition, sigmoid_schedule
from vaekit.models import LatentVariableModel


def _linear_gaussian() -> LatentVariableModel:
    torch.manual_seed(0)
    model = build_model(Config(net="linear", likelihood="gaussian", latent_dim=2).validate(),
                        (5,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model.eval()


def _small(name: str) -> LatentVariableModel:
    configs = {
        "vae": (Config(latent_dim=3, hidden=(16,)), (12,)),
        "vae-vamp-prior": (Config(latent_dim=3, hidden=(16,), prior="vamp", pseudo_inputs=4),
                           (12,)),
        "cvae": (Config(latent_dim=3, hidden=(16,), condition="label",
                        condition_classes=("a", "b")), (12,)),
        "hvae": (Config(model="hvae", model_options={"hvae": {
            "latents": (3, 2), "widths": (16, 8), "depth": 1}}), (12,)),
        "hvae-conv": (Config(model="hvae-conv", model_options={"hvae-conv": {
            "widths": (8, 8), "groups": (1, 1), "latent_channels": 1}}), (1, 4, 4)),
    }
    torch.manual_seed(0)
    config, shape = configs[name]
    return build_model(config.validate(), shape).eval()


def _binary(model: LatentVariableModel, n: int) -> Tensor:
    return (torch.rand(n, *model.event_shape, generator=torch.Generator().manual_seed(1))
            < 0.5).float()


def test_the_schedule_runs_from_0_to_1_on_a_sigmoid() -> None:
    betas = sigmoid_schedule(100)
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 101
    assert (betas.diff() > 0).all() and betas.diff()[50] > 10 * betas.diff()[0]
    assert sigmoid_schedule(1).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("start", ["prior", "posterior"])
def test_ais_agrees_with_the_exact_marginal_of_a_linear_gaussian_model(start: str) -> None:
    model = _linear_gaussian()
    x = torch.randn(30, 5, generator=torch.Generator().manual_seed(2))
    exact = exact_log_likelihood(model, x)
    ais = ais_log_likelihood(model, x, steps=300, chains=8, leapfrog=5, start=start)
    error = ais.per_example - exact  # (N,), paired: the examples' spread cancels
    assert abs(float(error.mean())) < 3 * float(error.std()) / math.sqrt(len(x)) + 0.01
    assert 0.5 < ais.acceptance < 1.0


def test_bdmc_brackets_the_exact_marginal_and_closes_as_t_grows() -> None:
    model = _linear_gaussian()
    gaps = []
    for steps in (3, 100):
        b = bdmc(model, n=40, steps=steps, chains=4, leapfrog=5)
        exact = float(exact_log_likelihood(model, b.x).mean())
        slack = 0.02  # the bounds are stochastic: each holds in expectation
        assert float(b.lower.mean()) <= exact + slack and exact <= float(b.upper.mean()) + slack
        gaps.append(b.gap)
    assert gaps[1] < 0.25 * gaps[0] and gaps[1] < 0.15


@pytest.mark.parametrize("name", ["vae", "vae-vamp-prior", "cvae", "hvae", "hvae-conv"])
def test_one_step_from_the_prior_is_importance_sampling_from_the_prior(name: str) -> None:
    """T = 1: log w = log p(x|z_0), z_0 ~ p(z), drawn with the same generator: exactly the
    importance-sampling estimate logmeanexp_m log p(x|z_m) with the prior as proposal."""
    model = _small(name)
    x, chains = _binary(model, 6), 7
    labels = torch.arange(6) % model.condition_dim if model.condition_dim else None
    ais = ais_log_likelihood(model, x, steps=1, chains=chains, seed=5, condition=labels)
    with torch.no_grad():
        z = model.sample_latents(chains * 6, torch.Generator().manual_seed(5)).view(chains, 6, -1)
        _, log_px_z = model.joint_terms(x, z, model.as_condition(labels, 6))
        by_hand = torch.logsumexp(log_px_z.double(), 0) - math.log(chains)
    torch.testing.assert_close(ais.per_example, by_hand, rtol=0, atol=1e-9)


class _CorrelatedGaussian:
    """log f(z) = log N(z; 0, Sigma), Sigma = [[1, rho], [rho, 1]], as an annealing path."""

    def __init__(self, rho: float) -> None:
        self.precision = torch.linalg.inv(torch.tensor([[1.0, rho], [rho, 1.0]],
                                                       dtype=torch.float64))

    def evaluate(self, z: Tensor, beta: float, any_beta: bool = True) -> PathPoint:
        pz = z @ self.precision  # (M, B, 2)
        zero = torch.zeros(z.shape[:-1], dtype=z.dtype)
        return PathPoint(z, -0.5 * (pz * z).sum(-1), zero, beta, grad=-pz)


def test_the_hmc_kernel_leaves_a_correlated_gaussian_invariant() -> None:
    """Chains started at exact draws of the target stay distributed as the target after many
    transitions with a step size large enough that the leapfrog alone would not (fixed seed)."""
    rho, n = 0.95, 20000
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(1, n, 2, generator=g, dtype=torch.float64)
         @ torch.linalg.cholesky(cov).T)
    target = _CorrelatedGaussian(rho)
    step = torch.full((1, n, 1), 0.4, dtype=torch.float64)
    acceptance = []
    point = target.evaluate(z, 1.0)
    for _ in range(30):
        point, a = hmc_transition(target, point, 1.0, step, 5, g)  # type: ignore[arg-type]
        acceptance.append(float(a.mean()))
    flat = point.z[0]
    se = 1 / math.sqrt(n)  # of a mean; a covariance's is about sqrt(2) times it
    assert flat.mean(0).abs().max() < 5 * se * 3  # the chains' draws are correlated across steps
    torch.testing.assert_close(torch.cov(flat.T), cov, atol=0.04, rtol=0)
    assert 0.3 < sum(acceptance) / len(acceptance) < 0.95  # a test that rejects some moves


def test_ais_is_seeded_and_deterministic() -> None:
    model = _small("hvae")
    x = _binary(model, 5)
    a = ais_log_likelihood(model, x, steps=5, chains=3, seed=1)
    b = ais_log_likelihood(model, x, steps=5, chains=3, seed=1)
    c = ais_log_likelihood(model, x, steps=5, chains=3, seed=2)
    assert torch.equal(a.per_example, b.per_example)
    assert not torch.equal(a.per_example, c.per_example)
    assert all(p.requires_grad for p in model.parameters())  # restored after the run


def test_chunks_of_rows_and_of_chains_give_an_estimate_of_the_same_size() -> None:
    model = _linear_gaussian()
    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(3))
    exact = exact_log_likelihood(model, x)
    for chunk_rows in (1024, 4):  # all at once; one example and half its chains per chunk
        ais = ais_log_likelihood(model, x, steps=50, chains=8, leapfrog=3, chunk_rows=chunk_rows)
        error = ais.per_example - exact
        assert error.shape == (12,)
        assert abs(float(error.mean())) < 3 * float(error.std()) / math.sqrt(12) + 0.01


@pytest.mark.parametrize(("options", "message"), [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"chains": -1}, "chains must be a positive integer"),
    ({"leapfrog": 0}, "leapfrog steps must be a positive integer"),
    ({"start": "data"}, "unknown AIS start"),
])
def test_bad_settings_are_refused_in_one_line(options: dict, message: str) -> None:
    model = _small("vae")
    with pytest.raises(ConfigError, match=message):
        ais_log_likelihood(model, _binary(model, 2), **options)


def test_a_model_without_a_joint_density_is_refused() -> None:
    model = build_model(Config(model="ae", latent_dim=3, hidden=(16,)).validate(), (12,))
    with pytest.raises(NoLikelihoodError, match="AIS needs a density over continuous latents"):
        ais_log_likelihood(model, _binary(model, 2), steps=2)
    with pytest.raises(NoLikelihoodError):
        bdmc(model, n=2, steps=2)


def test_a_posterior_start_without_a_density_is_refused() -> None:
    torch.manual_seed(0)
    model = build_model(Config(latent_dim=3, hidden=(16,), posterior="iaf",
                               flow_steps=2).validate(), (12,))
    try:
        ais_log_likelihood(model, _binary(model, 2), steps=2, start="posterior")
    except ConfigError as e:
        assert "start from the prior" in str(e)
