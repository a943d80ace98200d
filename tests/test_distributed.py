"""torchrun: two CPU processes (gloo) train the same model as one process with the same global
batch, and only rank 0 writes the run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli
from vaekit.io import load_tensors

# --drop-last: the 1,455 training digits leave a partial batch of 15, which two processes trim
# to 14 (a multiple of 2); one process would use all 15 (see Trainer._epoch_batches)
FLAGS = ["--hidden", "32", "--latent-dim", "3", "--epochs", "2", "--batch-size", "40",
         "--drop-last", "--threads", "1", "--quiet"]


def _torchrun(nproc: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VAEKIT_NO_DOWNLOAD": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={nproc}", "-m", "vaekit", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def _assert_same_model(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """The same weights up to float summation order."""
    keys = sorted(k for k in a if k.startswith("model."))
    assert keys and keys == sorted(k for k in b if k.startswith("model."))
    for k in keys:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
@pytest.mark.parametrize("extra", [
    [], ["--free-bits", "0.3"],
    # 0.1 nats: group 1's KL crosses the floor in epoch 2, group 2's stays below it (at 0.3,
    # a KL that hovers at the floor flips one decision by float summation order)
    ["--model", "hvae", "--hvae-latents", "3,2", "--hvae-widths", "32,16", "--free-bits", "0.1",
     "--ema", "0.9", "--tensorboard"],
    # each process takes its rows' classes: the one-hot labels are sliced like x and the noise
    ["--condition", "label"],
    # k-means starts and dead-code restarts from the global batch, the EMA from its sums
    ["--model", "vqvae", "--vqvae-widths", "8,16", "--vqvae-codebook-size", "32",
     "--vqvae-code-dim", "4", "--vqvae-restart-below", "0.9"],
    ["--model", "vqvae", "--vqvae-quantizer", "fsq", "--vqvae-levels", "3,3",
     "--vqvae-widths", "8,16"]],
    ids=["elbo", "free-bits", "hierarchy", "conditional", "vqvae", "fsq"])
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path,
                                                            extra: list[str]) -> None:
    """Also with free bits, whose floor is decided on the global batch's KL of each unit (a
    dimension; a group of a hierarchy), for a hierarchy with a weight average, writing
    TensorBoard's events from rank 0 only, and for the VQ-VAE (its codebook's start, restarts
    and EMA from the global batch) and FSQ."""
    flags = FLAGS if "--model" not in extra else [f for f in FLAGS if f not in (
        "--hidden", "32", "--latent-dim", "3")]
    r = _torchrun(2, "train", "--out", str(tmp_path / "ddp"), *flags, *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    single = run_cli("train", "--out", str(tmp_path / "one"), *flags, *extra)
    assert single.returncode == 0, single.stderr
    (a, meta_a), (b, meta_b) = (load_tensors(tmp_path / run / "checkpoint.safetensors")
                                for run in ("ddp", "one"))
    assert (meta_a or {}).get("world_size") == 2 and (meta_b or {}).get("world_size") == 1
    _assert_same_model(a, b)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())
    ddp_rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").open()]
    one_rows = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").open()]
    assert [r["val_elbo"] for r in ddp_rows] == pytest.approx(
        [r["val_elbo"] for r in one_rows], abs=1e-3)
    if "vqvae" in extra:  # the code space's usage: of the global batches
        for key in ("code_usage", "code_perplexity"):
            assert [r[key] for r in ddp_rows] == pytest.approx([r[key] for r in one_rows]), key
    if "--tensorboard" in extra:  # one writer: rank 0's
        assert len(list((tmp_path / "ddp" / "tensorboard").iterdir())) == 1


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_a_checkpoint_resumes_with_a_different_number_of_processes(tmp_path: Path) -> None:
    """Two epochs on 2 processes, a third on 1: the model and the metrics of 3 epochs on one
    process, up to float summation order."""
    run, whole = tmp_path / "run", tmp_path / "whole"
    r = _torchrun(2, "train", "--out", str(run), *FLAGS)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (load_tensors(run / "checkpoint.safetensors")[1] or {}).get("world_size") == 2
    resumed = run_cli("train", "--resume", str(run), "--epochs", "3", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    single = run_cli("train", "--out", str(whole), *FLAGS, "--epochs", "3")
    assert single.returncode == 0, single.stderr
    _assert_same_model(load_tensors(run / "checkpoint.safetensors")[0],
                       load_tensors(whole / "checkpoint.safetensors")[0])
    rows = [[json.loads(x) for x in (d / "metrics.jsonl").open()] for d in (run, whole)]
    assert len(rows[0]) == 3
    assert [r["val_elbo"] for r in rows[0]] == pytest.approx([r["val_elbo"] for r in rows[1]],
                                                             abs=1e-3)
