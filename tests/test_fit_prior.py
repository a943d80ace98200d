"""Priors fitted afterwards to a trained model's codes (vaekit fit-prior): each kind on a VAE
and an autoencoder, honest likelihoods with the new prior, a new self-contained run, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import vaekit
from tests.conftest import TINY, run_cli
from vaekit.cli import main
from vaekit.data import load_dataset
from vaekit.evaluate import log_likelihood
from vaekit.io import load_tensors
from vaekit.models import Autoencoder
from vaekit.priors.diffusion import DiffusionPrior, cosine_schedule
from vaekit.priors.fitted import DISCRETE_KINDS, FITTED_PRIORS, GaussianPrior, log_prob_nats
from vaekit.run import load_run
from vaekit.train.fit_prior import PRIOR_CHECKPOINT, CodeSource, fit_prior


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A VAE and an autoencoder of the same nets, trained a few epochs on the digits."""
    base = tmp_path_factory.mktemp("fit-prior")
    flags = ["--hidden", "64", "--latent-dim", "4", "--epochs", "8", "--quiet"]
    out = {}
    for model in ("vae", "ae"):
        out[model] = base / model
        assert main(["train", "--model", model, "--out", str(out[model]), *flags]) == 0
    return out


def _codes(run: Path, seed: int = 5) -> torch.Tensor:
    model, info = load_run(run)
    x = load_dataset("digits").train
    x = (x > 0.5).float() if info.data.get("binarize") != "none" else x
    return CodeSource(model, x).draw(torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model", ["vae", "ae"])
# the discrete kinds fit a VQ-VAE's codes: tests/test_vqvae.py
@pytest.mark.parametrize("kind", sorted(set(FITTED_PRIORS) - set(DISCRETE_KINDS)))
def test_every_kind_writes_a_run_that_samples_and_fits_the_codes(
        runs: dict[str, Path], tmp_path: Path, kind: str, model: str) -> None:
    out = fit_prior(runs[model], kind, tmp_path / "new", options={}, epochs=5, progress=False)
    fitted, info = load_run(out)
    assert info.config.fitted_prior["kind"] == kind and fitted.can_sample
    assert fitted.sample(5, torch.Generator().manual_seed(0)).shape == (5, 1, 8, 8)
    # the encoder and decoder are the source run's, unchanged
    source = load_tensors(runs[model] / "model.safetensors")[0]
    new = load_tensors(out / "model.safetensors")[0]
    assert all(torch.equal(source[k], new[k]) for k in source if not k.startswith("model.prior"))
    if kind != "diffusion":  # an exact log p(z) (the diffusion's is a bound: tested below)
        codes = _codes(runs[model])
        fitted_log_pz = log_prob_nats(fitted.prior, codes)
        standard = torch.distributions.Normal(0.0, 1.0).log_prob(codes).sum(-1).mean()
        assert fitted_log_pz > float(standard)  # fitted to the codes: beats N(0, I) on them


def test_the_gaussian_is_the_codes_maximum_likelihood_gaussian() -> None:
    z = torch.randn(4000, 3) @ torch.tensor([[2.0, 0, 0], [0.5, 1, 0], [0, 0.3, 0.2]]) + 1.0
    prior = GaussianPrior(3)
    prior.fit(z)
    p = prior(None)
    torch.testing.assert_close(p.mean, z.mean(0).double().float(), atol=1e-5, rtol=0)
    torch.testing.assert_close(p.covariance_matrix, torch.cov(z.T), atol=1e-4, rtol=1e-4)


def test_a_fitted_prior_improves_the_vaes_likelihood_estimate(runs: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """The codes the decoder reads are not N(0, I): a prior fitted to them raises the
    importance-weighted log p(x), with the same decoder and encoder."""
    x = (load_dataset("digits").test > 0.5).float()
    before = log_likelihood(vaekit.load(runs["vae"]), x, k=100, seed=0).mean
    out = fit_prior(runs["vae"], "mog", tmp_path / "mog", options={}, progress=False)
    after = log_likelihood(vaekit.load(out), x, k=100, seed=0).mean
    assert after > before + 0.3, (before, after)


def test_an_autoencoder_samples_once_a_prior_is_fitted(runs: dict[str, Path],
                                                       tmp_path: Path) -> None:
    assert not vaekit.load(runs["ae"]).can_sample
    out = tmp_path / "mog"
    assert main(["fit-prior", str(runs["ae"]), "--kind", "mog", "--components", "3", "--out",
                 str(out), "--quiet"]) == 0
    model = vaekit.load(out)
    assert isinstance(model, Autoencoder) and model.can_sample
    assert main(["sample", str(out), "-o", str(tmp_path / "s.png")]) == 0


def test_an_interrupted_flow_fit_resumes_exactly(runs: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    whole = fit_prior(runs["vae"], "flow", tmp_path / "whole", options={}, epochs=4,
                      progress=False)
    from vaekit.train import fit_prior as module

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(module, "_write_run", killed)
        with pytest.raises(KeyboardInterrupt):
            fit_prior(runs["vae"], "flow", tmp_path / "part", options={}, epochs=2,
                      progress=False)
    part = tmp_path / "part"
    assert (part / PRIOR_CHECKPOINT).exists() and not (part / "config.json").exists()
    with pytest.raises(vaekit.errors.RunDirError):
        vaekit.load(part)  # an unfinished fit is never taken for a run
    with pytest.raises(vaekit.errors.ConfigError, match="lr differ"):
        fit_prior(runs["vae"], "flow", part, options={}, epochs=4, lr=0.01, resume=True,
                  progress=False)
    with pytest.raises(vaekit.errors.ConfigError, match="kind, diffusion_steps"):
        fit_prior(runs["vae"], "diffusion", part, options={}, epochs=4, resume=True,
                  progress=False)
    fit_prior(runs["vae"], "flow", part, options={}, epochs=4, resume=True, progress=False)
    w1, w2 = (load_tensors(d / "model.safetensors")[0] for d in (whole, part))
    assert sorted(w1) == sorted(w2) and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not (part / PRIOR_CHECKPOINT).exists()


def test_bad_fit_prior_requests_get_one_line(runs: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_bytes((runs["vae"] / "config.json").read_bytes())
    categorical = tmp_path / "categorical"  # its prior is its own (uniform or learned)
    assert main(["train", "--model", "categorical", "--latent-dim", "2",
                 "--categorical-categories", "3", "--hidden", "8", "--out", str(categorical),
                 *TINY[4:]]) == 0
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("mine")
    cases = [
        (["fit-prior", str(no_weights), "--kind", "mog", "--out", str(tmp_path / "a")],
         "model.safetensors is missing"),
        (["fit-prior", str(runs["vae"]), "--kind", "vamp", "--out", str(tmp_path / "b")],
         "unknown --kind 'vamp'"),
        (["fit-prior", str(runs["vae"]), "--kind", "mog", "--out", str(taken)],
         "already exists"),
        (["fit-prior", str(categorical), "--kind", "mog", "--out", str(tmp_path / "c")],
         "whose prior is its own"),
        (["fit-prior", str(runs["vae"]), "--kind", "flow", "--out", str(tmp_path / "d"),
          "--resume"], "does not exist"),
        (["fit-prior", str(runs["vae"]), "--kind", "mog", "--out", str(runs["vae"])],
         "is the source run"),
        (["fit-prior", str(runs["vae"]), "--kind", "diffusion", "--sampling-steps", "3",
          "--out", str(tmp_path / "e")], "DDIM needs at least 10 steps"),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, (argv, err)
    assert (taken / "x").read_text() == "mine"


# ---------------------------------------------------------------- the diffusion prior

def test_the_cosine_schedule_ends_in_noise() -> None:
    betas = cosine_schedule(100)
    abar = torch.cumprod(1 - betas, 0)
    assert betas.shape == (100,) and (betas > 0).all() and (betas <= 0.999).all()
    assert abar[0] > 0.999 and abar[-1] < 1e-4 and (abar[1:] < abar[:-1]).all()


@pytest.mark.parametrize("sampler, sampling_steps", [("ancestral", 0), ("ddim", 10),
                                                     ("ode", 0)])
def test_a_diffusion_fitted_to_gaussian_codes_samples_them_by_every_sampler(
        sampler: str, sampling_steps: int) -> None:
    """A correlated 2-D Gaussian with scales 0.5 and 3: after a short fit, ancestral sampling,
    DDIM in 10 of the 50 steps and the ODE give its mean, scales and correlation back. The
    deterministic samplers need the learning rate's decay: at a constant 3e-3 they drift by
    0.4 standard deviations (the EMA of `fit-prior` does the same work)."""
    if sampler == "ode":
        pytest.importorskip("torchdiffeq")
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    codes = torch.randn(4000, 2, generator=g) @ mix * torch.tensor([0.5, 3.0]) + \
        torch.tensor([2.0, -1.0])
    torch.manual_seed(0)
    prior = DiffusionPrior(2, steps=50, width=64, sampling_steps=sampling_steps,
                           sampler=sampler, tolerance=1e-4)
    prior.init_from_codes(codes)
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 800)
    for _ in range(800):
        loss = prior.training_loss(codes[torch.randint(len(codes), (256,), generator=g)], g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        decay.step()
    draws = prior(None).sample((4000,))
    scale = codes.std(0)
    assert ((draws.mean(0) - codes.mean(0)).abs() / scale < 0.25).all()
    ratio = draws.std(0) / scale
    assert ((ratio > 0.75) & (ratio < 1.35)).all(), ratio
    correlation = torch.corrcoef(draws.T)[0, 1] - torch.corrcoef(codes.T)[0, 1]
    assert abs(float(correlation)) < 0.1


def test_a_diffusion_fit_by_the_cli_evaluates_by_the_ode_and_the_trajectories(
        runs: dict[str, Path], tmp_path: Path) -> None:
    """fit-prior --sampler ode writes every option into the run, logs a validation loss per
    epoch, and stops at --time-limit; evaluate takes --sampler and --trajectories on it, the
    ODE's estimate is seeded only by --seed, and the M-trajectory bound rises with M."""
    pytest.importorskip("torchdiffeq")
    out = tmp_path / "diff"
    assert main(["fit-prior", str(runs["vae"]), "--kind", "diffusion", "--sampler", "ode",
                 "--width", "32", "--epochs", "50", "--time-limit", "0.01", "--out", str(out),
                 "--quiet"]) == 0
    record = vaekit.run.read_run_info(out).config.fitted_prior
    assert record["sampler"] == "ode" and record["denoiser"] == "residual"
    rows = (out / "prior_metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1 and "val_loss" in rows[0]  # the time limit: one epoch
    reports = []
    for flags in (["--seed", "1"], ["--seed", "1"], ["--seed", "2"],
                  ["--sampler", "ancestral"], ["--sampler", "ancestral", "--trajectories", "8"]):
        r = run_cli("evaluate", str(out), "--k", "4", "--n", "40", "--json", *flags)
        assert r.returncode == 0, r.stderr
        reports.append(json.loads(r.stdout.strip().splitlines()[-1])["log_likelihood"])
    assert reports[0] == reports[1] != reports[2]  # the seed, not the process, sets the draws
    assert reports[4] > reports[3]  # M = 8 trajectories: a tighter bound than one


def test_bad_diffusion_requests_get_one_line(runs: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    mog = fit_prior(runs["vae"], "mog", tmp_path / "mog", options={}, progress=False)
    diffusion = fit_prior(runs["vae"], "diffusion", tmp_path / "diff", options={"width": 16},
                          epochs=1, progress=False)
    cases = [
        (["evaluate", str(mog), "--k", "2", "--sampler", "ode"],
         "--sampler ode is for a run with a fitted diffusion prior"),
        (["sample", str(runs["vae"]), "-o", str(tmp_path / "s.png"), "--sampler", "ode"],
         "is for a run with a fitted diffusion prior"),
        (["evaluate", str(diffusion), "--k", "2", "--trajectories", "0"], "--trajectories 0"),
        (["evaluate", str(diffusion), "--k", "2", "--sampler", "ode", "--tolerance", "0"],
         "--tolerance 0.0"),
        (["fit-prior", str(runs["vae"]), "--kind", "diffusion", "--tolerance", "-1", "--out",
          str(tmp_path / "a")], "--tolerance -1.0"),
        (["fit-prior", str(runs["vae"]), "--kind", "diffusion", "--sampler", "euler", "--out",
          str(tmp_path / "b")], "--sampler euler"),
        (["fit-prior", str(runs["vae"]), "--kind", "flow", "--time-limit", "0", "--out",
          str(tmp_path / "c")], "--time-limit 0"),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, (argv, err)
