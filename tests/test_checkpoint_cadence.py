"""Checkpoints on a time cadence, honest seconds, and every row of an epoch seen.

A run writes its checkpoint after the first epoch, every --checkpoint-every seconds, at the end,
on a signal, after a rollback and when --time-limit stops it; the checkpoint alone is enough to
resume, best weights and metrics line included. An epoch's last, partial batch is a step.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from tests.conftest import run_cli
from vaekit import Config
from vaekit.io import load_tensors
from vaekit.run import read_run_info
from vaekit.train import loop, saving

SMALL = Config(hidden=(16,), latent_dim=2, epochs=6, batch_size=100)


def _count_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The epoch (completed epochs) at each checkpoint written."""
    epochs: list[int] = []
    write = saving.write_checkpoint

    def counted(path, model, optimizer, checkpoint, world_size):
        epochs.append(checkpoint.state.epoch)
        write(path, model, optimizer, checkpoint, world_size)

    monkeypatch.setattr(saving, "write_checkpoint", counted)
    return epochs


def test_checkpoints_come_after_the_first_epoch_and_at_the_end_not_every_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    epochs = _count_checkpoints(monkeypatch)
    vaekit.train(SMALL, out=tmp_path / "cadence", progress=False, pictures=False)
    assert epochs == [1, 6]
    epochs.clear()
    vaekit.train(SMALL.replace(checkpoint_every=0), out=tmp_path / "every", progress=False,
                 pictures=False)
    assert epochs == [1, 2, 3, 4, 5, 6]


def test_the_cadence_is_in_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the clock moving 25 s an epoch and a 60-second cadence: epochs 1, 4 (75 s after 1),
    and the last."""
    clock = iter(range(0, 10_000, 25))
    now = {"t": 0.0}
    epochs = _count_checkpoints(monkeypatch)
    end_epoch = loop.Trainer._end_epoch

    def ticking_end_epoch(self, start: float) -> bool:
        now["t"] = float(next(clock))
        return end_epoch(self, start)

    monkeypatch.setattr(loop.Trainer, "_end_epoch", ticking_end_epoch)
    monkeypatch.setattr(saving.time, "monotonic", lambda: now["t"])
    vaekit.train(SMALL, out=tmp_path / "r", progress=False, pictures=False)
    assert epochs == [1, 4, 6]


def test_seconds_include_the_checkpoints_io_and_io_seconds_say_how_much(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write = saving.write_checkpoint

    def slow(*args, **kwargs):
        time.sleep(0.3)
        write(*args, **kwargs)

    monkeypatch.setattr(saving, "write_checkpoint", slow)
    r = vaekit.train(SMALL.replace(epochs=3), out=tmp_path / "r", progress=False,
                     pictures=False)
    rows = [json.loads(x) for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]
    io = [row["io_seconds"] for row in rows]
    assert io[0] >= 0.3 and io[1] == 0.0 and io[2] >= 0.3  # checkpoints: epochs 1 and 3
    assert all(row["seconds"] >= row["io_seconds"] for row in rows)
    assert rows[0]["seconds"] >= 0.3


def test_the_checkpoint_alone_restores_the_best_weights_and_its_metrics_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill after the checkpoint, before model.safetensors and the metrics line reach the
    disk: the resume writes both again from the checkpoint."""
    validate = loop.Trainer.validate

    def best_at_epoch_2(self):  # the validation score peaks at epoch 2 of 4
        row = validate(self)
        row["val_elbo"] = -abs(self.state.epoch - 1) - 100.0
        return row

    monkeypatch.setattr(loop.Trainer, "validate", best_at_epoch_2)
    run = tmp_path / "r"
    vaekit.train(SMALL.replace(epochs=4), out=run, progress=False, pictures=False)
    best, meta = load_tensors(run / "model.safetensors")
    assert meta is not None and meta["epoch"] == 2
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "model.safetensors").unlink()
    (run / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")
    vaekit.train(resume=run, progress=False, pictures=False)
    again, meta = load_tensors(run / "model.safetensors")
    assert meta is not None and meta["epoch"] == 2
    assert set(again) == set(best) and all(torch.equal(again[k], best[k]) for k in best)
    restored = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in restored] == [1, 2, 3, 4]
    assert restored[3]["val_elbo"] == json.loads(lines[3])["val_elbo"]


def test_a_time_limit_ends_the_run_with_a_checkpoint(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    epochs = _count_checkpoints(monkeypatch)
    monkeypatch.setattr(loop.Trainer, "_out_of_time",
                        lambda self, last: self.state.epoch == 3)
    r = vaekit.train(SMALL.replace(checkpoint_every=3600), out=tmp_path / "r",
                     progress=False, pictures=False)
    assert len(r.history) == 3 and epochs == [1, 3]


def test_a_rollback_writes_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    epochs = _count_checkpoints(monkeypatch)
    forward, calls = loop.LossModule.forward, {"n": 0}

    def nan_in_epoch_3(self, x, noise, beta, condition=None):
        calls["n"] += 1
        loss, stats = forward(self, x, noise, beta, condition)
        return (loss * float("nan") if 31 <= calls["n"] <= 40 else loss), stats

    monkeypatch.setattr(loop.LossModule, "forward", nan_in_epoch_3)
    r = vaekit.train(SMALL.replace(epochs=4, checkpoint_every=3600), out=tmp_path / "r",
                     progress=False, pictures=False)  # 15 steps an epoch: faults in epoch 3
    assert epochs == [1, 2, 4]  # after the rollback to the end of epoch 2, and at the end
    assert len(r.history) == 4


# ---------------------------------------------------------------- every row of an epoch


def _rows_seen(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    batches: list[torch.Tensor] = []
    forward = loop.LossModule.forward

    def noted(self, x, noise, beta, condition=None):
        batches.append(x.clone())
        return forward(self, x, noise, beta, condition)

    monkeypatch.setattr(loop.LossModule, "forward", noted)
    return batches


def test_the_last_partial_batch_is_a_step_and_every_row_is_seen_once_an_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.arange(160 * 3, dtype=torch.float32).view(160, 3) / 480
    batches = _rows_seen(monkeypatch)
    vaekit.fit(x, likelihood="gaussian", standardize="off", hidden=(8,), latent_dim=1,
               epochs=2, batch_size=100, val_fraction=0, out=tmp_path / "r", progress=False)
    assert [len(b) for b in batches] == [100, 60, 100, 60]
    for epoch in (batches[:2], batches[2:]):
        seen = torch.cat(epoch)
        assert torch.equal(seen[seen[:, 0].argsort()], x)
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["step"] for row in rows] == [2, 4]


def test_drop_last_leaves_the_partial_batch_out(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(160, 3)
    batches = _rows_seen(monkeypatch)
    vaekit.fit(x, likelihood="gaussian", hidden=(8,), latent_dim=1, epochs=1, batch_size=100,
               val_fraction=0, drop_last=True, progress=False)
    assert [len(b) for b in batches] == [100]


def test_a_run_written_before_partial_batches_keeps_dropping_them(tiny_run: Path,
                                                                  tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    raw = json.loads((run / "config.json").read_text())
    del raw["config"]["drop_last"], raw["config"]["checkpoint_every"]
    (run / "config.json").write_text(json.dumps(raw))
    assert read_run_info(run).config.drop_last is True
    assert read_run_info(tiny_run).config.drop_last is False


def test_a_table_says_how_many_steps_an_epoch_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    csv = tmp_path / "t.csv"
    rows = ["a,b"] + [f"{v:.3f},{'xy'[i % 2]}" for i, v in enumerate(rng.normal(size=200))]
    csv.write_text("\n".join(rows) + "\n")
    r = run_cli("train", "--data", str(csv), "--epochs", "1", "--hidden", "8", "--latent-dim",
                "1", "--threads", "1", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert "162 training rows, batch 100: 2 steps per epoch (the last of 62 rows)" in r.stderr


# ---------------------------------------------------------------- --variance shared


def test_a_standardised_linear_shared_variance_model_says_it_is_not_ppca(
        tmp_path: Path, ppca_data: np.ndarray) -> None:
    np.save(tmp_path / "x.npy", ppca_data[:400])
    flags = ["train", "--data", str(tmp_path / "x.npy"), "--net", "linear", "--likelihood",
             "gaussian", "--variance", "shared", "--latent-dim", "3", "--epochs", "1",
             "--threads", "1"]
    standardised = run_cli(*flags, "--out", str(tmp_path / "a"))
    assert standardised.returncode == 0, standardised.stderr
    assert "not probabilistic PCA; --standardize off makes it so" in standardised.stderr
    raw = run_cli(*flags, "--standardize", "off", "--out", str(tmp_path / "b"))
    assert raw.returncode == 0, raw.stderr
    assert "probabilistic PCA" not in raw.stderr
    help_text = run_cli("train", "--help").stdout
    assert "probabilistic PCA only with --standardize off" in " ".join(help_text.split())
