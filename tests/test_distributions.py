"""Distributions: the reparameterization, the KL and the likelihoods."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from vaekit.distributions import (
    BernoulliLikelihood,
    DiagonalNormal,
    GaussianLikelihood,
    StandardNormal,
    analytic_kl,
    bits_per_dim,
    diagonal_normal,
    rsample_and_log_prob,
)


@pytest.mark.parametrize("kind", ["vaekit", "torch"])
def test_reparameterized_sample_has_the_posteriors_moments_and_passes_gradients(
        kind: str) -> None:
    """z = mu + sigma * noise for vaekit's DiagonalNormal and for torch's Independent(Normal)."""
    loc = torch.tensor([1.5, -2.0], requires_grad=True)
    log_var = torch.tensor([0.0, math.log(0.25)], requires_grad=True)
    q = diagonal_normal(loc, log_var) if kind == "vaekit" else \
        Independent(Normal(loc, (0.5 * log_var).exp()), 1)
    z, log_q = rsample_and_log_prob(q, torch.randn(200_000, 2))
    assert torch.allclose(z.mean(0), torch.tensor([1.5, -2.0]), atol=0.01)
    assert torch.allclose(z.var(0), torch.tensor([1.0, 0.25]), atol=0.01)
    assert torch.allclose(log_q, q.log_prob(z))
    z.sum().backward()
    assert loc.grad is not None and log_var.grad is not None
    assert torch.all(loc.grad != 0) and torch.all(log_var.grad != 0)


def _as_torchs(d: DiagonalNormal) -> Independent:
    """The same Gaussian as torch's own Independent(Normal): its KL is torch's formula."""
    return Independent(Normal(d.loc_.expand(d.log_var.shape), (0.5 * d.log_var).exp()), 1)


@pytest.mark.parametrize("prior", ["standard", "diagonal"])
def test_vaekits_closed_form_kl_matches_torchs_formula_and_monte_carlo(prior: str) -> None:
    """vaekit registers KL(DiagonalNormal || StandardNormal) and KL(DiagonalNormal ||
    DiagonalNormal) with torch (Kingma & Welling 2014, appendix B). On vaekit's own classes
    `analytic_kl` must give the value, and the gradients, of torch's KL of the same Gaussians,
    and agree with the Monte Carlo estimate mean[log q(z) - log p(z)], z ~ q."""
    loc = torch.tensor([[0.3, -1.0, 2.0], [1.2, 0.4, -0.6]], requires_grad=True)
    log_var = torch.tensor([[-1.0, 0.5, 0.0], [0.8, -2.0, 1.0]], requires_grad=True)
    q = diagonal_normal(loc, log_var)  # batch (2,), event (3,)
    p: DiagonalNormal = StandardNormal(torch.zeros(3)) if prior == "standard" else \
        diagonal_normal(torch.tensor([0.5, 0.0, -1.0]), torch.tensor([0.4, -0.7, 1.2]))
    kl = analytic_kl(q, p)
    assert kl is not None and kl.shape == (2,)
    reference = kl_divergence(_as_torchs(q), _as_torchs(p))
    assert torch.allclose(kl, reference, atol=1e-6)
    assert float(kl.detach().min()) > 0.5  # far from 0: a KL that lost a term cannot pass
    grads = torch.autograd.grad(kl.sum(), [loc, log_var])
    expected = torch.autograd.grad(reference.sum(), [loc, log_var])
    for a, b in zip(grads, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    with torch.no_grad():
        z = q.sample((400_000,))
        terms = q.log_prob(z) - p.log_prob(z)  # (n, 2)
    stderr = terms.std(0) / terms.shape[0] ** 0.5
    assert ((kl.detach() - terms.mean(0)).abs() < 4 * stderr).all()


def test_bernoulli_log_prob_is_the_summed_cross_entropy() -> None:
    lik = BernoulliLikelihood((1, 2, 2))
    logits = torch.randn(3, 1, 2, 2)
    x = (torch.rand(3, 1, 2, 2) < 0.5).float()
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(lik(logits).log_prob(x), expected)


@pytest.mark.parametrize("pixels", [784, 64, 17, 5])
def test_bernoulli_log_prob_without_gradient_takes_logs_of_products_to_the_same_value(
        pixels: int) -> None:
    """Compiled evaluation sums log(1 + e^-|l|) as logs of products over groups of pixels: the
    same value as the per-pixel cross-entropy, up to float32 rounding, for extreme logits and
    soft targets too."""
    from vaekit.distributions.likelihoods import _bernoulli_log_prob_grouped

    torch.manual_seed(0)
    logits = torch.randn(3, 8, pixels) * 6
    logits[0, 0] = 100.0
    logits[0, 1] = -100.0
    logits[0, 2] = 0.0
    x = torch.bernoulli(torch.full((8, pixels), 0.3))
    x[3] = torch.rand(pixels)  # grey levels: the cross-entropy
    likelihood = BernoulliLikelihood((pixels,))
    exact = -torch.nn.functional.binary_cross_entropy_with_logits(
        logits.double(), x.double().expand(3, 8, pixels), reduction="none").sum(-1)
    grouped32 = _bernoulli_log_prob_grouped(logits, x)
    grouped64 = _bernoulli_log_prob_grouped(logits.double(), x.double())
    per_pixel = likelihood(logits).log_prob(x)
    assert grouped32.dtype == torch.float32
    assert torch.allclose(grouped64, exact, rtol=1e-12, atol=1e-9)
    grouped_error = (grouped32.double() - exact).abs().max()
    per_pixel_error = (per_pixel.double() - exact).abs().max()
    assert grouped_error < max(2 * per_pixel_error, 1e-4)


@pytest.mark.parametrize("event_shape", [(1, 4, 3), (7,)])
@pytest.mark.parametrize("kind", ["bernoulli", "fixed", "shared", "diagonal"])
def test_likelihood_log_prob_from_parameters_equals_the_distributions(
        kind: str, event_shape: tuple[int, ...]) -> None:
    """The training step's `likelihood.log_prob(params, x)` skips building p(x|z) but is its
    log-density: x (B, *event) broadcasts over leading sample dimensions of the parameters."""
    torch.manual_seed(0)
    lik = BernoulliLikelihood(event_shape) if kind == "bernoulli" else \
        GaussianLikelihood(event_shape, variance=kind)
    if kind in ("shared", "diagonal"):
        with torch.no_grad():
            lik.log_var.copy_(torch.randn(lik.log_var.shape))
    for params in (torch.randn(5, *event_shape), torch.randn(3, 5, *event_shape)):
        x = torch.rand(5, *event_shape)
        if kind == "bernoulli":
            x = x.round()
        expected = lik(params).log_prob(x)
        assert expected.shape == params.shape[:-len(event_shape)]
        assert torch.allclose(lik.log_prob(params, x), expected, rtol=1e-5, atol=1e-5)


def test_diagonal_normal_builds_torchs_normal_on_demand() -> None:
    loc, log_var = torch.randn(4, 3), torch.randn(4, 3)
    q = diagonal_normal(loc, log_var)
    reference = Independent(Normal(loc, (0.5 * log_var).exp()), 1)
    assert (q.batch_shape, q.event_shape) == (reference.batch_shape, reference.event_shape)
    assert torch.allclose(q.base_dist.scale, reference.base_dist.scale)
    z = reference.sample((2,))
    assert torch.allclose(q.log_prob(z), reference.log_prob(z), atol=1e-5)
    assert torch.allclose(q.entropy(), reference.entropy())
    wide = q.expand((5, 4))
    assert wide.batch_shape == (5, 4)
    assert torch.allclose(wide.log_prob(z[:1].expand(5, 4, 3)), q.log_prob(z[0]).expand(5, 4))


def test_diagonal_normal_values_cached_without_gradient_are_recomputed_with_it() -> None:
    """sigma and the log-normaliser are computed once per q; one first computed under no_grad
    must not cut the gradient of a later differentiable use."""
    log_var = torch.randn(4, 3, requires_grad=True)
    q = diagonal_normal(torch.zeros(4, 3), log_var)
    noise = torch.randn(2, 4, 3)
    with torch.no_grad():
        q.log_prob_from_noise(noise)
        q.sample_from_noise(noise)
    (q.log_prob_from_noise(noise).sum() + q.sample_from_noise(noise).sum()).backward()
    expected = torch.full((4, 3), -0.5 * 2) + (0.5 * (0.5 * log_var).exp() * noise).sum(0)
    assert log_var.grad is not None
    assert torch.allclose(log_var.grad, expected.detach())


@pytest.mark.parametrize("variance", ["fixed", "shared", "diagonal"])
def test_gaussian_likelihood_is_normalised_in_one_dimension(variance: str) -> None:
    lik = GaussianLikelihood((1,), variance=variance)
    with torch.no_grad():
        if variance != "fixed":
            lik.log_var.fill_(math.log(0.3))
    grid = torch.linspace(-12, 12, 20001)[:, None]
    density = lik(torch.full((20001, 1), 0.7)).log_prob(grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-4)
    n_params = sum(p.numel() for p in lik.parameters())
    assert n_params == {"fixed": 0, "shared": 1, "diagonal": 1}[variance]


def test_gaussian_mixture_log_prob_matches_torchs_mixture() -> None:
    """The matmul-expanded mixture density equals torch's MixtureSameFamily, narrow and wide
    components alike, for samples of any batch shape."""
    from torch.distributions import Categorical, MixtureSameFamily

    from vaekit.distributions import DiagonalGaussianMixture

    torch.manual_seed(0)
    loc, log_var = torch.randn(30, 5).double(), (4 * torch.rand(30, 5) - 6).double()
    logits = torch.randn(30).double()
    ours = DiagonalGaussianMixture(logits, diagonal_normal(loc, log_var))
    reference = MixtureSameFamily(Categorical(logits=logits), diagonal_normal(loc, log_var))
    z = torch.cat([reference.sample((3, 4)), 3 * torch.randn(3, 4, 5).double()])
    torch.testing.assert_close(ours.log_prob(z), reference.log_prob(z))


def test_bits_per_dim() -> None:
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    # A density of 1 on [0, 1]^D is 8 bits/dim once 8-bit bins are accounted for.
    assert bits_per_dim(0.0, 10, bin_width=1 / 256) == pytest.approx(8.0)


def test_a_likelihood_that_only_builds_its_distribution_gets_log_prob_from_it() -> None:
    """A user's likelihood needs only `forward`; `log_prob(params, x)` falls back to it."""
    from torch.distributions import Laplace

    from vaekit.distributions import Likelihood

    class LaplaceLikelihood(Likelihood):
        def forward(self, params: torch.Tensor) -> Independent:
            return Independent(Laplace(params, torch.ones_like(params)), len(self.event_shape))

    lik = LaplaceLikelihood((2, 3))
    params, x = torch.randn(4, 5, 2, 3), torch.randn(5, 2, 3)
    expected = Laplace(params, 1.0).log_prob(x).sum((-2, -1))
    assert torch.allclose(lik.log_prob(params, x), expected)
