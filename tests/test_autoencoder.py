"""The plain autoencoder (--model ae): a deterministic code on the model contract, trained on
reconstruction, with no likelihood and no samples until a density is fitted to its codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vaekit
from vaekit import Config, build_model
from vaekit.data import load_dataset
from vaekit.distributions import PointMass
from vaekit.errors import NoLikelihoodError
from vaekit.evaluate import log_likelihood
from vaekit.io import load_tensors
from vaekit.models import Autoencoder
from vaekit.objectives import training_loss
from vaekit.train import loop

AE = Config(model="ae", latent_dim=4, hidden=(32,), epochs=3, batch_size=50)


def _model() -> Autoencoder:
    model = build_model(AE, (1, 8, 8))
    assert isinstance(model, Autoencoder)
    return model


def _x(n: int = 5) -> torch.Tensor:
    return (torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.5).float()


def test_the_code_is_a_point_mass_and_reconstruction_decodes_it() -> None:
    model, x = _model(), _x()
    q = model.encode(x)
    assert isinstance(q, PointMass) and q.mean.shape == (5, 4)
    assert torch.equal(q.variance, torch.zeros(5, 4))
    assert torch.equal(q.rsample((3,)), q.mean.expand(3, 5, 4))
    torch.testing.assert_close(model.reconstruct(x), model.decode_mean(q.mean))
    assert model.noise_dim == 0 and model.draw_noise(2, 5).shape == (2, 5, 0)


def test_the_loss_is_the_reconstruction_negative_log_likelihood_alone() -> None:
    model, x = _model(), _x()
    t = model.terms(x, k=3)
    assert t.log_px_z.shape == (3, 5) and torch.equal(t.log_px_z[0], t.log_px_z[2])
    expected = -model.decode(model.encode(x).mean).log_prob(x).mean()
    torch.testing.assert_close(training_loss(t), expected)
    model.zero_grad(set_to_none=True)
    training_loss(model.terms(x)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_it_has_no_likelihood_and_says_so() -> None:
    model, x = _model(), _x()
    with pytest.raises(NoLikelihoodError, match="no likelihood"):
        _ = model.terms(x).log_w
    with pytest.raises(NoLikelihoodError, match="no likelihood"):
        log_likelihood(model, x, k=10)
    with pytest.raises(NoLikelihoodError, match="fit-prior"):
        model.sample(4)
    assert not model.can_sample


def _train(config: Config, out: Path, **kwargs: object) -> vaekit.TrainResult:
    return vaekit.train(config, out=out, progress=False, **kwargs)  # type: ignore[arg-type]


def test_it_reconstructs_better_than_a_vae_of_the_same_nets(tmp_path: Path) -> None:
    """No rate to pay: on the same nets and budget, log p(x|f(x)) beats the VAE's
    E_q[log p(x|z)] (the VAE trades reconstruction for a KL; the AE does not)."""
    ae = _train(AE.replace(epochs=15), tmp_path / "ae", pictures=False)
    vae = _train(AE.replace(model="vae", epochs=15), tmp_path / "vae", pictures=False)
    ae_recon = ae.history[-1]["val_reconstruction"]
    vae_recon = vae.history[-1]["val_reconstruction"]
    assert ae.history[-1]["val_kl"] == 0.0
    assert ae_recon > ae.history[0]["val_reconstruction"]  # it learns
    assert ae_recon > vae_recon + 1.0, (ae_recon, vae_recon)


def test_an_autoencoder_run_resumes_mid_epoch_bit_for_bit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _train(AE, tmp_path / "whole", pictures=False)
    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "_agree_to_stop", lambda self, stop:
                  (self.state.epoch, self.state.step_in_epoch) == (1, 7))
        with pytest.raises(loop.TrainingInterrupted):
            _train(AE, tmp_path / "part", pictures=False)
    resumed = vaekit.train(resume=tmp_path / "part", progress=False, pictures=False)
    w1, w2 = (load_tensors(tmp_path / r / "checkpoint.safetensors")[0] for r in ("whole", "part"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert [r["val_elbo"] for r in whole.history] == [r["val_elbo"] for r in resumed.history]


def test_training_writes_reconstructions_but_no_samples(tmp_path: Path) -> None:
    _train(AE.replace(epochs=1), tmp_path / "r")
    assert (tmp_path / "r" / "reconstructions.png").exists()
    assert not (tmp_path / "r" / "samples.png").exists()
    data = load_dataset("digits")
    loaded = vaekit.load(tmp_path / "r")
    assert isinstance(loaded, Autoencoder)
    assert loaded.encode(data.test[:3]).mean.shape == (3, 4)
