"""The hierarchical VAE through the one trainer, run directory and CLI: reproducible, resumable
bit for bit, its stabilisers (weight average, update skipping, free bits per group) and its
per-group reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.cli import main
from vaekit.data import load_dataset
from vaekit.io import load_tensors
from vaekit.models import HierarchicalVAE
from vaekit.objectives import training_loss
from vaekit.train import loop
from vaekit.train.ema import WeightAverage

HVAE = Config(model="hvae", model_options={"hvae": {"latents": (4, 2), "widths": (32, 16)}},
              epochs=3, batch_size=50)


def _train(config: Config, run: Path, **kw: object) -> vaekit.TrainResult:
    return vaekit.train(config, out=run, progress=False, pictures=False, **kw)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_hierarchy(tmp_path: Path) -> None:
    a = _train(HVAE, tmp_path / "a")
    b = _train(HVAE, tmp_path / "b")
    assert isinstance(a.model, HierarchicalVAE)
    wa, wb = (load_tensors(tmp_path / r / "checkpoint.safetensors")[0] for r in ("a", "b"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["val_elbo"] for r in a.history] == [r["val_elbo"] for r in b.history]


CONV = Config(model="hvae-conv", model_options={"hvae-conv": {
    "widths": (8, 8), "groups": (1, 1), "latent_channels": 2}}, epochs=3, batch_size=50)


@pytest.mark.parametrize("family", ["dense", "conv"])
def test_a_hierarchy_with_a_weight_average_resumes_mid_epoch_bit_for_bit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str) -> None:
    config = (HVAE if family == "dense" else CONV).replace(ema=0.9, skip_threshold=1e6,
                                                           free_bits=0.1)
    whole = _train(config, tmp_path / "whole")
    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "_agree_to_stop", lambda self, stop:
                  (self.state.epoch, self.state.step_in_epoch) == (1, 7))
        with pytest.raises(loop.TrainingInterrupted):
            _train(config, tmp_path / "part")
    resumed = vaekit.train(resume=tmp_path / "part", progress=False, pictures=False)
    for name in ("checkpoint.safetensors", "model.safetensors"):
        w1, w2 = (load_tensors(tmp_path / r / name)[0] for r in ("whole", "part"))
        assert sorted(w1) == sorted(w2)
        assert all(torch.equal(w1[k], w2[k]) for k in w1), name
    assert any(k.startswith("ema.") for k in load_tensors(
        tmp_path / "part" / "checkpoint.safetensors")[0])
    assert [r["val_elbo"] for r in whole.history] == [r["val_elbo"] for r in resumed.history]


def test_the_weight_average_is_what_the_run_saves_and_validates(tmp_path: Path) -> None:
    result = _train(HVAE.replace(epochs=2, ema=0.99), tmp_path / "r")
    ckpt = load_tensors(tmp_path / "r" / "checkpoint.safetensors")[0]
    saved = load_tensors(tmp_path / "r" / "model.safetensors")[0]
    name = "bottom_up.0.0.weight"
    assert torch.equal(saved[f"model.{name}"], ckpt[f"ema.{name}"])  # best epoch = the last
    assert not torch.equal(saved[f"model.{name}"], ckpt[f"model.{name}"])
    x = load_dataset("digits").val
    loaded = vaekit.load(tmp_path / "r")
    torch.manual_seed(0)
    val = float(loaded.elbo((x > 0.5).float())["elbo"].mean())
    assert val == pytest.approx(result.history[-1]["val_elbo"], abs=2.0)


def test_the_weight_average_follows_its_formula() -> None:
    layer = torch.nn.Linear(2, 1)
    ema = WeightAverage(layer, decay=0.75)
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(4.0)
    ema.update()
    torch.testing.assert_close(ema.shadow[0], 0.75 * start + 0.25 * (start + 4.0))
    with ema.applied():
        torch.testing.assert_close(layer.weight.detach(), ema.shadow[0])
    torch.testing.assert_close(layer.weight.detach(), start + 4.0)


def test_updates_above_the_skip_threshold_are_skipped_and_counted(tmp_path: Path) -> None:
    """A threshold below every gradient norm skips every update: ten in a row roll back, and
    the rollbacks end in a diagnosis that names the threshold."""
    with pytest.raises(loop.TrainingDiverged, match="skip-threshold"):
        _train(HVAE.replace(skip_threshold=1e-6, epochs=1), tmp_path / "r")
    norms: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):  # type: ignore[no-untyped-def]
        norm = real(params, max_norm, *a, **k)
        norms.append(float(norm))
        return norm

    torch.nn.utils.clip_grad_norm_ = spy  # type: ignore[assignment]
    try:
        _train(HVAE.replace(epochs=1, grad_clip=0.0), tmp_path / "probe")  # no clipping: no norm
        assert not norms
        result = _train(HVAE.replace(epochs=1, grad_clip=0.0, skip_threshold=1e9),
                        tmp_path / "big")
    finally:
        torch.nn.utils.clip_grad_norm_ = real  # type: ignore[assignment]
    threshold = float(np.quantile(norms, 0.9))
    result = _train(HVAE.replace(epochs=1, grad_clip=0.0, skip_threshold=threshold),
                    tmp_path / "t")
    assert 0 < result.history[-1]["skipped_steps"] < len(norms)


def test_free_bits_floor_each_groups_kl() -> None:
    """With free bits lambda per group, a group whose batch KL is below lambda adds the
    constant lambda: the loss and its gradient are the reconstruction's alone."""
    torch.manual_seed(0)
    model = vaekit.build_model(HVAE.validate(), (64,))
    x = (torch.rand(8, 64) < 0.5).float()
    noise = model.draw_noise(1, 8, torch.Generator().manual_seed(0))

    def grads(loss_of: object) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        t = model.terms(x, noise=noise)
        loss = loss_of(t)  # type: ignore[operator]
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]

    with torch.no_grad():
        t = model.terms(x, noise=noise)
        assert all(0 < float(kl.mean()) < 5.0 for kl in t.kl_groups)
        torch.testing.assert_close(training_loss(t, free_bits=5.0), 5.0 * 2 - t.log_px_z.mean())
    floored = grads(lambda t: training_loss(t, free_bits=5.0))
    reconstruction = grads(lambda t: -t.log_px_z.mean())
    plain = grads(lambda t: training_loss(t))
    assert all(torch.equal(a, b) for a, b in zip(floored, reconstruction, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(plain, reconstruction, strict=True))


def test_every_epoch_and_evaluate_report_each_groups_kl_and_active_units(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _train(HVAE.replace(epochs=1), tmp_path / "r")
    row = result.history[-1]
    assert len(row["val_kl_groups"]) == 2 and len(row["val_active_units"]) == 2
    assert sum(row["val_kl_groups"]) == pytest.approx(row["val_kl"], abs=1e-3)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r"), "--k", "20", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["latent_groups"] == [4, 2]
    assert sum(report["kl_per_group"]) == pytest.approx(report["kl"], abs=1e-3)
    assert len(report["active_units_per_group"]) == 2
    assert "group 2 (top) (2 units)" in out


def test_every_command_works_on_a_hierarchy(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "r"
    assert main(["train", "--model", "hvae", "--hvae-latents", "4,2", "--hvae-widths", "32,16",
                 "--hvae-depth", "1", "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["model_options"] == {"hvae": {"latents": [4, 2], "widths": [32, 16],
                                                "depth": 1}}
    for temperature in ("0", "0.7"):
        assert main(["sample", str(run), "-n", "5", "--temperature", temperature,
                     "-o", str(tmp_path / f"s{temperature}.npy")]) == 0
    cold = np.load(tmp_path / "s0.npy")
    assert cold.shape == (5, 1, 8, 8) and np.allclose(cold, cold[:1])  # T=0: the mean path
    assert main(["encode", str(run), "-o", str(tmp_path / "c.npy")]) == 0
    assert np.load(tmp_path / "c.npy").shape[1:] == (2, 6)
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "r.png")]) == 0
    assert main(["score", str(run), "--k", "5", "-o", str(tmp_path / "a.npy")]) == 0
    assert main(["interpolate", str(run), "-o", str(tmp_path / "i.png")]) == 0
    capsys.readouterr()
    assert main(["info", str(run)]) == 0
    assert "hvae (latents 4,2, widths 32,16, depth 1)" in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0


def test_a_group_that_switches_off_is_reported_once(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = loop.Trainer(HVAE.replace(kl_warmup=2), load_dataset("digits"), progress=False)
    row = {"val_kl_groups": [5.0, 0.01], "val_active_units": [4, 0]}
    for epoch in (1, 3, 4, 5):
        trainer.state.epoch = epoch
        trainer._warn_switched_off(row)
    err = capsys.readouterr().err
    assert err.count("latent group 2 has switched off after epoch 3") == 1
    assert "group 1" not in err


def test_the_time_limit_stops_after_the_last_epoch_that_fits_and_the_run_resumes(
        tmp_path: Path) -> None:
    """A limit shorter than one epoch: the first epoch runs (its length is not known before),
    then training stops cleanly; resuming with a limit that fits everything finishes it."""
    run = tmp_path / "r"
    result = _train(HVAE.replace(epochs=3, time_limit=1e-6), run)
    assert len(result.history) == 1
    resumed = vaekit.train(resume=run, time_limit=0.0, progress=False, pictures=False)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
