"""Nothing lost, nothing trusted: kills, signals, NaNs, full disks and hostile files."""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vaekit
from tests.conftest import run_cli
from vaekit import Config
from vaekit.data import load_dataset
from vaekit.errors import DataError, RunDirError, VaekitError
from vaekit.io import load_tensors
from vaekit.train import loop
from vaekit.train import setup as trainer_setup

FLAGS = ["--hidden", "64", "--latent-dim", "4", "--batch-size", "20", "--threads", "1",
         "--quiet"]


def _train_process(out: Path, epochs: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vaekit", "train", "--out", str(out),
                             "--epochs", str(epochs), *FLAGS], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def _epochs_done(run: Path) -> int:
    try:
        return len((run / "metrics.jsonl").read_text().splitlines())
    except FileNotFoundError:
        return 0


def _wait_for_epochs(run: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 120
    while _epochs_done(run) < n:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < deadline
        time.sleep(0.02)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_tensors(a / "checkpoint.safetensors")[0], load_tensors(
        b / "checkpoint.safetensors")[0]
    return all(torch.equal(wa[k], wb[k]) for k in wa if k.startswith(("model.", "optim.")))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 6-epoch run that the interrupted ones must reproduce bit for bit."""
    out = tmp_path_factory.mktemp("ref") / "run"
    r = run_cli("train", "--out", str(out), "--epochs", "6", *FLAGS)
    assert r.returncode == 0, r.stderr
    return out


def test_a_run_killed_with_sigkill_resumes_bit_for_bit(tmp_path: Path, reference: Path) -> None:
    run = tmp_path / "killed"
    proc = _train_process(run, 6)
    _wait_for_epochs(run, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _epochs_done(run) < 6
    r = run_cli("train", "--resume", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    assert _same_weights(run, reference)
    ours = [json.loads(x)["val_elbo"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    theirs = [json.loads(x)["val_elbo"] for x in
              (reference / "metrics.jsonl").read_text().splitlines()]
    assert ours == theirs


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_at_a_step_writes_a_checkpoint_and_says_how_to_resume(
        tmp_path: Path, reference: Path, sig: signal.Signals) -> None:
    run = tmp_path / "stopped"
    proc = _train_process(run, 6)
    _wait_for_epochs(run, 1, proc)
    time.sleep(0.05)  # most likely in the middle of an epoch
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume with: vaekit train --resume" in err and "Traceback" not in err
    r = run_cli("train", "--resume", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    assert _same_weights(run, reference)


SMALL = Config(hidden=(16,), latent_dim=2, epochs=2, batch_size=50)


@pytest.mark.parametrize("check_every", [1, 4])
def test_a_non_finite_loss_skips_the_update_and_is_counted(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          check_every: int) -> None:
    """Also with the host looking at the skip counters only every 4 steps, as on a GPU: the
    fused optimizer skips the update on the device in between."""
    monkeypatch.setattr(trainer_setup, "CPU_CHECK_EVERY", check_every)
    real = loop.LossModule.forward
    calls = {"n": 0}

    def sometimes_nan(self, x, noise, beta, condition=None):
        calls["n"] += 1
        loss, stats = real(self, x, noise, beta, condition)
        return (loss * float("nan"), stats) if calls["n"] in (3, 7) else (loss, stats)

    monkeypatch.setattr(loop.LossModule, "forward", sometimes_nan)
    r = vaekit.train(SMALL, out=tmp_path / "r", progress=False, pictures=False)
    assert r.history[-1]["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in r.model.parameters())


@pytest.mark.parametrize("check_every", [1, 4])
def test_repeated_faults_roll_back_then_stop_with_a_diagnosis(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             check_every: int) -> None:
    monkeypatch.setattr(trainer_setup, "CPU_CHECK_EVERY", check_every)
    real = loop.LossModule.forward
    monkeypatch.setattr(loop.LossModule, "forward",
                        lambda self, x, n, b, c=None: (real(self, x, n, b, c)[0] * float("inf"),
                                               real(self, x, n, b)[1]))
    with pytest.raises(loop.TrainingDiverged, match="learning rate too high"):
        vaekit.train(SMALL, out=tmp_path / "r", progress=False, pictures=False)


#: 72 steps an epoch on the digits (1,455 training images)
FAULTY = Config(hidden=(16,), latent_dim=2, epochs=2, batch_size=20)


def _inject_nans(monkeypatch: pytest.MonkeyPatch, calls: range) -> dict:
    """Make the loss NaN at the forward calls in `calls` (counting from 1) until the first
    rollback. Records every call's input, the call count at the rollback, and the examples
    that each epoch's sums count."""
    seen: dict = {"inputs": [], "rollback_at": None, "examples": []}
    forward, rollback, end_epoch = (loop.LossModule.forward, loop.Trainer._rollback,
                                    loop.Trainer._end_epoch)

    def nan_forward(self, x, noise, beta, condition=None):
        seen["inputs"].append(x.clone())
        loss, stats = forward(self, x, noise, beta, condition)
        if len(seen["inputs"]) in calls and seen["rollback_at"] is None:
            loss = loss * float("nan")
        return loss, stats

    def noted_rollback(self, reason: str) -> None:
        seen["rollback_at"] = len(seen["inputs"])
        rollback(self, reason)

    def noted_end_epoch(self, start: float) -> None:
        seen["examples"].append(float(self.epoch_stats[-1]))
        end_epoch(self, start)

    monkeypatch.setattr(loop.LossModule, "forward", nan_forward)
    monkeypatch.setattr(loop.Trainer, "_rollback", noted_rollback)
    monkeypatch.setattr(loop.Trainer, "_end_epoch", noted_end_epoch)
    return seen


def _replayed(seen: dict, since: int) -> bool:
    """Whether the inputs after the rollback repeat those from call `since` + 1 on."""
    r = seen["rollback_at"]
    before, after = seen["inputs"][since:r], seen["inputs"][r:r + r - since]
    return len(after) == len(before) > 0 and all(map(torch.equal, before, after))


@pytest.mark.parametrize("check_every", [1, 50])
def test_ten_skips_in_a_row_between_two_reads_of_the_flags_roll_back_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        check_every: int) -> None:
    """With the host reading the device's skip flags every 50 steps, as on a GPU, a run of 12
    skips (steps 127-138) that starts and ends between two reads (steps 123 and 146) rolls
    back just as when the host looks at every step; the warning names the first faulty step."""
    monkeypatch.setattr(trainer_setup, "CPU_CHECK_EVERY", check_every)
    _inject_nans(monkeypatch, range(127, 139))
    r = vaekit.train(FAULTY, out=tmp_path / "r", progress=False, pictures=False)
    err = capsys.readouterr().err
    assert err.count("rolled back") == 1, err
    assert "non-finite loss or gradient at step 127;" in err
    assert len(r.history) == 2


@pytest.mark.parametrize("check_every", [1, 50])
def test_a_rollback_restores_the_whole_state_at_the_end_of_the_last_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        check_every: int) -> None:
    """Weights, optimiser, data position, the epoch's sums and the generators: the epoch runs
    again from its start on the same data and noise, and its sums count each example once."""
    monkeypatch.setattr(trainer_setup, "CPU_CHECK_EVERY", check_every)
    seen = _inject_nans(monkeypatch, range(127, 137))
    r = vaekit.train(FAULTY, out=tmp_path / "r", progress=False, pictures=False)
    assert "rolled back to the end of epoch 1 with the learning rate halved" in \
        capsys.readouterr().err
    assert _replayed(seen, since=73)  # epoch 2 began at call 74 (72 batches of 20, one of 15)
    assert seen["examples"] == [1455, 1455]
    assert [row["step"] for row in r.history] == [73, 146]


@pytest.mark.parametrize("check_every", [1, 50])
def test_after_a_resume_a_rollback_returns_to_the_resumed_mid_epoch_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        check_every: int) -> None:
    """A run stopped at epoch 2, step 10 and resumed: ten faults in a row go back to that
    point (not to the end of epoch 1, not to where the faults happened), with the partial
    sums of its first 10 steps."""
    run = tmp_path / "r"
    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "_agree_to_stop",
                  lambda self, stop: (self.state.epoch, self.state.step_in_epoch) == (1, 10))
        with pytest.raises(loop.TrainingInterrupted, match="epoch 2, step 10"):
            vaekit.train(FAULTY, out=run, progress=False, pictures=False)
    monkeypatch.setattr(trainer_setup, "CPU_CHECK_EVERY", check_every)
    seen = _inject_nans(monkeypatch, range(3, 13))  # after two good steps
    r = vaekit.train(resume=run, progress=False, pictures=False)
    assert "rolled back to epoch 2, step 10 with the learning rate halved" in \
        capsys.readouterr().err
    assert _replayed(seen, since=0)
    assert seen["examples"] == [1455]
    assert [row["step"] for row in r.history] == [73, 146]


def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    run = tmp_path / "r"
    vaekit.train(SMALL.replace(epochs=1), out=run, progress=False, pictures=False)
    before = (run / "checkpoint.safetensors").read_bytes()
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(VaekitError, match="No space left on device"):
        vaekit.train(resume=run, epochs=2, progress=False, pictures=False)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert (run / "checkpoint.safetensors").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    vaekit.train(resume=run, epochs=2, progress=False, pictures=False)  # and it resumes


class _Payload:
    """Unpickling this creates a marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickles_in_a_run_directory_never_run(
        tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vaekit.cli import main

    marker = tmp_path / "PWNED"
    evil = pickle.dumps(_Payload(marker))
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl"):
        run = tmp_path / name
        shutil.copytree(tiny_run, run)
        (run / name).write_bytes(evil)
        for argv in (["sample", str(run), "-o", str(tmp_path / "s.png")],
                     ["evaluate", str(run)], ["info", str(run)],
                     ["train", "--resume", str(run), "--epochs", "3", "--quiet"]):
            code = main(argv)  # an uncaught exception (a traceback) fails the test
            assert code in (0, 2), (name, argv, capsys.readouterr().err)
    evil_npy = tmp_path / "evil.npy"
    evil_npy.write_bytes(evil)
    with pytest.raises(DataError):
        load_dataset(str(evil_npy))
    assert not marker.exists()


def test_runs_from_an_incompatible_version_are_refused(tmp_path: Path, tiny_run: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["format_version"] = 99
    (run / "config.json").write_text(json.dumps(cfg))
    r = run_cli("sample", str(run), "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "run format 99" in r.stderr


def test_truncated_safetensors_is_refused(tmp_path: Path, tiny_run: Path) -> None:
    run = tmp_path / "t"
    shutil.copytree(tiny_run, run)
    raw = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    r = run_cli("sample", str(run), "-o", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "not a valid safetensors file" in r.stderr


@pytest.mark.parametrize("damage", ["unknown counter", "no generator state"])
def test_a_checkpoint_with_a_malformed_trainer_state_is_refused(tmp_path: Path, tiny_run: Path,
                                                                damage: str) -> None:
    from vaekit.io import save_tensors

    run = tmp_path / "bad"
    shutil.copytree(tiny_run, run)
    tensors, meta = load_tensors(run / "checkpoint.safetensors")
    assert meta is not None
    if damage == "unknown counter":
        meta["state"]["run_payload"] = 1
    else:
        del tensors["rng.noise"]
    save_tensors(run / "checkpoint.safetensors", tensors, meta)
    r = run_cli("train", "--resume", str(run), "--epochs", "3", "--quiet")
    assert r.returncode == 2, r.stderr
    assert "trainer state is incomplete or malformed" in r.stderr
    assert "Traceback" not in r.stderr


def _valid_files(tmp: Path) -> dict[str, bytes]:
    import io

    from safetensors.torch import save

    x = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    npy, npz = io.BytesIO(), io.BytesIO()
    np.save(npy, x)
    np.savez(npz, train=x)
    return {".npy": npy.getvalue(), ".npz": npz.getvalue(),
            ".safetensors": save({"model.a": torch.ones(3)}, metadata={"json": "{}"})}


@settings(max_examples=150, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from([".npy", ".npz", ".safetensors"]), data=st.data())
def test_fuzzed_files_give_data_or_a_clean_error(tmp_path: Path, kind: str, data) -> None:
    raw = bytearray(_valid_files(tmp_path)[kind])
    how = data.draw(st.sampled_from(["flip", "truncate", "random"]))
    if how == "flip":
        for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[i] = data.draw(st.integers(0, 255))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw = bytearray(data.draw(st.binary(max_size=200)))
    path = tmp_path / f"f{kind}"
    path.write_bytes(bytes(raw))
    try:
        if kind == ".safetensors":
            load_tensors(path)
        else:
            load_dataset(str(path), val_fraction=0.2)
    except (DataError, RunDirError):
        pass


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_the_step_is_flagged_by_a_non_finite_loss_or_gradient_alone(grad_clip: float) -> None:
    """Without clipping the loss joins the gradients in one fused check; either alone, a NaN
    or an Inf, flags the step."""
    from vaekit import Config
    from vaekit.data import load_dataset
    from vaekit.train.loop import Trainer

    trainer = Trainer(Config(data="digits", hidden=(8,), latent_dim=2, grad_clip=grad_clip),
                      load_dataset("digits"), None, progress=False)
    params = trainer._params

    def flag(loss: float, grad: float = 0.0) -> float:
        for p in params:  # clipping rescales the gradients in place: fresh ones each time
            p.grad = torch.zeros_like(p)
        params[-1].grad[0] = grad
        return trainer._flag_non_finite(torch.tensor(loss)).item()

    assert flag(1.5) == 0
    for bad in (float("nan"), float("inf")):
        assert flag(bad) == 1
        assert flag(1.5, grad=bad) == 1
