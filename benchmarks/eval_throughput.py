"""Evaluation throughput of the importance-weighted estimator: (examples x k) per second and peak
memory (the RSS high-water mark of a fresh process) for two chunk settings, against a minimal
importance-sampling loop written here, on the 784-200-200-50 tanh model. vaekit runs eagerly
and through torch.compile (`log_likelihood(compile=True)`; compilation time included).

    python benchmarks/eval_throughput.py --data-dir ../shared/data/mnist --n 1000 --k 1000

Speed does not depend on the weights, so the model is freshly initialised unless --run is given.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import vaekit
from vaekit.data import binarize_fixed, load_dataset
from vaekit.evaluate import log_likelihood
from vaekit.evaluate.likelihood import _chunking as chunking


def model_and_data(args: argparse.Namespace) -> tuple[vaekit.VAE, torch.Tensor]:
    torch.manual_seed(0)
    if args.run:
        model = vaekit.load(args.run)
    else:
        model = vaekit.build_model(vaekit.Config(hidden=(200, 200), activation="tanh",
                                                 latent_dim=50), (1, 28, 28))
    x = binarize_fixed(load_dataset("mnist", args.data_dir).test[:args.n]).clone()
    return model.eval(), x


@torch.no_grad()
def minimal_log_likelihood(model: vaekit.VAE, x: torch.Tensor, k: int,
                           chunk_rows: int) -> torch.Tensor:
    """The hand-written loop: encode once per batch, decode chunks of samples, logsumexp.
    Exactly k samples per example, in the chunks vaekit makes (at most chunk_rows rows,
    5000 = 5 x 1000), so that the two loops do the same arithmetic."""
    enc, head, dec = model.posterior.body, model.posterior.head, model.decoder
    xf = x.flatten(1)
    b, kc = chunking(k, len(x), chunk_rows)
    out = torch.empty(len(x), dtype=torch.float64)
    for i in range(0, len(x), b):
        xb = xf[i:i + b]
        mu, log_var = head(enc(x[i:i + b])).chunk(2, -1)
        std = torch.exp(0.5 * log_var)
        total = torch.full((len(xb),), -math.inf, dtype=torch.float64)
        for done in range(0, k, kc):
            eps = torch.randn(min(kc, k - done), len(xb), mu.shape[-1])
            z = mu + std * eps
            logits = dec(z).flatten(2)
            log_px = -F.binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none").sum(-1)
            log_pz = -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)
            log_qz = (-0.5 * (eps * eps).sum(-1) - std.log().sum(-1)
                      - 0.5 * z.shape[-1] * math.log(2 * math.pi))
            total = torch.logaddexp(total, torch.logsumexp((log_px + log_pz - log_qz).double(), 0))
        out[i:i + b] = total - math.log(k)
    return out


def _reset_peak_rss() -> int:
    """Reset the kernel's RSS high-water mark (Linux: clear_refs 5); return the RSS in MB now."""
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mb("VmRSS")


def _status_mb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return -1


def measure(args: argparse.Namespace) -> dict:
    model, x = model_and_data(args)
    base_rss = _reset_peak_rss()  # the data set's loading peak is not the estimator's
    start = time.perf_counter()
    if args.which == "minimal":
        ll = minimal_log_likelihood(model, x, args.k, args.chunk_rows)
        value = float(ll.mean())
    else:
        value = log_likelihood(model, x, k=args.k, chunk_rows=args.chunk_rows,
                               compile=args.which == "vaekit compiled").mean
    seconds = time.perf_counter() - start
    return {"which": args.which, "chunk_rows": args.chunk_rows, "n": len(x), "k": args.k,
            "seconds": round(seconds, 2), "samples_per_s": round(len(x) * args.k / seconds),
            "peak_rss_mb": _status_mb("VmHWM"),
            "peak_rss_above_start_mb": _status_mb("VmHWM") - base_rss,
            "log_likelihood": round(value, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--run", help="a run directory to evaluate (default: a fresh model)")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--k", type=int, default=1000)
    p.add_argument("--chunks", default="1024,50000", help="chunk_rows settings to compare")
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating repeats of each measurement (the fastest is kept)")
    p.add_argument("--pythae-python", default=".venv-pythae/bin/python",
                   help="python of an environment with pythae installed (skipped if missing)")
    p.add_argument("--which", choices=["vaekit", "vaekit compiled", "minimal"],
                   help=argparse.SUPPRESS)
    p.add_argument("--chunk-rows", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    try:
        chunks_ok = all(int(c) >= 1 for c in args.chunks.split(","))
    except ValueError:
        chunks_ok = False
    if args.repeats < 1 or not chunks_ok or (args.chunk_rows or 1) < 1:
        p.error("--repeats and every --chunks value must be whole numbers of at least 1")
    if args.which:  # a worker: one measurement in this fresh process
        print(json.dumps(measure(args)))
        return
    runs: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.repeats):  # alternate, so drift in the machine hits every loop alike
        for chunk in map(int, args.chunks.split(",")):
            for which in ("minimal", "vaekit", "vaekit compiled"):
                cmd = [sys.executable, __file__, "--which", which, "--chunk-rows", str(chunk),
                       "--data-dir", args.data_dir, "--n", str(args.n), "--k", str(args.k)]
                if args.run:
                    cmd += ["--run", args.run]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs.setdefault((which, chunk), []).append(
                    json.loads(out.stdout.strip().splitlines()[-1]))
                print(json.dumps(runs[which, chunk][-1]), flush=True)
    # the fastest repeat of each, with the highest memory mark any repeat reached
    rows = []
    for repeats in runs.values():
        best = dict(min(repeats, key=lambda r: r["seconds"]))
        for key in ("peak_rss_mb", "peak_rss_above_start_mb"):
            best[key] = max(r[key] for r in repeats)
        rows.append(best)
    pythae = None
    if Path(args.pythae_python).exists():
        import numpy as np

        data_file = str(Path(tempfile.mkdtemp()) / "mnist.npz")
        test = load_dataset("mnist", args.data_dir).test[:args.n]
        np.savez(data_file, train=test[:1].numpy(), val=test[:1].numpy(),
                 test=binarize_fixed(test).numpy())
        cmd = [args.pythae_python, str(Path(__file__).with_name("_pythae_worker.py")),
               "--data", data_file, "--hidden", "200,200", "--latent", "50", "--activation",
               "tanh", "--nll", str(args.k), "--n", str(args.n)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        pythae = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        print(json.dumps({"which": "pythae get_nll", "seconds": round(pythae, 2)}), flush=True)
    print(f"\n| loop | chunk rows | seconds (best of {args.repeats}) | (examples x k)/s | "
          f"peak RSS MB | of which during the estimate |  (n={args.n}, k={args.k})")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['which']} | {r['chunk_rows']} | {r['seconds']} | {r['samples_per_s']:,} | "
              f"{r['peak_rss_mb']} | {r['peak_rss_above_start_mb']} |")
    for chunk in map(int, args.chunks.split(",")):
        m = next(r for r in rows if r["which"] == "minimal" and r["chunk_rows"] == chunk)
        for which in ("vaekit", "vaekit compiled"):
            v = next(r for r in rows if r["which"] == which and r["chunk_rows"] == chunk)
            print(f"chunk {chunk}: {which} speed / minimal = {m['seconds'] / v['seconds']:.2f}x"
                  + (f", / Pythae get_nll = {pythae / v['seconds']:.2f}x" if pythae else ""))


if __name__ == "__main__":
    main()
