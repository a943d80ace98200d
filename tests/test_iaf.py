"""The inverse autoregressive flow posterior (Kingma et al. 2016) against what the paper asks of
it: steps that start at the identity, masks that make each step's Jacobian triangular in an
order that reverses between steps, a log-det equal to the sum of the log gates, a context from
the encoder, and densities that importance weighting can trust.

(The KL estimator's unbiasedness is checked for every flow in `test_flows_priors.py`.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vaekit import Config, build_model
from vaekit.distributions import diagonal_normal
from vaekit.flows import FlowDistribution, InverseAutoregressiveFlow
from vaekit.flows.iaf import IAFStep
from vaekit.posteriors import FlowPosterior
from vaekit.run import load_weights


def _shake(module: torch.nn.Module, scale: float = 0.4) -> None:
    """Move parameters away from the identity initialisation."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def test_iaf_starts_at_the_identity_so_its_elbo_equals_the_gaussian_posteriors() -> None:
    """With the same encoder weights and the same noise, an untrained IAF posterior gives the
    Gaussian posterior's samples, log q, ELBO and IWAE log-weights: q_K = q_0 at init, so the
    flow can start only from where the plain VAE starts."""
    torch.manual_seed(0)
    common = dict(latent_dim=4, hidden=(16,))
    gaussian = build_model(Config(**common), (12,))
    iaf = build_model(Config(**common, posterior="iaf", flow_steps=4), (12,))
    missing, unexpected = iaf.load_state_dict(gaussian.state_dict(), strict=False)
    assert not unexpected and all(".flows." in name for name in missing)
    x = torch.rand(6, 12).bernoulli()
    noise = torch.randn(3, 6, 4)
    t_gauss, t_iaf = gaussian.terms(x, noise=noise), iaf.terms(x, noise=noise)
    assert isinstance(t_iaf.q, FlowDistribution)
    # equal up to float32 rounding (the old 0.82-per-step start was 0.4 nats per dimension off)
    torch.testing.assert_close(t_iaf.z, t_gauss.z)
    torch.testing.assert_close(t_iaf.log_qz, t_gauss.log_qz)
    torch.testing.assert_close(t_iaf.log_w, t_gauss.log_w)
    torch.testing.assert_close(t_iaf.kl, t_gauss.kl)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_each_steps_jacobian_is_triangular_in_its_order_with_the_log_gates_on_the_diagonal(
        index: int) -> None:
    """dz'_i/dz_j = 0 unless j comes no later than i in the step's order; the diagonal is
    sigma_i / sigma_0 and log|det| = sum_i log(sigma_i / sigma_0), the sum of the log gates."""
    torch.manual_seed(index)
    dim = 5
    flow = InverseAutoregressiveFlow(dim, 3, index=index)
    _shake(flow)
    step = flow(torch.randn(3))
    z = torch.randn(dim)
    jac = torch.autograd.functional.jacobian(lambda v: step.forward(v)[0], z)  # (D, D)
    rank = torch.empty(dim, dtype=torch.long)
    rank[flow.made.order] = torch.arange(dim)  # rank[i]: where dimension i comes in the order
    later = rank[None, :] > rank[:, None]  # later[i, j]: z_j comes after z_i
    assert jac[later].abs().max() == 0
    assert jac[~later & ~torch.eye(dim, dtype=torch.bool)].abs().min() > 0  # the rest is live
    _, s = step.made(z, step.context)
    gates = torch.sigmoid(s + step.forget_bias) / torch.sigmoid(torch.tensor(step.forget_bias))
    torch.testing.assert_close(jac.diagonal(), gates)
    _, log_det = step.forward(z)
    torch.testing.assert_close(log_det, gates.log().sum())
    torch.testing.assert_close(log_det, torch.linalg.slogdet(jac)[1], atol=1e-5, rtol=0)


def test_consecutive_steps_reverse_the_autoregressive_order() -> None:
    """Step k+1 reads the dimensions in the reverse of step k's order, so that after two steps
    every dimension depends on every other (Kingma et al. 2016, sec. 4)."""
    orders = [InverseAutoregressiveFlow(4, 0, index=i).made.order.tolist() for i in range(4)]
    assert orders[0] == [0, 1, 2, 3] and orders[1] == [3, 2, 1, 0]
    assert orders[2] == orders[0] and orders[3] == orders[1]
    torch.manual_seed(4)
    flows = [InverseAutoregressiveFlow(4, 0, index=i) for i in range(2)]
    for f in flows:
        _shake(f)
    steps = [f() for f in flows]

    def two_steps(v: torch.Tensor) -> torch.Tensor:
        return steps[1].forward(steps[0].forward(v)[0])[0]

    jac = torch.autograd.functional.jacobian(two_steps, torch.randn(4))
    assert (jac.abs() > 0).all()


def test_every_step_reads_the_encoders_features_as_its_context() -> None:
    """IAF conditions each step's MADE on a context h from the encoder: a flow posterior binds
    its encoder's features of x to every step, and every output after the first in the order
    (the first reads no hidden unit: it is a constant, absorbed by q_0) changes with h."""
    torch.manual_seed(5)
    model = build_model(Config(latent_dim=3, hidden=(16, 8), posterior="iaf", flow_steps=2),
                        (10,))
    posterior = model.posterior
    assert isinstance(posterior, FlowPosterior)
    _shake(posterior.flows)
    x = torch.rand(4, 10)
    q = posterior(x)
    assert isinstance(q, FlowDistribution)
    features = posterior.features(x)
    for step in q.steps:
        assert isinstance(step, IAFStep) and step.context is not None
        torch.testing.assert_close(step.context, features)
        z = torch.randn(4, 3)
        m, s = step.made(z, step.context)
        m2, s2 = step.made(z, step.context + 1.0)
        later = step.made.order[1:]  # every output but the first in the order
        assert ((m - m2)[:, later].abs() > 0).all() and ((s - s2)[:, later].abs() > 0).all()


def test_importance_weights_use_the_iaf_posteriors_true_density() -> None:
    """The log q(z_k|x) in the log-weights (one pass, from the noise) is the density of z_k
    under q_K, as the sequential inverse computes it, so log p(x) estimates are unbiased
    importance sampling; and a 2-d IAF density with a context integrates to one."""
    torch.manual_seed(6)
    model = build_model(Config(latent_dim=3, hidden=(16,), posterior="iaf", flow_steps=3), (8,))
    _shake(model.posterior.flows, 0.3)
    x = torch.rand(5, 8).bernoulli()
    with torch.no_grad():
        t = model.terms(x, k=7)
        torch.testing.assert_close(t.q.log_prob(t.z), t.log_qz, atol=1e-4, rtol=0)
    torch.manual_seed(6)
    flows = [InverseAutoregressiveFlow(2, 3, index=i) for i in range(3)]
    for f in flows:
        _shake(f, 0.3)
    context = torch.randn(3)
    q = FlowDistribution(diagonal_normal(torch.zeros(2), torch.zeros(2)),
                         [f(context) for f in flows])
    grid = torch.linspace(-9, 9, 400)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = q.log_prob(zz).exp().sum() * (grid[1] - grid[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=0.02)


def test_a_run_saved_before_the_identity_rescale_loads_as_the_model_it_was() -> None:
    """Runs written before the steps were rescaled hold no log_sigma_0: their steps were
    z' = sigma z + (1 - sigma) m, so they load with log sigma_0 = 0 and compute exactly that."""
    model = build_model(Config(latent_dim=3, hidden=(8,), posterior="iaf", flow_steps=2), (6,))
    for p in model.parameters():  # weights away from the identity start
        torch.nn.init.normal_(p, std=0.3)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    assert "model.posterior.flows.1.log_sigma_0" in tensors
    load_weights(model, tensors, Path("new"))  # today's runs load
    old = {k: v for k, v in tensors.items() if not k.endswith("log_sigma_0")}
    load_weights(model, old, Path("old"))
    for flow in model.posterior.flows:
        assert float(flow.log_sigma_0) == 0.0
        z = torch.randn(5, 3)
        m, s = flow.made(z, None)
        gate = torch.sigmoid(s + flow.forget_bias)
        out, log_det = flow(None).forward(z)
        torch.testing.assert_close(out, gate * z + (1 - gate) * m)
        torch.testing.assert_close(log_det, torch.log(gate).sum(-1))
