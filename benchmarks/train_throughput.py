"""Training throughput: vaekit's loop against a minimal hand-written PyTorch loop with the same
network, data, batch size and optimiser (and Pythae's trainer where it is installed), measured
side by side in one run. Seconds per epoch include the per-epoch validation ELBO.

    python benchmarks/train_throughput.py --data-dir ../shared/data/mnist --epochs 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import vaekit
from vaekit.data import Dataset, binarize_fixed, load_dataset

CASES = {
    # Burda et al.'s setting: small steps, per-step overhead dominates.
    "784-200-200-50 tanh, batch 20": dict(hidden=(200, 200), activation="tanh", latent_dim=50,
                                          batch_size=20),
    # Pythae's default MLP VAE.
    "784-512-16 relu, batch 100": dict(hidden=(512,), activation="relu", latent_dim=16,
                                       batch_size=100),
    # Wider: arithmetic dominates.
    "784-1024-1024-64 relu, batch 100": dict(hidden=(1024, 1024), activation="relu",
                                             latent_dim=64, batch_size=100),
}
ACT = {"tanh": nn.Tanh, "relu": nn.ReLU}


def minimal_epoch_seconds(data: Dataset, case: dict, epochs: int, seed: int = 0) -> float:
    """The practical limit: a plain loop over in-memory tensors, dynamic binarization,
    Adam, and a validation ELBO per epoch."""
    torch.manual_seed(seed)
    sizes, act, latent, batch = [784, *case["hidden"]], ACT[case["activation"]], \
        case["latent_dim"], case["batch_size"]
    enc_layers: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        enc_layers += [nn.Linear(a, b), act()]
    enc = nn.Sequential(*enc_layers, nn.Linear(sizes[-1], 2 * latent))
    dec_sizes = [latent, *case["hidden"][::-1]]
    dec_layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dec_sizes):
        dec_layers += [nn.Linear(a, b), act()]
    dec = nn.Sequential(*dec_layers, nn.Linear(dec_sizes[-1], 784))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3, fused=True)
    x_train = data.train.flatten(1)
    x_val = binarize_fixed(data.val).flatten(1)

    def neg_elbo(x: torch.Tensor) -> torch.Tensor:
        mu, log_var = enc(x).chunk(2, -1)
        z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(dec(z), x, reduction="none").sum(-1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1 - log_var).sum(-1)
        return rec + kl

    return plain_loop_seconds(neg_elbo, opt, x_train, x_val, batch, epochs)


def plain_loop_seconds(neg_elbo: Callable[[torch.Tensor], torch.Tensor],
                       opt: torch.optim.Optimizer, x_train: torch.Tensor, x_val: torch.Tensor,
                       batch: int, epochs: int) -> float:
    """The best seconds per epoch of the plainest loop: shuffled slices, dynamic binarization,
    one optimiser step each, then the validation ELBO in chunks of 1000."""
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(x_train))
        for i in range(len(x_train) // batch):
            xb = torch.bernoulli(x_train[perm[i * batch:(i + 1) * batch]])
            loss = neg_elbo(xb).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            _ = sum(float(neg_elbo(x_val[j:j + 1000]).sum()) for j in range(0, len(x_val), 1000))
        times.append(time.perf_counter() - start)
    return min(times)


def vaekit_epoch_seconds(data: Dataset, case: dict, epochs: int, compile: bool = False) -> float:
    config = vaekit.Config(data="mnist", net="mlp", grad_clip=0.0, epochs=epochs, lr=1e-3,
                           compile=compile, **case)
    result = vaekit.train(config, data=data, progress=False, save=False)
    return min(row["seconds"] for row in result.history)


def pythae_epoch_seconds(python: str | None, data_file: str, case: dict,
                         epochs: int) -> float | None:
    """Pythae's VAE with the same MLP through its own TrainingPipeline, run by the Python of
    the environment Pythae is installed in (`pip install pythae` there); None if there is none."""
    if not python or not Path(python).exists():
        return None
    cmd = [python, str(Path(__file__).with_name("_pythae_worker.py")), "--data", data_file,
           "--hidden", ",".join(map(str, case["hidden"])), "--latent", str(case["latent_dim"]),
           "--activation", case["activation"], "--batch-size", str(case["batch_size"]),
           "--epochs", str(epochs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_epoch"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--epochs", type=int, default=2, help="epochs per measurement (best is kept)")
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats of each loop")
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--pythae-python", default=".venv-pythae/bin/python",
                   help="python of an environment with pythae installed (skipped if missing)")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--flush-denormal", action="store_true",
                   help="flush subnormal floats to zero in this process (vaekit's and the "
                        "minimal loop alike), as `vaekit train` does; Pythae runs as it ships")
    args = p.parse_args()
    # A per-thread flag that the threads torch starts inherit: set before any torch work.
    torch.set_flush_denormal(args.flush_denormal)
    data = load_dataset("mnist", args.data_dir, val_fraction=0.1)
    data_file = str(Path(tempfile.mkdtemp()) / "mnist.npz")
    np.savez(data_file, train=data.train.numpy(), val=data.val.numpy(), test=data.test.numpy())
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {len(data.train)} training images, {len(data.val)} validation; "
          f"subnormals flushed: {args.flush_denormal}")
    rows = []
    for name in args.cases:
        case = CASES[name]
        ours, minimal, compiled, pythae = [], [], [], []
        for _ in range(args.repeats):  # alternate, so drift in the machine hits both alike
            minimal.append(minimal_epoch_seconds(data, case, args.epochs))
            ours.append(vaekit_epoch_seconds(data, case, args.epochs))
            if args.compile:
                compiled.append(vaekit_epoch_seconds(data, case, args.epochs, compile=True))
            seconds = pythae_epoch_seconds(args.pythae_python, data_file, case, args.epochs)
            if seconds is not None:
                pythae.append(seconds)
        # Each repeat's ratio compares two measurements taken minutes apart at most, so the
        # VM's slow drift cancels; their median is the robust figure, the ratio of bests the
        # optimistic one for both.
        paired = sorted(m / o for m, o in zip(minimal, ours, strict=True))
        row = {"case": name, "minimal_s_per_epoch": round(min(minimal), 3),
               "vaekit_s_per_epoch": round(min(ours), 3),
               "vaekit_vs_minimal": round(min(minimal) / min(ours), 3),
               "vaekit_vs_minimal_paired": [round(r, 3) for r in paired],
               "vaekit_vs_minimal_median": round(paired[len(paired) // 2], 3),
               "images_per_s": round(len(data.train) / min(ours))}
        if compiled:
            row["vaekit_compile_s_per_epoch"] = round(min(compiled), 3)
        if pythae:
            row["pythae_s_per_epoch"] = round(min(pythae), 3)
            row["vaekit_vs_pythae"] = round(min(pythae) / min(ours), 3)
        else:
            row["pythae_s_per_epoch"] = "not installed"
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| case | minimal loop s/epoch | vaekit s/epoch | vaekit speed / minimal, bests | "
          "median of paired repeats | Pythae s/epoch | vaekit speed / Pythae |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        vs = f"{r['vaekit_vs_pythae']:.2f}x" if "vaekit_vs_pythae" in r else "-"
        print(f"| {r['case']} | {r['minimal_s_per_epoch']} | {r['vaekit_s_per_epoch']} | "
              f"{r['vaekit_vs_minimal']:.2f}x | {r['vaekit_vs_minimal_median']:.2f}x | "
              f"{r['pythae_s_per_epoch']} | {vs} |")


if __name__ == "__main__":
    main()
