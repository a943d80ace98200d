"""The contract's joint density log p(x, z) = log p(x|z) + log p(z) at any latent vector: for
every model with continuous latents it agrees with the log-weight terms the trainer uses, at
the trainer's own samples, and it is differentiable in z; a model without one says so."""

from __future__ import annotations

import pytest
import torch

from vaekit import Config, build_model
from vaekit.errors import ConfigError, NoLikelihoodError
from vaekit.models import LatentVariableModel

IMAGE = (1, 8, 8)

#: every model with a density over continuous latents, with the shape of its data
CONFIGS: dict[str, tuple[Config, tuple[int, ...]]] = {
    "vae": (Config(latent_dim=3, hidden=(16,)), (20,)),
    "vae-iaf": (Config(latent_dim=3, hidden=(16,), posterior="iaf", flow_steps=2), (20,)),
    "vae-mog-prior": (Config(latent_dim=3, hidden=(16,), prior="mog", components=4), (20,)),
    "vae-vamp-prior": (Config(latent_dim=3, hidden=(16,), prior="vamp", pseudo_inputs=5), (20,)),
    "vae-flow-prior": (Config(latent_dim=3, hidden=(16,), prior="flow", flow_steps=2), (20,)),
    "vae-fitted-gaussian": (Config(latent_dim=3, hidden=(16,),
                                   fitted_prior={"kind": "gaussian"}), (20,)),
    "vae-fitted-mog": (Config(latent_dim=3, hidden=(16,), fitted_prior={"kind": "mog"}), (20,)),
    "vae-fitted-flow": (Config(latent_dim=3, hidden=(16,), fitted_prior={"kind": "flow"}),
                        (20,)),
    "cvae": (Config(latent_dim=3, hidden=(16,), condition="label",
                    condition_classes=("a", "b", "c")), (20,)),
    "hvae-2-groups": (Config(model="hvae", model_options={"hvae": {
        "latents": (4, 2), "widths": (16, 8), "depth": 1}}), (20,)),
    "hvae-3-groups": (Config(model="hvae", model_options={"hvae": {
        "latents": (4, 3, 2), "widths": (16, 12, 8), "depth": 1}}), (20,)),
    "hvae-conv": (Config(model="hvae-conv", model_options={"hvae-conv": {
        "widths": (8, 8), "groups": (1, 2), "latent_channels": 1}}), IMAGE),
}


def _model(name: str) -> LatentVariableModel:
    torch.manual_seed(0)
    model = build_model(CONFIGS[name][0].validate(), CONFIGS[name][1])
    with torch.no_grad():  # posteriors away from their priors: terms worth comparing
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def _data(model: LatentVariableModel, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(n, *model.event_shape, generator=g) < 0.5).float()


def _condition(model: LatentVariableModel, n: int) -> torch.Tensor | None:
    return model.as_condition(torch.arange(n) % model.condition_dim, n) \
        if model.condition_dim else None


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_joint_density_agrees_with_the_trainers_terms(name: str) -> None:
    model = _model(name)
    x = _data(model)
    c = _condition(model, len(x))
    noise = model.draw_noise(3, len(x), torch.Generator().manual_seed(2))
    with torch.no_grad():
        terms = model.terms(x, noise=noise, condition=c)
        joint = model.log_joint(x, terms.z, c)  # (k, B)
    assert model.has_joint_density and joint.shape == (3, len(x))
    torch.testing.assert_close(joint, terms.log_px_z + terms.log_pz, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", ["vae", "vae-vamp-prior", "hvae-3-groups", "hvae-conv"])
def test_the_joint_density_is_differentiable_in_z(name: str) -> None:
    """The autograd gradient of log p(x, z) matches a central finite difference."""
    model = _model(name).double()
    x = _data(model, 2).double()
    z = torch.randn(2, model.latent_dim, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(model.log_joint(x, z).sum(), z)
    step = torch.zeros_like(z)
    step[:, 0] = 1e-6
    with torch.no_grad():
        numeric = (model.log_joint(x, z + step) - model.log_joint(x, z - step)) / 2e-6
    torch.testing.assert_close(grad[:, 0], numeric, rtol=1e-5, atol=1e-5)


def test_the_hierarchys_log_prior_is_the_sum_of_its_groups_top_down() -> None:
    """log p(z) of a two-group hierarchy by hand: N(z_2; 0, I) N(z_1; mu_p(z_2), sigma_p(z_2))."""
    model = _model("hvae-2-groups")
    z = torch.randn(4, model.latent_dim, generator=torch.Generator().manual_seed(4))
    z1, z2 = z[:, :4], z[:, 4:]
    with torch.no_grad():
        log_pz, _ = model.prior_and_decoder(z)
        state = model.top_down[0](z2)
        mu, log_var = model.prior_heads[0](state).chunk(2, -1)
        log_var = 8.0 * torch.tanh(log_var / 8.0)
        by_hand = (torch.distributions.Normal(0.0, 1.0).log_prob(z2).sum(-1)
                   + torch.distributions.Normal(mu, torch.exp(0.5 * log_var)).log_prob(z1).sum(-1))
    torch.testing.assert_close(log_pz, by_hand, rtol=1e-5, atol=1e-5)


def test_the_autoencoder_has_no_joint_density() -> None:
    model = build_model(Config(model="ae", latent_dim=3, hidden=(16,)).validate(), (20,))
    assert not model.has_joint_density
    with pytest.raises(NoLikelihoodError, match="no joint density"):
        model.log_joint(torch.zeros(2, 20), torch.zeros(2, 3))


def test_a_fitted_diffusion_prior_is_refused_in_one_line() -> None:
    model = build_model(Config(latent_dim=3, hidden=(16,),
                               fitted_prior={"kind": "diffusion"}).validate(), (20,))
    with pytest.raises(ConfigError, match="no exact log p"):
        model.log_joint(torch.zeros(2, 20), torch.zeros(2, 3))
