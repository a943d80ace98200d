"""A run directory written by the previous release (vaekit 0.1.0, before the checkpoint cadence,
the partial batch and the package moves) still loads, evaluates to the same numbers and resumes
exactly as that release resumed it. `tests/fixtures/run-0.1.0/expected.json` says how the run
and the expected numbers were made."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import vaekit
from tests.conftest import run_cli
from vaekit.io import load_tensors
from vaekit.run import read_run_info

FIXTURE = Path(__file__).parent / "fixtures" / "run-0.1.0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run, ignore=shutil.ignore_patterns("expected.json"))
    return run


def _model_digest(path: Path) -> str:
    tensors, _ = load_tensors(path)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        if name.startswith("model."):
            digest.update(name.encode())
            digest.update(tensors[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_it_loads_and_samples(old_run: Path) -> None:
    model = vaekit.load(old_run)
    assert model.sample(4).shape == (4, 1, 8, 8)
    assert read_run_info(old_run).config.drop_last is True  # as that release trained


def test_it_evaluates_to_the_numbers_that_release_gave(old_run: Path) -> None:
    r = run_cli("evaluate", str(old_run), "--k", "20", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    for key, value in EXPECTED["evaluate_k20"].items():
        assert report[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def _cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def test_it_resumes_bit_for_bit_as_that_release_did(old_run: Path) -> None:
    """The validation ELBOs are the release's, exactly, on any CPU; the weights' digest is the
    one recorded for this CPU's vendor, where there is one (float kernels differ in the last
    bits between CPU families, so a digest holds on the family that wrote it)."""
    r = run_cli("train", "--resume", str(old_run), "--epochs", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    assert [row["val_elbo"] for row in rows] == EXPECTED["resumed_val_elbo"]
    expected = EXPECTED["resumed_to_3_epochs_model_sha256_by_cpu_vendor"].get(_cpu_vendor())
    if expected is not None:
        assert _model_digest(old_run / "checkpoint.safetensors") == expected
