"""Every flow and every prior through the same checks: log-dets against autograd, inverses,
normalised densities, gradients to every parameter; and the objectives built on them."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Independent, Normal

from vaekit import Config, build_model
from vaekit.distributions import StandardNormal, analytic_kl, diagonal_normal
from vaekit.flows import FLOWS, FlowDistribution
from vaekit.models.vae import OneLayerTerms
from vaekit.objectives import elbo, iwae_bound, training_loss

FLOW_NAMES = sorted(FLOWS)
PRIOR_NAMES = ["normal", "mog", "vamp", "flow"]


def _shake(module: torch.nn.Module, scale: float = 0.4) -> None:
    """Move parameters away from the near-identity initialisation."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


@pytest.mark.parametrize("name", FLOW_NAMES)
@pytest.mark.parametrize("context_dim", [0, 5])
def test_log_det_matches_the_autograd_jacobian(name: str, context_dim: int) -> None:
    torch.manual_seed(0)
    flow = FLOWS[name](3, context_dim, index=1)
    _shake(flow)
    context = torch.randn(context_dim) if context_dim else None
    step = flow(context)
    z = torch.randn(3, dtype=torch.float32)
    jac = torch.autograd.functional.jacobian(lambda v: step.forward(v)[0], z)
    _, log_det = step.forward(z)
    assert log_det.item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-4)


@pytest.mark.parametrize("name", FLOW_NAMES)
def test_flows_invert(name: str) -> None:
    torch.manual_seed(1)
    flow = FLOWS[name](4, 6, index=0)
    _shake(flow)
    step = flow(torch.randn(10, 6))
    z = torch.randn(7, 10, 4)  # (k, B, D): k samples for each of B contexts
    y, _ = step.forward(z)
    assert torch.allclose(step.inverse(y), z, atol=1e-4)


def _integral_2d(log_prob, limit: float = 9.0, n: int = 400) -> float:
    grid = torch.linspace(-limit, limit, n)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        density = log_prob(zz).exp().reshape(n, n)
    cell = (grid[1] - grid[0]) ** 2
    return float(density.sum() * cell)


@pytest.mark.parametrize("name", FLOW_NAMES)
def test_flow_densities_integrate_to_one_in_2d(name: str) -> None:
    torch.manual_seed(2)
    flows = [FLOWS[name](2, 0, index=i) for i in range(3)]
    for f in flows:
        _shake(f, 0.3)
    base = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    q = FlowDistribution(base, [f() for f in flows])
    assert _integral_2d(q.log_prob) == pytest.approx(1.0, abs=0.02)
    z, log_q = q.rsample_from_noise(torch.randn(50, 2))
    assert torch.allclose(q.log_prob(z), log_q, atol=1e-4)  # both routes give one density


@pytest.mark.parametrize("name", FLOW_NAMES)
def test_flow_rsample_pushes_base_samples_through_every_step_with_gradients(name: str) -> None:
    """`rsample` (torch's sampling API) draws z_0 from the base and applies the steps: the same
    z_K as the one-pass `rsample_from_noise` on the same z_0, with gradients to the base's
    parameters and to every step's."""
    torch.manual_seed(7)
    flows = [FLOWS[name](2, 3, index=i) for i in range(2)]
    for f in flows:
        _shake(f, 0.3)
    loc = torch.randn(4, 2, requires_grad=True)
    log_var = (0.5 * torch.randn(4, 2)).requires_grad_()
    q = FlowDistribution(diagonal_normal(loc, log_var), [f(torch.randn(4, 3)) for f in flows])
    torch.manual_seed(8)
    z0 = q.base.rsample((5,))
    torch.manual_seed(8)
    z = q.rsample((5,))
    assert z.shape == (5, 4, 2)
    expected, _ = q.rsample_from_noise((z0 - loc) / (0.5 * log_var).exp())
    assert torch.allclose(z, expected, atol=1e-5)
    assert not torch.allclose(z, z0, atol=1e-2)  # the steps did move the samples
    z.square().sum().backward()
    silent = [n for f in flows for n, w in f.named_parameters()
              if w.grad is None or not w.grad.abs().sum()]
    assert not silent
    assert loc.grad is not None and log_var.grad is not None and log_var.grad.abs().sum() > 0


def test_vamp_prior_init_from_data_starts_each_pseudo_input_at_a_training_example() -> None:
    from vaekit.priors import VampPrior

    prior = VampPrior(2, (5,), pseudo_inputs=6)
    x = torch.randn(40, 5)
    prior.init_from_data(x, torch.Generator().manual_seed(0))
    rows = _rows_of(prior.pseudo_inputs.detach(), x)
    assert len(set(rows)) > 1  # a random choice of examples, not one example copied
    again = VampPrior(2, (5,), pseudo_inputs=6)
    again.init_from_data(x, torch.Generator().manual_seed(0))
    assert torch.equal(again.pseudo_inputs, prior.pseudo_inputs)  # the generator decides


def test_training_a_vamp_prior_starts_its_pseudo_inputs_at_training_examples() -> None:
    """Tomczak & Welling (2018) start the pseudo-inputs at training examples; before the first
    step the trainer's VampPrior holds rows of its training data, chosen by the seed, as the
    encoder sees them (standardised, for a Gaussian likelihood on non-image data)."""
    from vaekit.data.datasets import Dataset
    from vaekit.train.loop import Trainer

    x = torch.rand(40, 5) * 100
    data = Dataset("array", x, x[:0], x[:0], images=False)
    config = Config(data="array", latent_dim=2, hidden=(8,), prior="vamp", pseudo_inputs=6,
                    likelihood="gaussian", val_fraction=0.0, epochs=1)
    trainer = Trainer(config, data)
    assert trainer.model.standardize is not None
    pseudo = trainer.model.prior.pseudo_inputs.detach()
    rows = _rows_of(pseudo, trainer.model.to_model_units(x))
    assert len(set(rows)) > 1
    other = Trainer(config.replace(seed=1), data).model.prior.pseudo_inputs.detach()
    assert not torch.equal(other, pseudo)


def _rows_of(points: torch.Tensor, x: torch.Tensor) -> list[int]:
    """The index in x of each point, asserting that every point is one of x's rows."""
    matches = (points[:, None, :] == x[None, :, :]).all(-1)  # (K, N)
    assert matches.any(1).all(), "a pseudo-input is not a training example"
    return [int(i) for i in matches.float().argmax(1)]


@pytest.mark.parametrize("prior", PRIOR_NAMES)
def test_prior_densities_integrate_to_one_in_2d(prior: str) -> None:
    torch.manual_seed(3)
    model = build_model(Config(latent_dim=2, hidden=(8,), prior=prior, components=3,
                               pseudo_inputs=4, flow_steps=2), (5,))
    _shake(model.prior, 0.3)
    p = model.prior(model.posterior)
    assert _integral_2d(p.log_prob) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("posterior", ["gaussian", *FLOW_NAMES])
@pytest.mark.parametrize("prior", PRIOR_NAMES)
def test_gradients_reach_every_parameter(posterior: str, prior: str) -> None:
    torch.manual_seed(4)
    model = build_model(Config(latent_dim=3, hidden=(16,), posterior=posterior, prior=prior,
                               flow_steps=2, components=3, pseudo_inputs=4,
                               likelihood="gaussian"), (6,))
    _shake(model, 0.1)
    loss = training_loss(model.terms(torch.randn(8, 6), k=3))
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not silent


def test_a_mixture_priors_monte_carlo_kl_is_the_closed_form_it_reduces_to() -> None:
    """A mixture has no closed-form KL: the ELBO takes mean_k[log q(z_k|x) - log p(z_k)]. With
    one component at N(0, I) the prior is the standard normal, whose KL is known."""
    torch.manual_seed(9)
    model = build_model(Config(latent_dim=2, hidden=(8,), prior="mog", components=1), (5,))
    with torch.no_grad():
        model.prior.means.zero_()
        model.prior.log_vars.zero_()
        model.posterior.head.bias[:2] += torch.tensor([1.5, -1.0])
        model.posterior.head.bias[2:] -= 1.0
    with torch.no_grad():
        t = model.terms(torch.rand(4, 5), k=100_000)
        kl = elbo(t)["kl"]
        exact = analytic_kl(t.q, StandardNormal(torch.zeros(2)))
        terms = t.log_qz - t.log_pz  # (k, B)
    assert t.kl is None and exact is not None and bool((exact > 1.0).all())
    stderr = terms.std(0) / terms.shape[0] ** 0.5
    assert bool(((kl - exact).abs() < 4 * stderr).all())


@pytest.mark.parametrize("posterior", ["gaussian", *FLOW_NAMES])
def test_iwae_with_one_sample_is_the_elbo(posterior: str) -> None:
    model = build_model(Config(latent_dim=2, hidden=(8,), posterior=posterior, prior="mog"),
                        (5,))
    t = model.terms(torch.rand(6, 5), k=1)
    assert t.kl is None  # no closed form: the ELBO's KL is the Monte Carlo estimate
    assert torch.allclose(iwae_bound(t.log_w), elbo(t)["elbo"], atol=1e-5)
    assert torch.allclose(training_loss(t, "iwae"), training_loss(t, "elbo"), atol=1e-5)


def test_beta_and_free_bits_reshape_only_the_kl_term() -> None:
    """vaekit's own Gaussians (the KL registered in vaekit.distributions.gaussian)."""
    log_px = torch.full((1, 4), -10.0)
    q = diagonal_normal(torch.tensor([[1.0, 0.0]]).expand(4, 2), torch.zeros(4, 2))
    p = StandardNormal(torch.zeros(2))
    t = OneLayerTerms(log_px, torch.zeros(1, 4), torch.zeros(1, 4, 2), q, p)
    assert torch.allclose(t.kl, torch.full((4,), 0.5))
    assert training_loss(t).item() == pytest.approx(10.5)  # KL = 0.5 nats
    assert training_loss(t, beta=2.0).item() == pytest.approx(11.0)
    # free bits of 1 nat per dimension: both dimensions cost 1 (0.5 and 0 are below the floor)
    assert training_loss(t, free_bits=1.0).item() == pytest.approx(12.0)
    # a floor of 0.2: the first dimension (0.5) costs its KL, the second (0) the floor
    assert training_loss(t, free_bits=0.2).item() == pytest.approx(10.7)


def _mixture_prior_terms(noise: torch.Tensor) -> tuple[torch.nn.Module, OneLayerTerms]:
    torch.manual_seed(6)
    model = build_model(Config(latent_dim=2, hidden=(8,), prior="mog", components=3), (5,))
    with torch.no_grad():
        model.prior.means.mul_(3.0)  # components away from the posterior: a KL of a few nats
    return model, model.terms(torch.rand(6, 5), noise=noise)


@pytest.mark.parametrize("above", [True, False])
def test_free_bits_without_a_per_dimension_kl_floor_the_total_at_latent_dim_times_lambda(
        above: bool) -> None:
    """A mixture prior has no KL per dimension: free bits lambda then make the minibatch's mean
    KL estimate cost max(L lambda, KL), with L the latent dimensions. Below the floor the KL
    term is a constant: the prior gets no gradient."""
    noise = torch.randn(50, 6, 2, generator=torch.Generator().manual_seed(0))
    model, t = _mixture_prior_terms(noise)
    assert t.kl is None and t.kl_units() is None
    kl = float(t.kl_estimate.detach().mean())
    reconstruction = float(t.log_px_z.detach().mean())
    assert kl > 1.0
    # lambda between KL/L and KL: the floor L lambda is above the KL, lambda itself is not
    free_bits = kl / 4 if above else kl / 1.5
    cost = kl if above else 2 * free_bits
    loss = training_loss(t, free_bits=free_bits, beta=2.0)
    assert loss.item() == pytest.approx(2.0 * cost - reconstruction, rel=1e-5)
    loss.backward()
    prior_grad = model.prior.means.grad
    assert prior_grad is not None
    assert bool(prior_grad.abs().sum() > 0) == above


@pytest.mark.parametrize("posterior", FLOW_NAMES)
def test_a_flow_posteriors_kl_is_unbiased_with_less_variance(posterior: str) -> None:
    """KL(q_K || N(0, I)) taken as KL(q_0 || p) in closed form plus a Monte Carlo correction
    has the expectation of the plain estimate mean_k[log q_K - log p] and, for a narrow
    posterior away from the origin (as after training), a far smaller spread."""
    torch.manual_seed(0)
    model = build_model(Config(latent_dim=3, hidden=(8,), posterior=posterior), (5,))
    _shake(model.posterior.flows, 0.1)
    with torch.no_grad():  # q_0: means near 1.5, standard deviations near 0.14
        model.posterior.head.bias[:3] += 1.5
        model.posterior.head.bias[3:] -= 4.0
    x = torch.rand(4, 5)
    t = model.terms(x, k=20_000)
    plain = t.log_qz - t.log_pz  # (k, B): the plain Monte Carlo KL's terms
    split = t.kl  # (B,)
    assert split is not None
    stderr = plain.std(0) / plain.shape[0] ** 0.5
    assert ((split - plain.mean(0)).abs() < 4 * stderr + 1e-3).all()
    one_sample = torch.stack([model.terms(x, k=1).kl for _ in range(200)])
    assert one_sample.std(0).mean() < 0.5 * plain.std(0).mean()
