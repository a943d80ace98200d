"""The VAE composed from parts: shapes, the ELBO identity and the importance-weighted bound."""

from __future__ import annotations

import pytest
import torch

from vaekit import Config, build_model
from vaekit.objectives import elbo, iwae_bound


@pytest.mark.parametrize("net,shape", [
    ("mlp", (64,)), ("mlp", (1, 28, 28)), ("linear", (12,)),
    ("conv", (1, 28, 28)), ("conv", (3, 32, 32)), ("conv", (1, 8, 8))])
def test_every_network_maps_data_to_latents_and_back(net: str, shape: tuple[int, ...]) -> None:
    model = build_model(Config(net=net, hidden=(32,), channels=(8, 16), latent_dim=4), shape)
    x = torch.rand(5, *shape)
    q = model.encode(x)
    assert q.batch_shape == (5,) and q.event_shape == (4,)
    px = model.decode(q.rsample())
    assert px.batch_shape == (5,) and px.event_shape == shape
    out = model.elbo(x)
    assert all(v.shape == (5,) for v in out.values())
    assert model.sample(3).shape == (3, *shape)
    assert model.reconstruct(x).shape == x.shape
    assert model.terms(x, k=7).log_w.shape == (7, 5)


def test_elbo_is_reconstruction_minus_kl() -> None:
    model = build_model(Config(latent_dim=3, hidden=(16,)), (10,))
    out = model.elbo(torch.rand(8, 10))
    assert torch.allclose(out["elbo"], out["reconstruction"] - out["kl"])
    assert torch.all(out["kl"] >= 0)


def test_elbo_is_summed_over_dimensions_not_averaged() -> None:
    model = build_model(Config(latent_dim=2, hidden=(8,)), (50,))
    x = (torch.rand(4, 50) < 0.5).float()
    assert model.elbo(x)["reconstruction"].mean() < -50 * 0.3  # ~ -50 ln 2 for a fresh model


def test_analytic_and_monte_carlo_kl_give_the_same_elbo_in_expectation() -> None:
    """The model's closed-form KL (vaekit's, for its DiagonalNormal posterior and StandardNormal
    prior) is the expectation of log q(z|x) - log p(z), for a posterior some nats from the
    prior (a fresh encoder's is within a few hundredths of a nat: nothing to compare)."""
    torch.manual_seed(0)
    model = build_model(Config(latent_dim=3, hidden=(16,)), (10,))
    with torch.no_grad():
        model.posterior.head.bias[:3] += torch.tensor([1.0, -0.5, 2.0])  # means
        model.posterior.head.bias[3:] -= 1.5  # log-variances
    x = torch.rand(4, 10)
    with torch.no_grad():
        t = model.terms(x, k=100_000)
        terms = t.log_qz - t.log_pz  # (k, B)
        kl = t.kl
    assert kl is not None and bool((kl > 1.0).all())
    stderr = terms.std(0) / terms.shape[0] ** 0.5
    assert bool(((terms.mean(0) - kl).abs() < 4 * stderr).all())
    out = model.elbo(x)
    assert torch.allclose(out["kl"], kl)


def test_iwae_with_one_sample_equals_the_elbo_estimate_and_grows_with_k() -> None:
    model = build_model(Config(latent_dim=2, hidden=(16,)), (10,))
    x = torch.rand(6, 10)
    t = model.terms(x, k=1)
    assert torch.allclose(iwae_bound(t.log_w), t.log_w[0])
    with torch.no_grad():
        bounds = [iwae_bound(model.terms(x, k=k).log_w).mean() for k in (1, 10, 100, 1000)]
        reference = elbo(model.terms(x, k=20_000))["elbo"].mean()
    assert bounds[0] == pytest.approx(reference.item(), abs=1.0)
    assert bounds[1] < bounds[2] < bounds[3]


def test_log_variance_is_clamped() -> None:
    model = build_model(Config(latent_dim=2, hidden=(4,)), (3,))
    with torch.no_grad():
        model.posterior.head.bias.fill_(1e4)
    q = model.encode(torch.zeros(1, 3))
    assert torch.isfinite(q.log_prob(q.rsample())).all()


@pytest.mark.parametrize("shape", [(10,), (1, 4, 4)])
def test_one_sample_terms_agree_with_each_row_of_many(shape: tuple[int, ...]) -> None:
    """With one sample the model keeps (B, L) latents throughout; with k it works on
    (k, B, L). The same noise gives the same log-weights, KL and gradients either way."""
    torch.manual_seed(0)
    model = build_model(Config(latent_dim=3, hidden=(16,)), shape)
    x = torch.rand(6, *shape).round()
    noise = torch.randn(4, 6, 3)
    many = model.terms(x, noise=noise)
    for i in range(4):
        one = model.terms(x, noise=noise[i:i + 1])
        assert one.log_px_z.shape == one.log_qz.shape == (1, 6)
        assert one.z.shape == (1, 6, 3)
        assert torch.allclose(one.log_w, many.log_w[i:i + 1], atol=1e-5)
    one = model.terms(x, noise=noise[:1])
    assert one.kl is not None and many.kl is not None
    assert torch.allclose(one.kl, many.kl)
    loss_one = (one.kl - one.log_px_z).mean()
    loss_many = (many.kl - many.log_px_z[:1]).mean()
    grads = [torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
             for loss in (loss_one, loss_many)]
    for a, b in zip(*grads, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)
