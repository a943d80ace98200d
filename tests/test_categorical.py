"""Categorical latents (--model categorical): the contract's uniform noise, the discrete
evaluation against exact enumeration, the temperature schedule, the estimators' gradients
against the enumerated one, the encoder's class probabilities and the bad-input errors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from tests.conftest import run_cli
from tests.test_distributed import _assert_same_model, _torchrun
from vaekit import Config
from vaekit.cli import main
from vaekit.errors import ConfigError
from vaekit.evaluate import dataset_elbo, log_likelihood
from vaekit.evaluate.enumerate import estimated_gradients, exact_gradient, exact_terms
from vaekit.io import load_tensors
from vaekit.models import MODELS, CategoricalOptions, CategoricalVAE, build_model
from vaekit.models.categorical import ESTIMATORS, temperature_at


def _model(estimator: str = "gumbel", prior: str = "uniform", variables: int = 3,
           categories: int = 3, seed: int = 0, **options: float) -> CategoricalVAE:
    """A categorical model small enough to enumerate (3 x 3: 27 codes) on 8-pixel binary data."""
    torch.manual_seed(seed)
    config = Config(model="categorical", latent_dim=variables, hidden=(16,), iw_samples=4,
                    model_options={"categorical": {"categories": categories,
                                                   "estimator": estimator, "prior": prior,
                                                   **options}}).validate()
    model = build_model(config, (8,))
    assert isinstance(model, CategoricalVAE)
    with torch.no_grad():  # logits far enough from uniform for every term to matter
        for p in model.parameters():
            p.mul_(3.0)
    return model


def _data(seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((6, 8), 0.4), generator=torch.Generator().manual_seed(seed))


def test_every_earlier_model_still_draws_standard_normal_noise() -> None:
    """The same numbers as before the contract named its noise: resumes and DDP slices of the
    Gaussian models are unchanged."""
    for name in ("vae", "hvae"):
        model = build_model(Config(model=name).validate(), (8,))
        assert model.noise_kind == "normal"
        drawn = model.draw_noise(3, 5, torch.Generator().manual_seed(7))
        assert torch.equal(drawn, torch.randn(3, 5, model.noise_dim,
                                              generator=torch.Generator().manual_seed(7)))


def test_a_categorical_model_draws_uniform_noise_in_the_contract_layout() -> None:
    model = _model()
    noise = model.draw_noise(4, 6, torch.Generator().manual_seed(0))
    assert model.noise_kind == "uniform" and noise.shape == (4, 6, 9)
    assert torch.equal(noise, torch.rand(4, 6, 9, generator=torch.Generator().manual_seed(0)))
    assert model.has_joint_density is False and model.latent_kind == "discrete"


@pytest.mark.parametrize("prior", ["uniform", "learned"])
def test_the_discrete_elbo_estimate_is_the_enumerated_elbo(prior: str) -> None:
    model = _model(prior=prior).eval()
    if prior == "learned":
        with torch.no_grad():
            model.prior_logits.copy_(torch.randn(3, 3))
    x = _data()
    exact = exact_terms(model, x)
    est = dataset_elbo(model, x, k=20000, seed=3)
    assert torch.allclose(est["kl"], exact["kl"].detach(), atol=1e-5)  # the exact KL
    # the reconstruction is a mean of 20,000 exact draws from q: within 4 standard errors
    terms = model.terms(x, noise=model.draw_noise(20000, len(x), torch.Generator().manual_seed(3)))
    se = terms.log_px_z.std(0) / math.sqrt(20000)
    assert ((est["reconstruction"] - exact["reconstruction"].detach()).abs() < 4 * se).all()
    # the Monte Carlo KL from the samples' exact log-probabilities agrees with the exact KL
    mc_kl = (terms.log_qz - terms.log_pz).mean(0)
    assert torch.allclose(mc_kl, exact["kl"].detach(), atol=0.1)


def test_the_importance_weighted_estimate_tends_to_the_enumerated_log_likelihood() -> None:
    """The weights w = p(x, z) / q(z|x) at exact discrete draws have mean p(x) (enumerated),
    within 4 standard errors; log p(x)'s estimate is a bound that tightens with k to it."""
    model = _model().eval()
    x = _data()
    exact = exact_terms(model, x)["log_px"].detach().double()  # (6,)
    with torch.no_grad():
        terms = model.terms(x, noise=model.draw_noise(200_000, len(x),
                                                      torch.Generator().manual_seed(0)))
    w = (terms.log_w.double() - exact).exp()  # (k, 6), mean 1 where log_w is exact
    assert ((w.mean(0) - 1).abs() < 4 * w.std(0) / math.sqrt(len(w))).all()
    gaps = [exact - log_likelihood(model, x, k=k, compile=False).per_example
            for k in (1, 50, 200_000)]  # each (6,)
    assert float(gaps[0].mean()) > float(gaps[1].mean()) > float(gaps[2].abs().mean())
    assert float(gaps[2].abs().max()) < 0.05 < float(gaps[0].mean())


def test_the_temperature_follows_jangs_schedule_and_counts_training_steps() -> None:
    options = CategoricalOptions(temperature=2.0, temperature_min=0.5, anneal_rate=1e-3)
    assert temperature_at(0, options) == 2.0
    assert temperature_at(500, options) == pytest.approx(2.0 * math.exp(-0.5))
    assert temperature_at(10_000, options) == 0.5  # the floor
    model = _model(temperature=2.0, temperature_min=0.5, anneal_rate=1e-3).train()
    x = _data()
    for _ in range(3):
        model.terms(x, k=2)
    assert int(model.steps) == 3 and model.temperature == pytest.approx(2.0 * math.exp(-3e-3))
    with torch.no_grad():  # evaluation takes no step
        model.eval().terms(x, k=2)
    assert int(model.steps) == 3 and "steps" in model.state_dict()


def _bias(estimator: str, **options: float) -> float:
    """||mean estimate - exact gradient||^2 over its expectation under no bias, sum of the
    squared standard errors: about 1 for an unbiased estimator, large for a biased one."""
    model = _model(estimator, **options)
    x = _data()
    exact = exact_gradient(model, x)
    g = estimated_gradients(model, x, k=4, repeats=1500, generator=torch.Generator().manual_seed(0))
    se2 = g.var(0) / len(g)
    return float(((g.mean(0) - exact) ** 2).sum() / se2.sum())


def test_reinforce_loo_is_an_unbiased_gradient_of_the_discrete_elbo() -> None:
    assert _bias("reinforce-loo") < 2.0


def test_the_relaxed_gradient_is_measurably_biased() -> None:
    """The control that shows the test above can fail: Gumbel-softmax at tau = 1."""
    assert _bias("gumbel", temperature=1.0, anneal_rate=0.0) > 10.0


def test_encode_gives_each_variables_class_probabilities() -> None:
    model = _model().eval()
    q = model.encode(_data())
    assert q.probs.shape == (6, 3, 3)
    assert torch.allclose(q.probs.sum(-1), torch.ones(6, 3))
    assert model.reconstruct(_data()).shape == (6, 8)
    z = model.sample_latents(5, torch.Generator().manual_seed(0))
    assert z.shape == (5, 9) and torch.equal(z.view(5, 3, 3).sum(-1), torch.ones(5, 3))


@pytest.mark.parametrize(("changes", "message"), [
    ({"model_options": {"categorical": {"categories": 1}}}, "categories must be an integer >= 2"),
    ({"model_options": {"categorical": {"temperature": 0.0}}}, "temperature must be a finite"),
    ({"model_options": {"categorical": {"temperature_min": 0.0}}}, "temperature-min must be"),
    ({"model_options": {"categorical": {"estimator": "reinforce-loo"}}}, "--iw-samples >= 2"),
    ({"objective": "iwae", "iw_samples": 4}, "trains on the ELBO"),
])
def test_bad_settings_are_refused_in_one_line(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build_model(Config(model="categorical", **changes).validate(), (8,))
    assert "\n" not in str(info.value)


def test_the_options_are_registered_and_recorded() -> None:
    config = Config(model="categorical").validate()
    assert MODELS["categorical"].options is CategoricalOptions
    recorded = config.model_options["categorical"]
    assert recorded == {f.name: getattr(CategoricalOptions(), f.name)
                        for f in dataclasses.fields(CategoricalOptions)}


CATEGORICAL = Config(model="categorical", hidden=(32,), latent_dim=4, epochs=3, batch_size=50,
                     iw_samples=2, model_options={"categorical": {"categories": 3,
                                                                  "anneal_rate": 1e-2}})


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_a_resumed_categorical_run_continues_bit_exactly(tmp_path: Path, estimator: str) -> None:
    """The uniform noise comes from the trainer's generator and the temperature's step is saved
    with the weights, so two epochs and a resume to four are four epochs."""
    config = CATEGORICAL.replace(model_options={"categorical": {
        **CATEGORICAL.model_options["categorical"], "estimator": estimator}})
    whole = vaekit.train(config.replace(epochs=4), out=tmp_path / "whole", progress=False,
                         pictures=False)
    vaekit.train(config.replace(epochs=2), out=tmp_path / "part", progress=False, pictures=False)
    resumed = vaekit.train(resume=tmp_path / "part", epochs=4, progress=False, pictures=False)
    w1, w2 = (load_tensors(tmp_path / run / "checkpoint.safetensors")[0]
              for run in ("whole", "part"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1 if not k.startswith("rng"))
    assert [r["val_elbo"] for r in whole.history] == [r["val_elbo"] for r in resumed.history]
    steps = [v for k, v in w1.items() if k.endswith("steps")]
    assert steps and all(int(s) == (4 * 30 if estimator != "reinforce-loo" else 0)
                         for s in steps)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_two_processes_train_the_categorical_model_as_one(tmp_path: Path) -> None:
    """Each process takes its rows of one global draw of uniform noise (and the weight
    average carries the integer step count)."""
    flags = ["--model", "categorical", "--hidden", "32", "--latent-dim", "4",
             "--categorical-categories", "3", "--epochs", "2", "--batch-size", "40",
             "--drop-last", "--threads", "1", "--quiet", "--ema", "0.9"]
    r = _torchrun(2, "train", "--out", str(tmp_path / "ddp"), *flags)
    assert r.returncode == 0, r.stderr[-3000:]
    single = run_cli("train", "--out", str(tmp_path / "one"), *flags)
    assert single.returncode == 0, single.stderr
    (a, _), (b, _) = (load_tensors(tmp_path / run / "checkpoint.safetensors")
                      for run in ("ddp", "one"))
    _assert_same_model(a, b)


@pytest.mark.slow
def test_the_cli_trains_evaluates_and_encodes_the_discrete_model(tmp_path: Path) -> None:
    run = tmp_path / "cat"
    r = run_cli("train", "--out", str(run), "--model", "categorical", "--latent-dim", "4",
                "--categorical-categories", "3", "--hidden", "32", "--epochs", "2",
                "--batch-size", "50")
    assert r.returncode == 0, r.stderr
    assert "val discrete ELBO" in r.stderr and (run / "latent_classes.png").exists()
    r = run_cli("evaluate", str(run), "--k", "20", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["latent_kind"] == "discrete" and "discrete model's" in report["evaluated_as"]
    assert "the discrete model's" in r.stdout
    r = run_cli("encode", str(run), "-o", str(tmp_path / "codes.npy"))
    assert r.returncode == 0, r.stderr
    probs = np.load(tmp_path / "codes.npy")
    assert probs.shape == (180, 4, 3) and np.allclose(probs.sum(-1), 1, atol=1e-5)
    r = run_cli("report", str(run), "-o", str(tmp_path / "report.html"))
    assert r.returncode == 0, r.stderr
    # the explorer: one slider per latent number, a decoded image for a one-hot code
    from fastapi.testclient import TestClient

    from vaekit.views.serve.app import create_app
    from vaekit.views.serve.session import ExplorerSession

    api = TestClient(create_app(ExplorerSession(run)), raise_server_exceptions=False)
    info = api.get("/api/info").json()
    assert api.get("/").status_code == 200 and len(info["sliders"]) == info["latent_dim"]
    one_hot = np.eye(3)[[0, 1, 2, 0]].reshape(-1).tolist()
    decoded = api.post("/api/decode", json={"z": one_hot})
    assert decoded.status_code == 200 and decoded.json()["x"].startswith("data:image/png")


@pytest.mark.parametrize(("flags", "message"), [
    (["--categorical-categories", "1"], "--categorical-categories must be an integer >= 2"),
    (["--categorical-estimator", "reinforce-loo"], "needs --iw-samples >= 2"),
    (["--categorical-temperature", "0"], "--categorical-temperature must be a finite number"),
])
def test_bad_flags_are_one_line_errors(tmp_path: Path, flags: list[str], message: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--out", str(tmp_path / "bad"), "--model", "categorical",
                 *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
