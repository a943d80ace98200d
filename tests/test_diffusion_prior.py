"""The diffusion prior's likelihoods, against known answers: the probability-flow ODE with the
exact score of a Gaussian gives the Gaussian's closed-form density (exactly, and by Hutchinson's
estimator within its standard error); a prior fitted to Gaussian codes recovers their
log-density; the ancestral chain's M-trajectory weight is unbiased on a linear chain, and
tighter as M grows; the seed of its trajectories is the evaluation's."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import vaekit
from tests.conftest import run_cli
from vaekit.errors import ConfigError
from vaekit.priors import probability_flow
from vaekit.priors.diffusion import T_MIN, DiffusionPrior

pytest.importorskip("torchdiffeq")


class ExactGaussianScore(nn.Module):
    """eps(u, t) = sigma_t Sigma_t^{-1} (u - alpha_t m), Sigma_t = alpha_t^2 S + sigma_t^2 I: the
    exact E[eps | u_t] (= -sigma_t times the score) when the standardised codes are N(m, S), as
    the denoiser's part of it (the prior adds sigma_t u)."""

    def __init__(self, prior: DiffusionPrior, mean: Tensor, cov: Tensor) -> None:
        super().__init__()
        self.prior, self.mean, self.cov = prior, mean, cov

    def time_shifts(self, t: Tensor) -> Tensor:
        return t

    def forward(self, u: Tensor, t: Tensor, shifts: Tensor | None = None) -> Tensor:
        alpha, sigma = self.prior.alpha_sigma(t)
        lam, q = torch.linalg.eigh(self.cov)  # Sigma_t^{-1} = Q diag(1 / (a^2 lam + s^2)) Q^T
        precision = q @ torch.diag(1 / (alpha ** 2 * lam + sigma ** 2)) @ q.T
        exact = sigma * (u - alpha * self.mean) @ precision  # (*, L)
        return exact - sigma * u  # the prior adds sigma_t u, N(0, I)'s exact eps


def _gaussian_prior(dim: int = 3, seed: int = 0) -> tuple[DiffusionPrior, Tensor, Tensor]:
    """A prior whose denoiser is the exact score of N(m, S) on u, with loc and scale != 0, 1;
    and the ODE model's exact density: the ODE is linear, u_{T_MIN} = alpha_0 m + A (u_1 -
    alpha_1 m) with A = Q diag(sd_{T_MIN} / sd_1) Q^T in S's eigenbasis (each direction's
    standardised value is carried unchanged), so u_{T_MIN} ~ N(alpha_0 m - alpha_1 A m, A A)."""
    g = torch.Generator().manual_seed(seed)
    root = torch.randn(dim, dim, generator=g)
    cov = root @ root.T / dim + 0.2 * torch.eye(dim)
    mean = torch.randn(dim, generator=g)
    prior = DiffusionPrior(dim, width=8, sampler="ode", tolerance=1e-6)
    prior.loc.copy_(torch.randn(dim, generator=g))
    prior.log_scale.copy_(0.3 * torch.randn(dim, generator=g))
    prior.denoiser = ExactGaussianScore(prior, mean, cov)
    lam, q = torch.linalg.eigh(cov.double())
    (a0, s0), (a1, s1) = (prior.alpha_sigma(torch.tensor(t, dtype=torch.float64))
                          for t in (T_MIN, 1.0))
    a = q @ torch.diag(((a0 ** 2 * lam + s0 ** 2) / (a1 ** 2 * lam + s1 ** 2)).sqrt()) @ q.T
    m = mean.double()
    u_dist = torch.distributions.MultivariateNormal(a0 * m - a1 * a @ m, a @ a)
    return prior, u_dist.mean, u_dist.covariance_matrix


def _closed_form(prior: DiffusionPrior, z: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    u = (z.double() - prior.loc.double()) * torch.exp(-prior.log_scale.double())
    log_pu = torch.distributions.MultivariateNormal(mean, cov).log_prob(u)
    return log_pu - prior.log_scale.double().sum()


def test_the_ode_density_with_a_gaussians_exact_score_is_its_closed_form() -> None:
    prior, mean, cov = _gaussian_prior()
    z = prior.loc + torch.exp(prior.log_scale) * torch.randn(64, 3, generator=torch.Generator()
                                                             .manual_seed(1)) * 1.5
    exact = _closed_form(prior, z, mean, cov)
    log_p, stderr = prior(None).log_prob_and_stderr(z)
    assert float(stderr.abs().max()) == 0.0  # the exact divergence
    torch.testing.assert_close(log_p.double(), exact, atol=2e-3, rtol=0)


def test_hutchinsons_divergence_is_within_its_standard_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probability_flow, "EXACT_DIVERGENCE_MAX_DIM", 2)  # 3 > 2: Hutchinson
    prior, mean, cov = _gaussian_prior()
    prior.configure(tolerance=1e-5)
    z = prior.loc + torch.exp(prior.log_scale) * torch.randn(400, 3, generator=torch.Generator()
                                                             .manual_seed(2))
    exact = _closed_form(prior, z, mean, cov)
    log_p, stderr = prior(None).log_prob_and_stderr(z)
    assert (stderr > 0).all()
    error = (log_p.double() - exact) / stderr.double()
    assert float(error.mean().abs()) < 4 / math.sqrt(len(z))  # unbiased
    assert 0.5 < float(error.std()) < 1.5  # the standard error is the spread it claims


def test_the_ode_samples_the_density_it_evaluates() -> None:
    prior, mean, cov = _gaussian_prior()
    prior.configure(tolerance=1e-5)
    torch.manual_seed(0)
    u = (prior(None).sample((4000,)) - prior.loc) * torch.exp(-prior.log_scale)
    assert float((u.double().mean(0) - mean).abs().max()) < 0.08
    assert float((torch.cov(u.double().T) - cov).abs().max()) < 0.1


@pytest.mark.parametrize("direction", ["sample", "log_prob"])
def test_the_ode_solver_never_steps_outside_the_schedule(
        direction: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every time at which the drift is evaluated lies in [T_MIN, 1]: below T_MIN sigma_t is
    NaN, and a solver that steps past the end and interpolates back fails there (it did on
    MNIST codes, with a step-size underflow)."""
    prior, _, _ = _gaussian_prior()
    prior.configure(tolerance=1e-5)
    times: list[float] = []
    real = prior.eps

    def eps(u: Tensor, t: Tensor, *rest: object) -> Tensor:
        times.append(float(t))
        return real(u, t, *rest)

    monkeypatch.setattr(prior, "eps", eps)
    torch.manual_seed(0)
    p = prior(None)
    p.sample((200,)) if direction == "sample" else p.log_prob(prior.loc + torch.randn(20, 3))
    assert times and min(times) >= T_MIN * (1 - 1e-6) and max(times) <= 1 + 1e-6


def test_ddim_with_the_exact_score_samples_the_gaussian() -> None:
    prior, mean, cov = _gaussian_prior()
    prior.sampling_steps = 50
    prior.configure(sampler="ddim")
    prior.u_max.fill_(100.0)  # no clipping
    torch.manual_seed(0)
    u = (prior(None).sample((4000,)) - prior.loc) * torch.exp(-prior.log_scale)
    assert float((u.double().mean(0) - mean).abs().max()) < 0.1
    assert float((torch.cov(u.double().T) - cov).abs().max() / cov.abs().max()) < 0.1


def test_a_prior_fitted_to_gaussian_codes_recovers_their_log_density() -> None:
    """A correlated 2-D Gaussian (scales 0.5 and 3): after a short fit, the ODE's mean log p(z)
    on fresh codes is their true mean log-density (minus the entropy) within 0.05 nats (it
    lands 0.017 below). The fit is in continuous time: the ancestral chain uses the same net."""
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0], [0.8, 0.6]]) * torch.tensor([0.5, 3.0])
    truth = torch.distributions.MultivariateNormal(torch.tensor([2.0, -1.0]),
                                                   scale_tril=torch.linalg.cholesky(mix.T @ mix))
    codes = truth.sample((4000,))
    torch.manual_seed(0)
    prior = DiffusionPrior(2, width=64, depth=2, sampler="ode", tolerance=1e-4)
    prior.init_from_codes(codes)
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 1500)  # 0.2 nats off without
    for _ in range(1500):
        loss = prior.training_loss(codes[torch.randint(len(codes), (256,), generator=g)], g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
    fresh = truth.sample((1000,))
    fitted = float(prior(None).log_prob(fresh).double().mean())
    exact = float(truth.log_prob(fresh).double().mean())
    assert abs(fitted - exact) < 0.05, (fitted, exact)


# ------------------------------------------------------- the ancestral chain's M trajectories

def _linear_chain(steps: int = 8) -> tuple[DiffusionPrior, float]:
    """A chain whose denoiser is exact for u_0 ~ N(0, 1), eps = sigma_t u_t: the reverse steps
    are linear-Gaussian, so its p(u_0) = N(0, v_0) with v_0 by the recursion below."""
    prior = DiffusionPrior(1, steps=steps, width=8)
    prior.denoiser = ExactGaussianScore(prior, torch.zeros(1), torch.eye(1))
    betas, abar = prior.betas.double(), prior.alpha_bars().double()
    var = torch.tensor(1.0, dtype=torch.float64)
    for i in reversed(range(steps)):
        # p(u_{i-1} | u_i) = N(sqrt(1 - beta_i) u_i, sigma_i^2): its mean is
        # (u_i - beta_i / sqrt(1 - abar_i) eps) / sqrt(1 - beta_i), eps = sqrt(1 - abar_i) u_i
        sigma2 = betas[0] if i == 0 else (1 - abar[i - 1]) / (1 - abar[i]) * betas[i]
        var = (1 - betas[i]) * var + sigma2
    return prior, float(var)


@pytest.mark.parametrize("trajectories", [1, 4])
def test_the_m_trajectory_weight_is_unbiased_on_a_linear_chain(trajectories: int) -> None:
    prior, var = _linear_chain()
    prior.configure(trajectories=trajectories)
    for value in (0.7, -2.0):
        z = torch.tensor([[value]])
        exact = float(torch.distributions.Normal(0.0, math.sqrt(var)).log_prob(
            z.double()).sum())
        samples = prior(None).log_prob(z.expand(50_000, 1)).double()
        log_mean_exp = float(torch.logsumexp(samples, 0) - math.log(len(samples)))
        w = torch.exp(samples - samples.max())
        stderr = float(w.std() / w.mean()) / math.sqrt(len(w))
        assert abs(log_mean_exp - exact) < 4 * stderr + 1e-3, (log_mean_exp, exact, stderr)
        assert float(samples.mean()) < exact  # a bound: E log w <= log E w


def test_more_trajectories_tighten_the_bound() -> None:
    prior, var = _linear_chain()
    z = torch.full((20_000, 1), 1.5)
    means = []
    for m in (1, 4, 16):
        prior.configure(trajectories=m)
        means.append(float(prior(None).log_prob(z).double().mean()))
    exact = float(torch.distributions.Normal(0.0, math.sqrt(var)).log_prob(torch.tensor(1.5)))
    assert means[0] < means[1] < means[2] < exact + 1e-3, (means, exact)


def test_the_trajectories_follow_the_seed() -> None:
    prior, _ = _linear_chain()
    z = torch.randn(50, 1)
    prior.reseed(3)
    first = prior(None).log_prob(z)
    prior.reseed(3)
    assert torch.equal(prior(None).log_prob(z), first)
    prior.reseed(4)
    assert not torch.equal(prior(None).log_prob(z), first)


@pytest.mark.parametrize("setting, message", [
    ({"trajectories": 0}, "--trajectories 0"), ({"tolerance": 0.0}, "--tolerance 0.0"),
    ({"tolerance": -1e-3}, "--tolerance -0.001"), ({"sampler": "euler"}, "choose from"),
    ({"sampler": "ddim"}, "--sampling-steps N")])
def test_bad_settings_are_refused(setting: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DiffusionPrior(2, width=8).configure(**setting)  # type: ignore[arg-type]


def test_a_run_fitted_before_the_ode_refuses_it() -> None:
    with pytest.raises(ConfigError, match="fitted before the ODE"):
        DiffusionPrior(2, width=8, denoiser="mlp", sampler="ode")


# ------------------------------------------------------- runs fitted before the ODE

LEGACY = Path(__file__).parent / "fixtures" / "diffusion-mlp"


def test_a_run_fitted_before_the_ode_loads_samples_and_weighs_as_it_did(tmp_path: Path) -> None:
    """tests/fixtures/diffusion-mlp was fitted by the release before the ODE (expected.json
    says how): it loads with its MLP and cosine steps, gives the same draws and the same
    one-trajectory weights, and refuses --sampler ode in one line."""
    run = tmp_path / "run"
    shutil.copytree(LEGACY, run, ignore=shutil.ignore_patterns("expected.json"))
    expected = json.loads((LEGACY / "expected.json").read_text())
    model = vaekit.load(run)
    assert isinstance(model.prior, DiffusionPrior) and not model.prior.continuous
    torch.manual_seed(0)
    z = torch.randn(5, 2)
    torch.testing.assert_close(model.prior(None).log_prob(z), torch.tensor(
        expected["z_torch_seed0_randn_5x2_log_prob_first_call"]), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(model.sample_latents(3, torch.Generator().manual_seed(0)),
                               torch.tensor(expected["sample_latents_3_seed0"]))
    r = run_cli("evaluate", str(run), "--k", "2", "--n", "5", "--sampler", "ode")
    assert r.returncode == 2 and "fitted before the ODE" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
