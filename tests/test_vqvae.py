"""The VQ-VAE (--model vqvae): its bound log p(x|c(x)) + log p(c(x)) with the uniform or the
fitted prior, the code space's epoch metrics, sampling only through a fitted prior, FSQ behind
the same interface, an exact resume, and one-line refusals of what it cannot be given."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.cli import main
from vaekit.errors import ConfigError, DataError
from vaekit.io import load_tensors
from vaekit.models import VectorQuantizedVAE, build_model
from vaekit.priors.autoregressive import CodeTransformer

IMAGE = (1, 8, 8)
SMALL = {"codebook_size": 16, "code_dim": 4, "widths": (8, 8), "blocks": 1}


def _model(**options: object) -> VectorQuantizedVAE:
    torch.manual_seed(0)
    model = build_model(Config(model="vqvae", model_options={"vqvae": {**SMALL, **options}})
                        .validate(), IMAGE)
    assert isinstance(model, VectorQuantizedVAE)
    return model.eval()


def _x(n: int = 6) -> torch.Tensor:
    return (torch.rand(n, *IMAGE, generator=torch.Generator().manual_seed(1)) < 0.5).float()


@pytest.mark.parametrize("fitted", [False, True])
def test_the_bound_is_the_likelihood_of_the_code_plus_its_prior(fitted: bool) -> None:
    """log w = log p(x | c(x)) + log p(c(x)) for every sample, log q = 0; uniform p(c) gives
    -G log K, a fitted one its exact log p(c)."""
    model, x = _model(), _x()
    if fitted:
        model.prior = CodeTransformer(model.latent_dim, model.codebook_size, width=16,
                                      heads=2)
    with torch.no_grad():
        t = model.terms(x, k=3)
        codes = model.encode(x).mean  # (B, G) indices
        log_px_c = model.decode(codes).log_prob(x)
    assert codes.shape == (6, 4) and bool((codes == codes.round()).all())
    expected_prior = model.prior(None).log_prob(codes) if fitted else \
        torch.full((6,), -4 * math.log(16))
    torch.testing.assert_close(t.log_pz[0], expected_prior)
    torch.testing.assert_close(t.log_w, (log_px_c + expected_prior).expand(3, -1))
    assert bool((t.log_qz == 0).all())
    torch.testing.assert_close(t.kl, -expected_prior)


def test_fsq_gives_the_same_code_grid_interface() -> None:
    model = _model(quantizer="fsq", levels=(3, 2, 2))
    assert model.codebook_size == 12 and model.code_dim == 3
    with torch.no_grad():
        codes = model.encode(_x()).mean
        t = model.terms(_x())
    assert bool(((codes >= 0) & (codes < 12)).all())
    torch.testing.assert_close(t.log_pz[0], torch.full((6,), -4 * math.log(12)))
    assert model.decode_mean(codes).shape == (6, *IMAGE)


def test_the_code_space_statistics_count_one_epochs_training_codes() -> None:
    model = _model().train()
    for _ in range(2):
        model.terms(_x(10))  # grad enabled, training: counted
    with torch.no_grad():
        model.terms(_x(10))  # evaluation: not counted
    assert float(model.code_counts.sum()) == 2 * 10 * 4
    metrics = model.epoch_metrics()
    assert 0 < metrics["code_usage"] <= 1 and 1 <= metrics["code_perplexity"] <= 16
    assert float(model.code_counts.sum()) == 0 and model.epoch_metrics() == {}


def test_decode_refuses_what_is_not_a_code_grid() -> None:
    model = _model()
    for bad, message in ((torch.zeros(2, 5), "shape"), (torch.full((2, 4), 16.0), r"\[0, 16\)"),
                         (torch.full((2, 4), 0.5), "integers")):
        with pytest.raises(DataError, match=message):
            model.decode(bad)


@pytest.mark.parametrize(("config", "shape", "message"), [
    (Config(model="vqvae"), (20,), "needs images"),
    (Config(model="vqvae", model_options={"vqvae": {"widths": (8, 8, 8)}}), (1, 28, 28),
     "divisible by 8"),
    (Config(model="vqvae", objective="iwae", iw_samples=2), (1, 8, 8), "--objective elbo"),
])
def test_bad_settings_are_refused_in_one_line(config: Config, shape: tuple[int, ...],
                                              message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(config.validate(), shape)


VQ = Config(model="vqvae", epochs=3, batch_size=60, lr=3e-3, model_options={"vqvae": {
    "codebook_size": 32, "code_dim": 8, "widths": (16, 16), "blocks": 1}})


def test_a_resumed_vq_run_continues_exactly(tmp_path: Path) -> None:
    """The codebook's EMA state, its k-means start and its code counts are in the checkpoint:
    two epochs and a resume to three are three epochs."""
    whole = vaekit.train(VQ, out=tmp_path / "whole", progress=False, pictures=False)
    vaekit.train(VQ.replace(epochs=2), out=tmp_path / "part", progress=False, pictures=False)
    resumed = vaekit.train(resume=tmp_path / "part", epochs=3, progress=False, pictures=False)
    w1, w2 = (load_tensors(tmp_path / run / "checkpoint.safetensors")[0]
              for run in ("whole", "part"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1 if not k.startswith("rng"))
    assert [r["val_elbo"] for r in whole.history] == [r["val_elbo"] for r in resumed.history]
    assert all("code_usage" in r and "code_perplexity" in r for r in whole.history)


def test_the_cli_trains_fits_a_prior_samples_evaluates_and_encodes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, fitted = tmp_path / "vq", tmp_path / "vq-ar"
    assert main(["train", "--out", str(run), "--model", "vqvae", "--epochs", "2",
                 "--vqvae-codebook-size", "32", "--vqvae-code-dim", "8", "--vqvae-widths",
                 "16,16", "--batch-size", "60", "--quiet"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["code_usage"] <= 1 for r in rows)
    capsys.readouterr()
    # before a prior: one line naming the command
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fit-prior" in err and "--kind autoregressive" in err
    assert not (tmp_path / "s.png").exists()
    assert main(["evaluate", str(run), "--k", "5", "--json"]) == 0
    uniform = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert uniform["kl"] == pytest.approx(4 * math.log(32), rel=1e-5)
    assert "point mass" in uniform["evaluated_as"] and "uniform" in uniform["evaluated_as"]
    # a continuous prior for discrete codes is refused
    assert main(["fit-prior", str(run), "--kind", "mog", "--out", str(tmp_path / "m")]) == 2
    assert "--kind autoregressive" in capsys.readouterr().err
    assert main(["fit-prior", str(run), "--kind", "autoregressive", "--out", str(fitted),
                 "--epochs", "3", "--transformer-width", "32", "--quiet"]) == 0
    assert main(["sample", str(fitted), "-n", "4", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (4, 1, 8, 8)
    capsys.readouterr()
    assert main(["evaluate", str(fitted), "--k", "5", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert "CodeTransformer" in report["evaluated_as"] and "bound log p(x|c)" in out
    assert report["kl"] < uniform["kl"]  # the fitted prior gives the codes more probability
    assert report["reconstruction"] == pytest.approx(uniform["reconstruction"], rel=1e-6)
    assert main(["encode", str(run), "-o", str(tmp_path / "codes.npy")]) == 0
    codes = np.load(tmp_path / "codes.npy")
    assert codes.shape == (180, 4) and codes.dtype == np.int64 and codes.max() < 32
    # the report and the explorer take both runs, with and without a prior
    from fastapi.testclient import TestClient

    from vaekit.views.serve.app import create_app
    from vaekit.views.serve.session import ExplorerSession

    for name, r in (("uniform", run), ("fitted", fitted)):
        assert main(["report", str(r), "-o", str(tmp_path / f"{name}.html")]) == 0
        api = TestClient(create_app(ExplorerSession(r)), raise_server_exceptions=False)
        info = api.get("/api/info").json()
        assert info["latent_dim"] == 4 and api.get("/").status_code == 200
        decoded = api.post("/api/decode", json={"z": [0, 1, 2, 3]})
        assert decoded.status_code == 200 and decoded.json()["x"].startswith("data:image/png")


def test_fit_prior_refuses_a_discrete_prior_for_continuous_codes(
        tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit-prior", str(tiny_run), "--kind", "autoregressive", "--out",
                 str(tmp_path / "ar")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "discrete codes" in err
    assert not (tmp_path / "ar").exists()
