"""CUDA paths (training, bf16 autocast, evaluation): skipped where no GPU is present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.data import load_dataset
from vaekit.evaluate import log_likelihood

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SMALL = Config(hidden=(64,), latent_dim=4, epochs=2, batch_size=50, device="cuda")


@pytest.mark.parametrize("bf16", [False, True])
def test_training_on_the_gpu_matches_the_cpu_closely(tmp_path: Path, bf16: bool) -> None:
    gpu = vaekit.train(SMALL.replace(bf16=bf16), out=tmp_path / "gpu", progress=False)
    cpu = vaekit.train(SMALL.replace(device="cpu"), out=tmp_path / "cpu", progress=False)
    assert next(gpu.model.parameters()).is_cuda
    # different RNG streams and kernels: the same quality, not the same numbers
    assert gpu.history[-1]["val_elbo"] == pytest.approx(cpu.history[-1]["val_elbo"], abs=2.0)


def test_a_gpu_run_loads_on_the_cpu_and_resumes_on_the_gpu(tmp_path: Path) -> None:
    vaekit.train(SMALL.replace(epochs=1), out=tmp_path / "r", progress=False)
    model = vaekit.load(tmp_path / "r", device="cpu")
    assert not next(model.parameters()).is_cuda
    vaekit.train(resume=tmp_path / "r", epochs=2, progress=False)


def test_importance_sampling_on_the_gpu_agrees_with_the_cpu(tmp_path: Path) -> None:
    r = vaekit.train(SMALL.replace(epochs=1), out=tmp_path / "r", progress=False)
    x = load_dataset("digits").test[:64]
    x = (x > 0.5).float()
    on_gpu = log_likelihood(r.model, x, k=500)
    on_cpu = log_likelihood(vaekit.load(tmp_path / "r"), x, k=500)
    assert abs(on_gpu.mean - on_cpu.mean) < 3 * (on_gpu.stderr + on_cpu.stderr)
