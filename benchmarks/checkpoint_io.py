"""Wall time against CPU time: what checkpoint I/O costs a training run.

Each case trains `vaekit train` in a child process, twice side by side in one run: with a
checkpoint after every epoch (`--checkpoint-every 0`, what vaekit did before the time cadence)
and with the default cadence. The child reports its wall time, its CPU time (user + system) and
the bytes it wrote (Linux's /proc/self/io `wchar`), so a ratio wall/CPU near 1 says the run
spent its time computing, not waiting on the disk.

    python benchmarks/checkpoint_io.py                         # the linear pPCA fit
    python benchmarks/checkpoint_io.py --data-dir ../shared/data/mnist --mnist-epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import json, os, sys, time
t0, c0 = time.perf_counter(), os.times()
from vaekit.cli import main
code = main(sys.argv[2:])
c1 = os.times()
io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
json.dump({"code": code, "wall": time.perf_counter() - t0,
           "cpu": (c1.user - c0.user) + (c1.system - c0.system),
           "written": int(io["wchar"])}, open(sys.argv[1], "w"))
"""


def ppca_data(path: Path) -> None:
    """The README's pPCA draw: 4,000 rows of 12 dimensions from a rank-3 linear model."""
    r = np.random.default_rng(0)
    w = r.normal(size=(12, 3)) * np.linspace(2, .5, 3)
    x = r.normal(size=(4000, 3)) @ w.T + r.normal(size=12) + .5 * r.normal(size=(4000, 12))
    np.savez(path, train=x.astype("f4"))


def measure(args: list[str], out: Path) -> dict[str, float]:
    report = out.with_suffix(".json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", CHILD, str(report), "train", "--out", str(out),
                    "--quiet", "--threads", "1", *args], check=True, env=env)
    result = json.loads(report.read_text())
    if result["code"] != 0:
        raise SystemExit(f"vaekit train {' '.join(args)} failed")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=500, help="epochs of the pPCA fit")
    parser.add_argument("--data-dir", help="MNIST's directory: adds an MNIST case")
    parser.add_argument("--mnist-epochs", type=int, default=2)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ppca_data(root / "ppca.npz")
        cases = {f"linear pPCA, {opts.epochs} epochs at batch 400": [
            "--data", str(root / "ppca.npz"), "--net", "linear", "--likelihood", "gaussian",
            "--variance", "shared", "--latent-dim", "3", "--val-fraction", "0", "--epochs",
            str(opts.epochs), "--batch-size", "400", "--lr", "0.1", "--lr-schedule", "cosine",
            "--kl-warmup", "50", "--standardize", "off"]}
        if opts.data_dir:
            cases[f"MNIST MLP 512,256, {opts.mnist_epochs} epochs"] = [
                "--data", "mnist", "--data-dir", opts.data_dir, "--epochs",
                str(opts.mnist_epochs)]
        print(f"# {platform.processor() or platform.machine()}, one thread per run, "
              f"python {platform.python_version()}")
        print(f"{'case':<44} {'checkpoints':<16} {'wall s':>7} {'CPU s':>7} {'wall/CPU':>8} "
              f"{'MB written':>10}")
        for name, args in cases.items():
            rows = {}
            for label, extra in (("every epoch", ["--checkpoint-every", "0"]),
                                 ("default cadence", [])):
                tag = f"{len(rows)}-{abs(hash(name))}"
                rows[label] = r = measure([*args, *extra], root / f"run-{tag}")
                print(f"{name:<44} {label:<16} {r['wall']:>7.1f} {r['cpu']:>7.1f} "
                      f"{r['wall'] / r['cpu']:>8.2f} {r['written'] / 1e6:>10.1f}", flush=True)
            before, after = rows["every epoch"], rows["default cadence"]
            print(f"{name:<44} {'ratio':<16} wall {before['wall'] / after['wall']:.2f}x faster, "
                  f"{before['written'] / max(after['written'], 1):.0f}x fewer bytes")


if __name__ == "__main__":
    main()
