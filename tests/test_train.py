"""The training loop: reproducible from a seed, resumable exactly, and saved runs reload."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.data import load_dataset
from vaekit.io import load_tensors, save_tensors
from vaekit.run import read_metrics
from vaekit.train import loop
from vaekit.train.adam import AdamStep
from vaekit.train.schedules import LR_SCHEDULES

SMALL = Config(hidden=(32,), latent_dim=2, epochs=3, batch_size=50)
STEPS = 30  # an epoch of SMALL: 1,455 training digits, 29 batches of 50 and one of 5
TRAIN_ROWS = 1455

#: The schedules' formulas, written out: factor of --lr at progress p of the run
FORMULAS: dict[str, Callable[[float], float]] = {
    "cosine": lambda p: 0.5 * (1 + math.cos(math.pi * p)),
    "step": lambda p: 0.1 ** ((p >= 0.5) + (p >= 0.75)),
}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / "checkpoint.safetensors")[0]


def _record_lrs(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The learning rate of every optimiser step, from here on."""
    lrs: list[float] = []
    real = AdamStep.__call__

    def step(self: AdamStep) -> None:
        lrs.append(self.optimizer.param_groups[0]["lr"])
        real(self)

    monkeypatch.setattr(AdamStep, "__call__", step)
    return lrs


def _stop_at(monkeypatch: pytest.MonkeyPatch, epoch: int, step: int) -> None:
    """Stop training (as a signal does) after `step` steps of epoch `epoch` + 1."""
    monkeypatch.setattr(loop.Trainer, "_agree_to_stop",
                        lambda self, stop: (self.state.epoch, self.state.step_in_epoch) ==
                        (epoch, step))


def _times(first: int, last: int) -> list[float]:
    """t = epoch + step / steps of each step of epochs first .. last - 1 (from 0)."""
    return [e + j / STEPS for e in range(first, last) for j in range(STEPS)]


def test_the_same_seed_gives_identical_runs(tmp_path: Path) -> None:
    a = vaekit.train(SMALL, out=tmp_path / "a", progress=False, pictures=False)
    b = vaekit.train(SMALL, out=tmp_path / "b", progress=False, pictures=False)
    vaekit.train(SMALL.replace(seed=1), out=tmp_path / "c", progress=False, pictures=False)
    wa, wb, wc = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa if k.startswith("model."))
    assert [r["train_elbo"] for r in a.history] == [r["train_elbo"] for r in b.history]


def test_resuming_continues_exactly_where_the_run_stopped(tmp_path: Path) -> None:
    whole = vaekit.train(SMALL.replace(epochs=4), out=tmp_path / "whole", progress=False,
                         pictures=False)
    vaekit.train(SMALL.replace(epochs=2), out=tmp_path / "part", progress=False, pictures=False)
    resumed = vaekit.train(resume=tmp_path / "part", epochs=4, progress=False, pictures=False)
    w1, w2 = _weights(tmp_path / "whole"), _weights(tmp_path / "part")
    assert all(torch.equal(w1[k], w2[k]) for k in w1 if not k.startswith("rng"))
    assert [r["val_elbo"] for r in whole.history] == [r["val_elbo"] for r in resumed.history]
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_resume_refuses_to_change_the_model(tmp_path: Path) -> None:
    vaekit.train(SMALL.replace(epochs=1), out=tmp_path / "r", progress=False, pictures=False)
    with pytest.raises(vaekit.VaekitError, match="cannot change --latent-dim"):
        vaekit.train(resume=tmp_path / "r", latent_dim=5)


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    result = vaekit.train(SMALL.replace(epochs=1), out=tmp_path / "r", progress=False)
    loaded = vaekit.load(tmp_path / "r")
    x = load_dataset("digits").test[:10]
    torch.manual_seed(3)
    a = result.model.elbo(x)["elbo"]
    torch.manual_seed(3)
    b = loaded.elbo(x)["elbo"]
    assert torch.equal(a, b)
    assert torch.equal(result.model.reconstruct(x), loaded.reconstruct(x))
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
                 "samples.png", "reconstructions.png", "curves.png"):
        assert (tmp_path / "r" / name).is_file(), name


def test_fit_an_array_in_a_few_lines(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    model = vaekit.fit(x, likelihood="gaussian", latent_dim=2, hidden=(16,), epochs=3,
                       out=tmp_path / "fit")
    assert model.sample(4).shape == (4, 6)
    assert model.encode(torch.from_numpy(x[:5])).mean.shape == (5, 2)
    again = vaekit.load(tmp_path / "fit")
    assert torch.equal(again.reconstruct(torch.from_numpy(x[:5])),
                       model.reconstruct(torch.from_numpy(x[:5])))
    vaekit.save(model, tmp_path / "copy")
    assert torch.equal(vaekit.load(tmp_path / "copy").decoder[0][0].weight,
                       model.decoder[0][0].weight)


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_the_kl_weight_warms_up_and_the_lr_follows_its_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str) -> None:
    """--kl-warmup 2: the KL weight rises linearly from 0 over two epochs, then stays at 1; the
    lr follows the schedule's formula at every step, at progress t / 3 (t = epoch + step /
    steps)."""
    betas: list[float] = []
    forward = loop.LossModule.forward

    def noted_forward(self, x, noise, beta, condition=None):
        betas.append(float(beta))
        return forward(self, x, noise, beta, condition)

    monkeypatch.setattr(loop.LossModule, "forward", noted_forward)
    lrs = _record_lrs(monkeypatch)
    r = vaekit.train(SMALL.replace(kl_warmup=2, lr_schedule=schedule), out=tmp_path / "r",
                     progress=False, pictures=False)
    times = _times(0, 3)
    assert betas == pytest.approx([min(1.0, t / 2) for t in times], abs=1e-12)
    assert lrs == pytest.approx([SMALL.lr * FORMULAS[schedule](t / 3) for t in times],
                                rel=1e-12)
    assert r.history[-1]["train_elbo"] > r.history[0]["train_elbo"] - 5


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_resuming_with_more_epochs_stretches_the_rest_of_the_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, schedule: str) -> None:
    """A 4-epoch run stopped at epoch 3, step 5 (t0 = 2 + 5/29, progress p0 = t0 / 4) and
    resumed with --epochs 8: the lr goes on from where it was, never rising, and the rest of
    the schedule is spread over the epochs left, p(t) = p0 + (1 - p0)(t - t0)/(8 - t0), so it
    ends at epoch 8."""
    config, run = SMALL.replace(epochs=4, lr_schedule=schedule), tmp_path / "r"
    lrs = _record_lrs(monkeypatch)
    with monkeypatch.context() as m:
        _stop_at(m, 2, 5)
        with pytest.raises(loop.TrainingInterrupted):
            vaekit.train(config, out=run, progress=False, pictures=False)
    before = list(lrs)
    lrs.clear()
    vaekit.train(resume=run, epochs=8, progress=False, pictures=False)
    t0 = 2 + 5 / STEPS
    p0 = t0 / 4
    assert lrs == pytest.approx([config.lr * FORMULAS[schedule](
        p0 + (1 - p0) * (t - t0) / (8 - t0)) for t in _times(2, 8)[5:]], rel=1e-12)
    assert lrs[0] <= before[-1]
    whole = before + lrs
    assert all(a >= b for a, b in zip(whole, whole[1:]))
    assert lrs[-1] < 1e-4 * config.lr if schedule == "cosine" else \
        lrs[-1] == pytest.approx(0.01 * config.lr)


def test_an_ended_schedule_extended_warns_and_restart_schedule_restarts_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A finished cosine run (lr 0) extended goes on at lr 0, with a warning that names the
    lr and the command that restarts the schedule; `--restart-schedule` restarts it from --lr
    over the added epochs (a warm restart) and needs added epochs and --resume."""
    from vaekit.cli import main

    config, a, b = SMALL.replace(epochs=2, lr_schedule="cosine"), tmp_path / "a", tmp_path / "b"
    vaekit.train(config, out=a, progress=False, pictures=False)
    shutil.copytree(a, b)
    lrs = _record_lrs(monkeypatch)
    vaekit.train(resume=a, epochs=3, progress=False, pictures=False)
    err = capsys.readouterr().err
    assert "schedule ended at epoch 2, so the added epochs run at its final lr 0." in err
    assert f"vaekit train --resume {a} --epochs 3 --restart-schedule" in err
    assert set(lrs) == {0.0}
    lrs.clear()
    assert main(["train", "--resume", str(b), "--epochs", "4", "--restart-schedule",
                 "--quiet"]) == 0
    assert lrs == pytest.approx([config.lr * FORMULAS["cosine"]((t - 2) / 2)
                                 for t in _times(2, 4)], rel=1e-12)
    assert lrs[0] == config.lr
    assert "schedule ended" not in capsys.readouterr().err
    assert main(["train", "--resume", str(b), "--epochs", "4", "--restart-schedule"]) == 2
    assert "vaekit: error: --restart-schedule needs --epochs above 4" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "c"), "--restart-schedule"]) == 2
    assert "applies only with --resume" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_the_iwae_schedule_steps_down_at_epochs_1_4_13_40() -> None:
    """Burda et al.'s schedule: stage i starts at epoch (3^i - 1) / 2 and lasts 3^i epochs at
    lr x 10^(-i/7), whatever the run's length (its progress plays no part)."""
    iwae = LR_SCHEDULES["iwae"]
    starts = [0, 1, 4, 13, 40, 121, 364]
    for stage, (start, end) in enumerate(zip(starts, starts[1:])):
        for epoch in (start, start + 0.5, end - 1e-9):
            assert iwae(0.0, epoch) == iwae(0.7, epoch) == 10 ** (-stage / 7), epoch


def test_a_training_runs_lr_follows_the_iwae_schedule(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step of a 5-epoch run, and metrics.jsonl: epoch 1 at --lr, epochs 2-4 at
    lr x 10^(-1/7), epoch 5 at lr x 10^(-2/7)."""
    import json

    lrs = _record_lrs(monkeypatch)
    vaekit.train(SMALL.replace(epochs=5, lr_schedule="iwae"), out=tmp_path / "r",
                 progress=False, pictures=False)
    stages = [0, 1, 1, 1, 2]
    assert lrs == [SMALL.lr * 10 ** (-stages[e] / 7) for e in range(5) for _ in range(STEPS)]
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").open()]
    assert [row["lr"] for row in rows] == [SMALL.lr * 10 ** (-i / 7) for i in stages]


def test_a_checkpoint_from_before_schedule_segments_and_three_stats_slots_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Older checkpoints kept four epoch sums (the first unused) and no schedule segments.
    Stopped mid-epoch and resumed with more epochs, such a checkpoint continues exactly as the
    new one does: the schedule's horizon is the epochs in the run's config.json."""
    new, old = tmp_path / "new", tmp_path / "old"
    with monkeypatch.context() as m:
        _stop_at(m, 1, 5)
        with pytest.raises(loop.TrainingInterrupted):
            vaekit.train(SMALL.replace(epochs=4, lr_schedule="cosine"), out=new, progress=False,
                         pictures=False)
    shutil.copytree(new, old)
    tensors, meta = load_tensors(old / "checkpoint.safetensors")
    assert meta is not None
    tensors["epoch.stats"] = torch.cat([torch.zeros(1, dtype=torch.float64),
                                        tensors["epoch.stats"]])
    del meta["state"]["schedule"]
    save_tensors(old / "checkpoint.safetensors", tensors, meta)
    for run in (new, old):
        vaekit.train(resume=run, epochs=6, progress=False, pictures=False)
    w_new, w_old = _weights(new), _weights(old)
    assert all(torch.equal(w_new[k], w_old[k]) for k in w_new if k.startswith("model."))
    val_elbo = [[row["val_elbo"] for row in read_metrics(run)] for run in (new, old)]
    assert len(val_elbo[0]) == 6 and val_elbo[0] == val_elbo[1]


def test_the_progress_bar_writes_no_carriage_returns_off_a_terminal(tmp_path: Path) -> None:
    """With stderr sent to a file or pipe, the log holds the per-epoch lines and no bar."""
    import subprocess
    import sys

    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:  # bytes: text mode would turn a "\r" into a "\n"
        code = subprocess.run([sys.executable, "-m", "vaekit", "train", "--out",
                               str(tmp_path / "r"), "--hidden", "16", "--latent-dim", "2",
                               "--epochs", "2", "--threads", "1"], stderr=stderr,
                              stdout=subprocess.DEVNULL, timeout=300).returncode
    err = log.read_bytes()
    assert code == 0, err
    assert b"\r" not in err
    assert b"epoch   1/2  train ELBO" in err and b"epoch   2/2  train ELBO" in err


def test_beta_weights_the_kl(tmp_path: Path) -> None:
    plain = vaekit.train(SMALL, out=tmp_path / "b1", progress=False, pictures=False)
    heavy = vaekit.train(SMALL.replace(beta=4.0), out=tmp_path / "b4", progress=False,
                         pictures=False)
    assert heavy.history[-1]["train_kl"] < 0.8 * plain.history[-1]["train_kl"]


def test_fit_without_out_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    vaekit.fit(np.random.default_rng(0).random((100, 4)).astype(np.float32), epochs=1,
               hidden=(8,), latent_dim=2)
    assert list(tmp_path.iterdir()) == []


def test_static_binarization_fixes_the_training_images(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Each training image is binarized once: every input is 0 or 1, and two epochs' inputs
    hold no more distinct rows than there are training images (dynamic binarization draws
    about twice as many)."""
    inputs: list[torch.Tensor] = []
    forward = loop.LossModule.forward

    def noted_forward(self, x, noise, beta, condition=None):
        inputs.append(x.clone())
        return forward(self, x, noise, beta, condition)

    monkeypatch.setattr(loop.LossModule, "forward", noted_forward)
    r = vaekit.train(SMALL.replace(binarize="static", epochs=2), out=tmp_path / "s",
                     progress=False, pictures=False)
    rows = torch.cat(inputs).flatten(1)
    assert set(rows.unique().tolist()) == {0.0, 1.0}
    assert len(rows) == 2 * TRAIN_ROWS
    assert len(rows.unique(dim=0)) <= len(load_dataset("digits").train)
    assert np.isfinite(r.history[0]["val_elbo"])


@pytest.mark.parametrize("skip_at", [None, 3])
def test_the_lean_adam_step_is_torchs_adam_step(skip_at: int | None) -> None:
    """AdamStep calls torch's fused kernel directly: the parameters and the optimizer state
    are bit-identical to optimizer.step()'s, with learning-rate changes, a parameter that gets
    no gradient, and a step skipped through found_inf."""
    from vaekit.train.adam import AdamStep

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3),
                                  torch.nn.Linear(2, 2))  # the last layer gets no gradient
        opt = torch.optim.Adam(net.parameters(), lr=1e-2, fused=True)
        opt.found_inf = torch.zeros(())  # type: ignore[attr-defined]
        return net, opt

    (net_a, opt_a), (net_b, opt_b) = make(), make()
    lean = AdamStep(opt_b)
    torch_steps = {"n": 0}
    real_step = opt_b.step

    def counted_step() -> None:
        torch_steps["n"] += 1
        real_step()

    opt_b.step = counted_step  # type: ignore[method-assign]
    x = torch.randn(6, 5)
    for i in range(6):
        for net, opt, step in ((net_a, opt_a, opt_a.step), (net_b, opt_b, lean)):
            opt.param_groups[0]["lr"] = 1e-2 / (i + 1)
            opt.found_inf.fill_(float(i == skip_at))  # type: ignore[attr-defined]
            opt.zero_grad(set_to_none=True)
            net[:3](x).square().sum().backward()
            step()
    assert torch_steps["n"] == 1  # only the first, which creates the state
    for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(opt_a.state.values(), opt_b.state.values(), strict=True):
        assert all(torch.equal(a[key], b[key]) for key in ("step", "exp_avg", "exp_avg_sq"))


def test_compiled_training_is_one_graph_and_trains_the_same_model(tmp_path: Path) -> None:
    """--compile traces the whole loss as one graph (a graph break would cost a second call and
    its overhead at every step) and trains the same model as eager execution, up to the float
    rounding of fused kernels."""
    import warnings

    from vaekit.train.loop import LossModule

    config = SMALL.replace(epochs=1)
    model = vaekit.build_model(config, (64,))
    x = torch.bernoulli(torch.rand(5, 64))
    loss_module = LossModule(model)
    loss_module(x, torch.zeros(1, 5, 2), 1.0)  # the trainer's warm-up: torch's KL table
    explained = torch._dynamo.explain(loss_module)(x, torch.randn(1, 5, 2), torch.tensor(1.0))
    assert explained.graph_break_count == 0, explained.break_reasons

    eager = vaekit.train(config, save=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
        compiled = vaekit.train(config.replace(compile=True), save=False, progress=False)
    for a, b in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("flag", ["--flush-denormal", "--no-flush-denormal"])
def test_a_training_process_flushes_subnormals_on_every_thread(tmp_path: Path, flag: str) -> None:
    """Adam's moments of always-zero inputs decay into subnormal floats, which are slow. The
    flush is a per-thread flag, so it must be set before torch starts its threads: a large
    product, which torch splits across threads, shows whether every thread has it."""
    import subprocess
    import sys

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormal floats")
    torch.set_flush_denormal(False)
    script = ("import sys, torch; from vaekit.cli import entry; torch.set_num_threads(2); "
              "code = entry(); "
              "print(int((torch.full((1 << 20,), 1e-40) * 1.0).count_nonzero()), code)")
    r = subprocess.run([sys.executable, "-c", script, "train", "--out", str(tmp_path / "r"),
                        "--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--quiet",
                        flag], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    nonzero, code = map(int, r.stdout.split()[-2:])
    assert code == 0
    assert (nonzero == 0) == (flag == "--flush-denormal")


def test_a_call_from_python_leaves_the_callers_float_arithmetic_alone(tmp_path: Path) -> None:
    from vaekit.cli import main

    assert main(["train", "--out", str(tmp_path / "r"), "--hidden", "16", "--latent-dim", "2",
                 "--epochs", "1", "--quiet"]) == 0
    vaekit.train(SMALL.replace(epochs=1), progress=False, save=False)
    assert int((torch.full((1 << 20,), 1e-40) * 1.0).count_nonzero()) == 1 << 20
