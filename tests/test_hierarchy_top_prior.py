"""A prior fitted to a hierarchy's top group (vaekit fit-prior on an hvae): it replaces p(z_L)
and nothing else, the top group samples from it, and the new run evaluates (a lower bound,
AIS where its log p(z_L) is exact), samples, scores and reports like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vaekit.cli import main
from vaekit.config import Config
from vaekit.models import build_model
from vaekit.models.hierarchical import TopDownVAE
from vaekit.models.hierarchical_conv import ConvHierarchicalVAE
from vaekit.priors.fitted import GaussianPrior
from vaekit.run import load_run
from vaekit.train.fit_prior import CodeSource

MODELS = {
    "hvae": Config(model="hvae", model_options={"hvae": {"latents": (5, 3),
                                                         "widths": (16, 8)}}),
    "hvae-conv": Config(model="hvae-conv", model_options={"hvae-conv": {
        "widths": (8, 8), "groups": (1, 1), "latent_channels": 2, "blocks": 1}}),
}


def _model(name: str) -> TopDownVAE:
    torch.manual_seed(0)
    model = build_model(MODELS[name], event_shape=(1, 8, 8))
    assert isinstance(model, TopDownVAE)
    return model.eval()


def _own_top_prior(model: TopDownVAE) -> GaussianPrior:
    """The model's own p(z_L) as a fitted Gaussian: N(0, I) for the dense hierarchy, the
    learned constant Gaussian of the convolutional one's initial state."""
    size = model.latent_groups[model.top_group]
    prior = GaussianPrior(size)
    if isinstance(model, ConvHierarchicalVAE):
        with torch.no_grad():
            mu, log_var, _ = model._prior(0, model.initial_state[None])
            prior.loc.copy_(mu.flatten())
            prior.scale_tril.copy_(torch.diag(torch.exp(0.5 * log_var.flatten())))
    return prior


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_fitted_prior_equal_to_the_top_groups_own_changes_no_density(name: str) -> None:
    """The fitted prior replaces p(z_L) and nothing else: set to the model's own p(z_L), every
    log-density with the same noise is unchanged, and the KL only moves from its closed form to
    its one-sample estimate, whose mean is the same."""
    model = _model(name)
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    noise = model.draw_noise(400, 6, torch.Generator().manual_seed(1))
    before = model.terms(x, noise=noise)
    z = torch.randn(3, 6, model.latent_dim)
    joint_before = model.log_joint(x, z)
    model.prior = _own_top_prior(model)
    after = model.terms(x, noise=noise)
    for name_ in ("log_px_z", "log_pz", "log_qz"):
        torch.testing.assert_close(getattr(after, name_), getattr(before, name_),
                                   atol=1e-4, rtol=1e-5, msg=name_)
    torch.testing.assert_close(model.log_joint(x, z), joint_before, atol=1e-4, rtol=1e-5)
    top = model.top_group
    closed, estimated = before.kl_groups[top], after.kl_groups[top]  # each (B,), mean over k
    assert not torch.allclose(closed, estimated)  # an estimate now, not the closed form
    sample_kls = torch.stack([d.kl() for d in [after.draws[top]]])  # (1, k B)
    se = sample_kls.view(400, 6).std(0) / 400 ** 0.5
    assert ((estimated - closed).abs() < 4 * se + 1e-4).all(), (closed, estimated, se)
    # moved away from its own, log p(z) moves by the two priors' difference at z_L alone
    own = model.prior(None)
    shifted = GaussianPrior(len(own.loc))
    with torch.no_grad():
        shifted.loc.copy_(own.loc + 1.0)
        shifted.scale_tril.copy_(own.scale_tril * 2.0)
    model.prior = shifted
    moved = model.terms(x, noise=noise)
    z_top = moved.z[..., model.prior_slice]  # (k, B, top)
    torch.testing.assert_close(moved.log_pz - before.log_pz,
                               shifted(None).log_prob(z_top) - own.log_prob(z_top),
                               atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(moved.log_px_z, before.log_px_z)  # the decoder's, unchanged


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_top_group_is_drawn_from_the_fitted_prior(name: str) -> None:
    model = _model(name)
    prior = GaussianPrior(model.latent_groups[model.top_group])
    with torch.no_grad():
        prior.loc.fill_(3.0)
        prior.scale_tril.mul_(0.5)
    model.prior = prior
    z = model.sample_latents(4000, torch.Generator().manual_seed(0))[:, model.prior_slice]
    torch.testing.assert_close(z.mean(0), torch.full_like(z[0], 3.0), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), torch.full_like(z[0], 0.5), atol=0.03, rtol=0)
    cold = model.sample_latents(5, torch.Generator().manual_seed(0), temperature=0.0)
    torch.testing.assert_close(cold[:, model.prior_slice], torch.full_like(cold[:, :1], 3.0)
                               .expand(5, z.shape[1]))  # T = 0: the fitted prior's mean


def test_the_codes_are_draws_of_the_top_groups_posterior() -> None:
    """CodeSource gives z_L ~ q(z_L|x), the top group's slice of the posterior, which reads x
    alone: its mean over draws is the posterior mean of the top group."""
    model = _model("hvae")
    x = (torch.rand(50, 1, 8, 8) > 0.5).float()
    draws = torch.stack([CodeSource(model, x).draw(torch.Generator().manual_seed(s))
                         for s in range(400)])  # (400, 50, top)
    assert draws.shape == (400, 50, 3)
    q = model.encode(x)
    torch.testing.assert_close(draws.mean(0), q.mean[:, model.prior_slice], atol=0.2, rtol=0)


@pytest.fixture(scope="module")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("top-prior") / "hvae"
    assert main(["train", "--model", "hvae", "--hvae-latents", "6,3", "--hvae-widths", "32,16",
                 "--epochs", "3", "--batch-size", "50", "--quiet", "--out", str(run)]) == 0
    return run


@pytest.mark.parametrize("kind", ["flow", "diffusion"])
def test_a_hierarchy_with_a_fitted_top_prior_samples_evaluates_and_reports(
        hierarchy: Path, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / kind
    extra = ["--sampler", "ode"] if kind == "diffusion" else []
    assert main(["fit-prior", str(hierarchy), "--kind", kind, "--epochs", "2", "--out",
                 str(out), *extra, "--quiet"]) == 0
    model, info = load_run(out)
    assert isinstance(model, TopDownVAE) and model.prior is not None
    assert info.config.fitted_prior["kind"] == kind
    assert main(["sample", str(out), "-n", "8", "-o", str(tmp_path / "s.png")]) == 0
    ais = ["--ais-steps", "3", "--ais-chains", "2"] if kind == "flow" else []
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "10", "--n", "30", "--json", *ais]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["nll"] > 0 and ("ais_seconds" in result) == (kind == "flow"), result
    assert main(["info", str(out)]) == 0
    assert "top group's codes" in capsys.readouterr().out
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").stat().st_size > 0


def test_hierarchy_fit_prior_refusals_are_one_line(hierarchy: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["fit-prior", str(hierarchy), "--kind", "autoregressive", "--out",
                 str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "fits discrete codes" in err and len(err.splitlines()) == 1, err
    out = tmp_path / "ancestral"
    assert main(["fit-prior", str(hierarchy), "--kind", "diffusion", "--epochs", "1", "--out",
                 str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--n", "5", "--ais-steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no exact log p(z)" in err and len(err.splitlines()) == 1, err
