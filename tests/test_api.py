"""The Python API: runs fitted on in-memory arrays, saving what a model was trained with, and
what vaekit.fit shows while it works."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.errors import DataError, VaekitError

#: A model small enough to fit 300 x 6 in well under a second per epoch.
SMALL: dict[str, Any] = {"likelihood": "gaussian", "latent_dim": 2, "hidden": (8,),
                         "batch_size": 50}


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(300, 6))  # float64: fitted as float32


def _data_record(run: Path) -> dict[str, Any]:
    return json.loads((run / "config.json").read_text())["data"]


def _fit(x: np.ndarray, **options: Any) -> vaekit.VAE:
    return vaekit.fit(x, progress=False, **{**SMALL, **options})


# ---------------------------------------------------------------- runs fitted on arrays

def test_a_fitted_run_records_the_fingerprint_of_its_array(x: np.ndarray,
                                                           tmp_path: Path) -> None:
    _fit(x, epochs=1, out=tmp_path / "run")
    record = _data_record(tmp_path / "run")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    assert record["array_sha256"] == hashlib.sha256(x32.tobytes()).hexdigest()
    assert record["array_shape"] == [300, 6]


def test_a_fitted_run_is_an_array_run_even_from_a_config(x: np.ndarray, tmp_path: Path) -> None:
    """A Config's default data (digits) must not end up in the record of an array's run."""
    vaekit.fit(x, config=vaekit.Config(**SMALL, epochs=1), out=tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["data"] == "array" and "array_sha256" in _data_record(tmp_path / "run")


def test_commands_on_an_array_run_ask_for_data_in_one_line(
        x: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fit(x, epochs=1, out=tmp_path / "run")
    capsys.readouterr()
    for argv in (["evaluate", str(tmp_path / "run"), "--k", "2"],
                 ["encode", str(tmp_path / "run"), "-o", str(tmp_path / "c.npy")],
                 ["train", "--resume", str(tmp_path / "run"), "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vaekit: error: ") and len(err.splitlines()) == 1, err
        assert "trained on an in-memory array" in err and "unknown dataset" not in err
        how = "vaekit.fit(x, resume=" if argv[0] == "train" else "--data FILE.npy"
        assert how in err, err
    np.save(tmp_path / "x.npy", x)
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(tmp_path / "x.npy"),
                 "--k", "2"]) == 0


def test_resuming_from_python_with_the_same_array_continues_the_run_exactly(
        x: np.ndarray, tmp_path: Path) -> None:
    straight = _fit(x, epochs=2, out=tmp_path / "straight")
    _fit(x, epochs=1, out=tmp_path / "run")
    resumed = vaekit.fit(x, resume=tmp_path / "run", epochs=2, progress=False)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert len(vaekit.run.read_metrics(tmp_path / "run")) == 2
    with pytest.raises(DataError, match=r"vaekit.fit\(x, resume="):
        vaekit.train(resume=tmp_path / "run", epochs=3, progress=False)


@pytest.mark.parametrize(("change", "message"), [
    (lambda x: x[:-1], r"shape \(299, 6\), the run's was \(300, 6\)"),
    (lambda x: x + 1e-3, r"same shape \(300, 6\), different values"),
    (lambda x: x[::-1], r"same shape \(300, 6\), different values"),
])
def test_resuming_with_another_array_is_refused_and_changes_nothing(
        x: np.ndarray, tmp_path: Path, change: Any, message: str) -> None:
    _fit(x, epochs=1, out=tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(DataError, match="this is not the array .* was trained on: " + message):
        vaekit.fit(change(x), resume=tmp_path / "run", epochs=2, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_fit_resumes_only_runs_fitted_on_an_array(x: np.ndarray, tiny_run: Path,
                                                 tmp_path: Path) -> None:
    run = tmp_path / "digits"
    shutil.copytree(tiny_run, run)
    before = (run / "checkpoint.safetensors").read_bytes()
    with pytest.raises(VaekitError, match=r"trained on digits, not on an array .*vaekit.train"):
        vaekit.fit(x, resume=run, epochs=3, progress=False)
    assert (run / "checkpoint.safetensors").read_bytes() == before


# ---------------------------------------------------------------- save keeps the run record

def test_a_saved_copy_evaluates_exactly_as_the_run(tiny_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    vaekit.save(vaekit.load(tiny_run), tmp_path / "copy")
    assert _data_record(tmp_path / "copy") == _data_record(tiny_run)
    assert _data_record(tiny_run)["binarize"] == "dynamic"  # the case the issue saw
    reports = []
    for run in (tiny_run, tmp_path / "copy"):
        capsys.readouterr()
        assert main(["evaluate", str(run), "--k", "3", "--n", "50", "--json"]) == 0
        report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        reports.append({k: v for k, v in report.items() if k != "seconds"})
    assert reports[0] == reports[1]


def test_a_model_fresh_from_training_saves_its_run_record(x: np.ndarray, tmp_path: Path) -> None:
    model = _fit(x, epochs=1)  # no run directory
    vaekit.save(model, tmp_path / "copy")
    record = _data_record(tmp_path / "copy")
    assert record["binarize"] == "none" and record["array_shape"] == [300, 6]


def test_save_never_replaces_a_run_unless_asked(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "model.safetensors").read_bytes()
    other = vaekit.build_model(vaekit.Config(hidden=(32,), latent_dim=2), (1, 8, 8))
    with pytest.raises(VaekitError, match="already holds a run"):
        vaekit.save(other, run)
    assert (run / "model.safetensors").read_bytes() == before
    vaekit.save(other, run, overwrite=True)
    assert (run / "model.safetensors").read_bytes() != before


# ---------------------------------------------------------------- fit shows its progress

def test_fit_reports_each_epoch_unless_told_to_be_quiet(
        x: np.ndarray, capfd: pytest.CaptureFixture[str]) -> None:
    vaekit.fit(x, epochs=2, **SMALL)
    err = capfd.readouterr().err
    assert "epoch   1/2" in err and "epoch   2/2" in err and "ELBO" in err
    vaekit.fit(x, epochs=2, progress=False, **SMALL)
    assert capfd.readouterr().err == ""
