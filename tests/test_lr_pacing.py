"""Pacing the learning rate: a linear warm-up, and --schedule-over time, a schedule that ends
when --time-limit is up.

The clock is faked (every reading of the loop's clock advances it 10 s), so an epoch always
measures the same seconds and the plan is a pure function of the config: the run must stop at
the horizon it planned, with its cosine at 0, and a run stopped and resumed must follow the same
plan bit for bit."""

from __future__ import annotations

import itertools
import types
from pathlib import Path

import pytest
import torch

import vaekit
from tests.test_train import _record_lrs
from vaekit import Config
from vaekit.errors import ConfigError
from vaekit.io import load_tensors
from vaekit.train import loop
from vaekit.train.schedules import time_horizon

#: 100 epochs that will not fit: each takes 30 s of the fake clock, the limit is 4 minutes
TIMED = Config(hidden=(16,), latent_dim=2, epochs=100, batch_size=100, lr_schedule="cosine",
               schedule_over="time", time_limit=4.0)


def _fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop's perf_counter: 10 s later at every reading (3 readings an epoch)."""
    ticks = itertools.count(0.0, 10.0)
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_the_horizon_is_the_epochs_the_time_left_holds() -> None:
    """E = epoch + floor((limit - spent) / mean of the last 3 epochs), capped by --epochs."""
    assert time_horizon(2, [30.0, 30.0], 240.0, 100) == 2 + 6
    assert time_horizon(4, [90.0, 10.0, 20.0, 30.0], 240.0, 100) == 4 + 4  # mean of 10, 20, 30
    assert time_horizon(2, [30.0, 30.0], 240.0, 5) == 5
    assert time_horizon(3, [100.0, 100.0, 100.0], 240.0, 100) == 3  # over time: stop now
    assert time_horizon(0, [], 240.0, 100) == 100


def test_a_cosine_over_the_time_limit_ends_at_zero_when_the_time_is_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _fake_clock(monkeypatch)
    lrs = _record_lrs(monkeypatch)
    result = vaekit.train(TIMED, out=tmp_path / "r", progress=False, pictures=False)
    epochs = len(result.history)
    assert 4 <= epochs < 100  # 240 s of 30-s epochs: stopped by the plan, not --epochs
    assert sum(row["seconds"] for row in result.history) <= 240.0
    steps = len(lrs) // epochs
    assert lrs[-1] < 0.01 * TIMED.lr  # the cosine ran to its end with the time
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # refitted each epoch, without a jump
    assert lrs[steps * (epochs - 1)] < 0.5 * TIMED.lr  # the last epoch is the schedule's last
    err = capsys.readouterr().err
    assert f"ran 100.0% of it, to epoch {epochs}" in err


def test_over_epochs_the_same_run_is_cut_off_and_says_how_much_it_ran(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _fake_clock(monkeypatch)
    lrs = _record_lrs(monkeypatch)
    result = vaekit.train(TIMED.replace(schedule_over="epochs"), out=tmp_path / "r",
                          progress=False, pictures=False)
    epochs = len(result.history)
    assert epochs < 100 and lrs[-1] > 0.9 * TIMED.lr  # the cosine barely started
    err = capsys.readouterr().err
    assert f"ran {epochs / 100:.1%} of it, to epoch {epochs}" in err
    assert "--schedule-over time would run all of it" in err


@pytest.mark.parametrize("where", [(1, 15), (3, 7)])
def test_a_run_stopped_and_resumed_follows_the_same_plan_bit_for_bit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: tuple[int, int]) -> None:
    """Stopped (as by a signal) at the last step of epoch 2, before its end, or mid-epoch 4,
    then resumed: the same learning rates, the same stopping epoch and the same weights as the
    run left alone (an epoch of 1,455 digits in batches of 100 is 15 steps)."""
    _fake_clock(monkeypatch)
    lrs = _record_lrs(monkeypatch)
    whole = vaekit.train(TIMED, out=tmp_path / "whole", progress=False, pictures=False)
    expected = list(lrs)
    lrs.clear()
    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "_agree_to_stop",
                  lambda self, stop: (self.state.epoch, self.state.step_in_epoch) == where)
        with pytest.raises(loop.TrainingInterrupted):
            vaekit.train(TIMED, out=tmp_path / "part", progress=False, pictures=False)
    _fake_clock(monkeypatch)  # a new process: its clock starts again
    resumed = vaekit.train(resume=tmp_path / "part", progress=False, pictures=False)
    assert lrs == expected
    assert len(resumed.history) == len(whole.history)
    w1 = load_tensors(tmp_path / "whole" / "checkpoint.safetensors")[0]
    w2 = load_tensors(tmp_path / "part" / "checkpoint.safetensors")[0]
    assert all(torch.equal(w1[k], w2[k]) for k in w1 if not k.startswith("rng"))


def test_over_time_needs_a_time_limit_and_a_schedule_of_progress() -> None:
    with pytest.raises(ConfigError, match="give it --time-limit"):
        TIMED.replace(time_limit=0.0).validate()
    with pytest.raises(ConfigError, match="absolute epochs"):
        TIMED.replace(lr_schedule="iwae").validate()


def test_the_cli_refuses_it_without_a_time_limit_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    from vaekit.cli import main

    assert main(["train", "--schedule-over", "time", "--lr-schedule", "cosine"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--time-limit" in err[0]


def test_the_warmup_rises_linearly_then_hands_over_to_the_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--lr-warmup 2 over a cosine of 4 epochs (15 steps each): step i of the first two epochs
    runs at lr * cos-factor * (i + 1) / 30, and from epoch 3 at the cosine's own rate; a run
    stopped mid-warm-up resumes at the same rates."""
    import math

    config = TIMED.replace(schedule_over="epochs", time_limit=0.0, epochs=4, lr_warmup=2.0)
    lrs = _record_lrs(monkeypatch)
    vaekit.train(config, out=tmp_path / "w", progress=False, pictures=False)
    t = [i / 15 for i in range(60)]
    expected = [config.lr * 0.5 * (1 + math.cos(math.pi * ti / 4)) * min(1.0, (ti + 1 / 15) / 2)
                for ti in t]
    assert lrs == pytest.approx(expected, rel=1e-12)
    whole = list(lrs)
    lrs.clear()
    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "_agree_to_stop",
                  lambda self, stop: (self.state.epoch, self.state.step_in_epoch) == (1, 4))
        with pytest.raises(loop.TrainingInterrupted):
            vaekit.train(config, out=tmp_path / "p", progress=False, pictures=False)
    vaekit.train(resume=tmp_path / "p", progress=False, pictures=False)
    assert lrs == whole
    with pytest.raises(ConfigError, match="lr-warmup"):
        config.replace(lr_warmup=-1.0)
