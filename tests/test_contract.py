"""The model contract, for every latent structure: what the trainer, evaluation and the CLI may
rely on without knowing which model they hold."""

from __future__ import annotations

import pytest
import torch

from vaekit import Config, build_model
from vaekit.cli import merge_config_values
from vaekit.config import PRESETS
from vaekit.evaluate import log_likelihood
from vaekit.models import MODELS, HierarchicalVAE, LatentVariableModel
from vaekit.objectives import elbo, iwae_bound, training_loss

IMAGE = (1, 8, 8)

#: One configuration per model (and per shape of a hierarchy), with the shape of its data: the
#: specification below runs on each. A model registered in MODELS must appear here.
CONFIGS: dict[str, tuple[Config, tuple[int, ...]]] = {
    "vae": (Config(latent_dim=3, hidden=(16,)), (20,)),
    "vae-iaf": (Config(latent_dim=3, hidden=(16,), posterior="iaf", flow_steps=2), (20,)),
    "hvae-1-group": (Config(model="hvae", model_options={"hvae": {
        "latents": (3,), "widths": (16,)}}), (20,)),
    "hvae-3-groups": (Config(model="hvae", model_options={"hvae": {
        "latents": (4, 3, 2), "widths": (16, 12, 8), "depth": 1}}), (20,)),
    "hvae-conv": (Config(model="hvae-conv", model_options={"hvae-conv": {
        "widths": (8, 8), "groups": (1, 2), "latent_channels": 1}}), IMAGE),
    # reinforce-loo: its training-mode terms have the discrete model's values
    "categorical": (Config(model="categorical", latent_dim=3, hidden=(16,), iw_samples=2,
                           model_options={"categorical": {"categories": 4,
                                                          "estimator": "reinforce-loo"}}), (20,)),
    # a point mass q(c|x) on a 2x2 grid of 8 codes, with an (untrained) fitted prior to sample
    "vqvae": (Config(model="vqvae", model_options={"vqvae": {
        "codebook_size": 8, "code_dim": 4, "widths": (8, 8), "blocks": 1}},
        fitted_prior={"kind": "autoregressive", "categories": 8, "transformer_width": 16,
                      "transformer_depth": 1, "heads": 2}), IMAGE),
}
SHAPES = {name: shape for name, (_, shape) in CONFIGS.items()}


def _model(name: str, seed: int = 0) -> LatentVariableModel:
    torch.manual_seed(seed)
    model = build_model(CONFIGS[name][0].validate(), CONFIGS[name][1])
    with torch.no_grad():  # posteriors some nats from their priors: KLs worth comparing
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def _x(n: int = 6, shape: tuple[int, ...] = (20,)) -> torch.Tensor:
    return (torch.rand(n, *shape, generator=torch.Generator().manual_seed(1)) < 0.5).float()


@pytest.fixture(params=sorted(CONFIGS))
def model(request: pytest.FixtureRequest) -> LatentVariableModel:
    return _model(request.param)


def _data(model: LatentVariableModel, n: int = 6) -> torch.Tensor:
    return _x(n, model.event_shape)


def test_every_verb_has_the_documented_shapes(model: LatentVariableModel) -> None:
    x, d = _data(model, 5), model.latent_dim
    # noise_dim 0: q is a point mass (a VQ-VAE's code), the same for every one of k samples
    assert d == sum(model.latent_groups) and model.noise_dim >= (model.latent_kind != "discrete")
    q = model.encode(x)
    assert q.mean.shape == (5, d)
    assert model.decode(q.mean).batch_shape == (5,)
    assert model.decode_mean(q.mean).shape == x.shape
    assert model.sample(4, temperature=0.5).shape == (4, *model.event_shape)
    assert model.reconstruct(x).shape == x.shape
    t = model.terms(x, k=7)
    assert t.log_w.shape == t.log_px_z.shape == t.log_pz.shape == t.log_qz.shape == (7, 5)
    assert len(t.kl_groups) == len(model.latent_groups) or t.kl_groups[0].shape == (5,)
    assert model.draw_noise(7, 5).shape == (7, 5, model.noise_dim)


def test_the_elbo_is_reconstruction_minus_the_sum_of_the_groups_kls(
        model: LatentVariableModel) -> None:
    x = _data(model)
    with torch.no_grad():
        t = model.terms(x, k=3)
        out = elbo(t)
    torch.testing.assert_close(out["elbo"], out["reconstruction"] - out["kl"])
    torch.testing.assert_close(out["kl"], sum(t.kl_groups[1:], t.kl_groups[0]))
    assert bool((torch.stack(t.kl_groups) >= -1e-5).all())


def test_the_closed_form_kl_is_the_expectation_of_log_q_minus_log_p(
        model: LatentVariableModel) -> None:
    """KL_l in closed form given the samples above, summed: its expectation is
    E_q[log q(z|x) - log p(z)] (Sønderby et al. 2016, eq. 12)."""
    x = _data(model, 3)
    with torch.no_grad():
        t = model.terms(x, k=5_000 if model.config.model == "hvae-conv" else 20_000)
        mc = t.log_qz - t.log_pz  # (k, B)
        kl = t.kl_estimate
    assert bool((kl > 0.05).all())
    stderr = mc.std(0) / mc.shape[0] ** 0.5
    assert bool(((mc.mean(0) - kl).abs() < 5 * stderr + 1e-3).all()), (mc.mean(0), kl)


def test_the_iwae_bound_starts_at_the_elbo_and_grows_with_k(model: LatentVariableModel) -> None:
    """...and for a point-mass q (noise_dim 0) every k gives the one bound exactly."""
    x = _data(model)
    if model.noise_dim == 0:
        with torch.no_grad():
            one = model.terms(x, k=1).log_w[0]
            for k in (10, 1000):
                torch.testing.assert_close(iwae_bound(model.terms(x, k=k).log_w), one)
        return
    with torch.no_grad():
        t = model.terms(x, k=1)
        torch.testing.assert_close(iwae_bound(t.log_w), t.log_w[0])
        rows = 2_000 if model.config.model == "hvae-conv" else 10_000  # samples per estimate
        reference = model.terms(x, k=rows).log_w.mean()  # the ELBO: E[iwae_bound, k=1]
        # each bound's expectation, over replicates: one draw of log-mean-exp is skewed
        bounds = [float(torch.stack([iwae_bound(model.terms(x, k=k).log_w).mean()
                                     for _ in range(rows // k)]).mean())
                  for k in (10, 100, 1000)]
    assert reference < bounds[0] < bounds[1] + 0.01 < bounds[2] + 0.02, (reference, bounds)


def test_the_inference_cache_changes_nothing(model: LatentVariableModel) -> None:
    """`terms` with the cache of x gives what it gives without, for the same noise: chunked
    evaluation runs the encoder once."""
    x = _data(model)
    noise = model.draw_noise(4, len(x), torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model.terms(x, noise=noise)
        b = model.terms(x, noise=noise, cache=model.inference_cache(x))
    torch.testing.assert_close(a.log_w, b.log_w)
    torch.testing.assert_close(a.kl_estimate, b.kl_estimate)


def test_each_sample_of_many_is_the_one_sample_answer(model: LatentVariableModel) -> None:
    """Row j of k samples is the single-sample pass with noise row j (no mixing of rows)."""
    x = _data(model, 4)
    noise = model.draw_noise(3, len(x), torch.Generator().manual_seed(2))
    with torch.no_grad():
        many = model.terms(x, noise=noise).log_w
        ones = torch.cat([model.terms(x, noise=noise[j:j + 1]).log_w for j in range(3)])
    torch.testing.assert_close(many, ones, rtol=1e-5, atol=1e-4)


def test_the_chunked_importance_sampled_estimate_does_not_depend_on_the_chunks(
        model: LatentVariableModel) -> None:
    """One example at a time, its 64 samples in one chunk or in four (the same noise, in the
    same order): the encoder's pass, made once, serves every chunk."""
    x = _data(model, 5)
    whole = log_likelihood(model, x, k=64, chunk_rows=64, seed=3).per_example
    chunked = log_likelihood(model, x, k=64, chunk_rows=16, seed=3).per_example
    torch.testing.assert_close(whole, chunked)


def test_the_training_loss_reaches_every_parameter(model: LatentVariableModel) -> None:
    for objective, k, free_bits in (("elbo", 1, 0.0), ("elbo", 1, 0.5), ("iwae", 5, 0.0)):
        model.zero_grad(set_to_none=True)
        training_loss(model.terms(_data(model), k=k), objective, free_bits=free_bits).backward()
        unreached = [n for n, p in model.named_parameters() if p.grad is None or
                     not torch.isfinite(p.grad).all()]
        assert not unreached, (objective, unreached)


def test_sampling_at_temperature_zero_is_the_priors_mean_path(model: LatentVariableModel) -> None:
    if model.config.model == "vae" and model.config.prior != "normal":
        pytest.skip("a mixture prior has no temperature")
    a = model.sample(3, torch.Generator().manual_seed(0), temperature=0.0)
    b = model.sample(3, torch.Generator().manual_seed(1), temperature=0.0)
    torch.testing.assert_close(a, b)
    c = model.sample(3, torch.Generator().manual_seed(0), temperature=1.0)
    assert not torch.allclose(a, c)


def test_draws_of_p_x_given_z_are_fixed_by_the_generator(model: LatentVariableModel) -> None:
    """`sample(mean=False)` draws x ~ p(x|z) from the caller's generator, not torch's global
    state: the same seed gives the same draws whatever ran before."""
    a = model.sample(4, torch.Generator().manual_seed(5), mean=False)
    torch.rand(7)  # the global state moves on
    b = model.sample(4, torch.Generator().manual_seed(5), mean=False)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, model.sample(4, torch.Generator().manual_seed(6), mean=False))


def test_every_registered_model_is_specified_here() -> None:
    """Every model with a likelihood runs the specification above; the plain autoencoder, which
    has none, has its own (tests/test_autoencoder.py)."""
    assert {config.model for config, _ in CONFIGS.values()} == \
        {name for name, spec in MODELS.items() if spec.has_likelihood}
    assert {name for name, spec in MODELS.items() if not spec.has_likelihood} == {"ae"}


def test_a_hierarchy_samples_its_groups_from_the_top_down() -> None:
    """The prior of a lower group depends on the sample above it; the top group's is N(0, I)."""
    model = _model("hvae-3-groups")
    assert isinstance(model, HierarchicalVAE)
    with torch.no_grad():
        z = model.sample_latents(20_000, torch.Generator().manual_seed(0))
    top = z[:, -2:]  # the top group (bottom first)
    assert top.mean(0).abs().max() < 0.05 and (top.std(0) - 1).abs().max() < 0.05
    lowest = z[:, :4]
    # E[z_1 | z_>1] varies with z_>1: z_1 and the top group are correlated
    corr = torch.corrcoef(torch.cat([lowest, top], 1).T)[:4, 4:]
    assert corr.abs().max() > 0.1


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_its_model_and_takes_a_step(name: str) -> None:
    config = Config.from_dict(merge_config_values(PRESETS[name]))
    shape = (3, 32, 32) if name == "hvae-cifar" else (1, 28, 28)
    torch.manual_seed(0)
    model = build_model(config, shape)
    x = torch.randint(0, 256, (2, *shape)).float() / 255
    if config.likelihood == "bernoulli":
        x = (x > 0.5).float()
    loss = training_loss(model.terms(x, k=2 if config.objective == "iwae" else 1),
                         config.objective)
    loss.backward()
    assert torch.isfinite(loss)


def test_every_model_names_its_groups_in_their_order(model: LatentVariableModel) -> None:
    """Per-group reports (KL, active units) list the groups in `latent_groups`' order; the
    names say which end is which: a dense hierarchy's groups from the data up, a conv
    hierarchy's as drawn, from the top down."""
    names = model.group_names
    assert len(names) == len(model.latent_groups) and len(set(names)) == len(names)
    if len(names) > 1:
        top = 0 if model.__class__.__name__ == "ConvHierarchicalVAE" else len(names) - 1
        assert names[top].endswith("(top)") and names[len(names) - 1 - top].endswith("(bottom)")
