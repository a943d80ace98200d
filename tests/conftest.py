"""Shared fixtures: tests never touch the network and keep to small, fast models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["VAEKIT_NO_DOWNLOAD"] = "1"

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO.parent / "shared" / "data" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Flags of a model small enough to train in about a second on the digits.
TINY = ["--hidden", "32", "--latent-dim", "2", "--epochs", "2", "--batch-size", "50", "--quiet"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def run_cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """`python -m vaekit ARGS` in a subprocess, as a user would run it."""
    full_env = {**os.environ, "VAEKIT_NO_DOWNLOAD": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory trained for two epochs on the digits."""
    from vaekit.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


def ppca_draw(seed: int = 0) -> np.ndarray:
    """4,000 draws from a pPCA model in 12 dimensions with 3 latent factors: the README's data
    (seed 0), or another draw of the same size."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(12, 3)) * np.linspace(2.0, 0.5, 3)
    z = rng.normal(size=(4000, 3))
    return (z @ w.T + rng.normal(size=12) + 0.5 * rng.normal(size=(4000, 12))).astype(np.float32)


@pytest.fixture
def ppca_data() -> np.ndarray:
    """The README's pPCA data."""
    return ppca_draw(0)
