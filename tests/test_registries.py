"""Registries are the one list of choices: a likelihood, prior, posterior, net or activation
registered there is valid at once, everywhere (Config, the CLI, build_model)."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Laplace

import vaekit
from vaekit.cli import main
from vaekit.config import REGISTRIES, Config, ConfigError, field_choices, registry
from vaekit.distributions import LIKELIHOODS, Likelihood
from vaekit.nets import ACTIVATION_LAYERS, NETS
from vaekit.posteriors import POSTERIORS
from vaekit.priors import PRIORS, StandardNormalPrior
from vaekit.train.schedules import LR_SCHEDULES


class LaplaceLikelihood(Likelihood):
    """A user's likelihood: Laplace(mu, 1) per dimension."""

    def forward(self, params: Tensor) -> Distribution:
        return Independent(Laplace(params, torch.ones_like(params)), len(self.event_shape))

    def mean(self, params: Tensor) -> Tensor:
        return params


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_every_registered_choice_is_valid_and_nothing_else(name: str) -> None:
    choices = registry(name)
    assert choices, name
    for value in choices:
        # the table likelihood comes with the schema that training on a table fits
        table = {"columns": [{"name": "a", "kind": "continuous"}]} if value == "table" else {}
        Config(**{name: value}, table=table).validate()
    with pytest.raises(ConfigError, match=f"unknown {name.replace('_', '-')} 'nope'"):
        Config(**{name: "nope"}).validate()


@pytest.mark.parametrize("name", sorted(REGISTRIES))
def test_the_command_line_lists_the_registrys_choices(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    field = next(f for f in fields(Config) if f.name == name)
    assert field_choices(field) == tuple(registry(name))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = "".join(capsys.readouterr().out.split())  # argparse wraps at hyphens too
    assert "{" + "|".join(registry(name)) + "}" in help_text


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """One new entry in every registry, as a user would add it."""
    monkeypatch.setitem(LIKELIHOODS, "laplace", LaplaceLikelihood)
    monkeypatch.setitem(PRIORS, "standard", lambda latent_dim, event_shape, config:
                        StandardNormalPrior(latent_dim))
    monkeypatch.setitem(POSTERIORS, "diagonal", POSTERIORS["gaussian"])
    monkeypatch.setitem(NETS, "perceptron", NETS["mlp"])
    monkeypatch.setitem(ACTIVATION_LAYERS, "hardswish", nn.Hardswish)
    monkeypatch.setitem(LR_SCHEDULES, "halving", lambda progress, epochs: 0.5 ** epochs)


def test_a_registered_likelihood_prior_posterior_net_and_activation_train(
        registered: None, tmp_path) -> None:
    x = torch.randn(200, 6)
    model = vaekit.fit(x, likelihood="laplace", prior="standard", posterior="diagonal",
                       net="perceptron", activation="hardswish", hidden=(16,), latent_dim=2,
                       lr_schedule="halving", epochs=2, batch_size=180, out=tmp_path / "run")
    assert isinstance(model.likelihood, LaplaceLikelihood)
    assert any(isinstance(m, nn.Hardswish) for m in model.modules())
    assert torch.isfinite(model.elbo(x[:5])["elbo"]).all()
    lrs = [row["lr"] for row in vaekit.run.read_metrics(tmp_path / "run")]
    assert lrs == pytest.approx([1e-3, 5e-4])  # the schedule registered above (one step an epoch)
    again = vaekit.load(tmp_path / "run")  # rebuilt from config.json through the registries
    torch.testing.assert_close(again.reconstruct(x[:5]), model.reconstruct(x[:5]))


def test_a_likelihood_without_a_variance_option_is_built_without_one(registered: None) -> None:
    model = vaekit.build_model(Config(likelihood="laplace", latent_dim=2, hidden=(8,)), (4,))
    assert isinstance(model.likelihood, LaplaceLikelihood)
