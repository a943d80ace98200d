"""Reproduction benchmark: Burda, Grosse & Salakhutdinov (2016), Table 1, the one-stochastic-layer
VAE on dynamically binarized MNIST (784-200-200-50 tanh, batch 20, Adam with their schedule),
test NLL by importance sampling with k=5000. Published: 86.76 nats after 3,280 epochs.

    python benchmarks/iwae_mnist.py --data-dir ../shared/data/mnist --epochs 3
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import vaekit
from vaekit.data import binarize_fixed, load_dataset
from vaekit.evaluate import dataset_elbo, log_likelihood

PUBLISHED_NLL = 86.76


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--epochs", type=int, default=3, help="training budget (the paper: 3280)")
    p.add_argument("--k", type=int, default=5000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--chunk-rows", type=int, default=1024)
    p.add_argument("--out", default="runs/iwae-mnist")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    config = vaekit.Config(data="mnist", data_dir=args.data_dir, val_fraction=0.0, net="mlp",
                           hidden=(200, 200), activation="tanh", latent_dim=50, batch_size=20,
                           lr=1e-3, lr_schedule="iwae", epochs=args.epochs, grad_clip=0.0)
    data = load_dataset("mnist", args.data_dir, val_fraction=0.0)
    start = time.perf_counter()
    result = vaekit.train(config, data=data, out=args.out, progress=False)
    train_s = time.perf_counter() - start

    x = binarize_fixed(data.test[:args.n_test])
    start = time.perf_counter()
    ll = log_likelihood(result.model, x, k=args.k, chunk_rows=args.chunk_rows)
    eval_s = time.perf_counter() - start
    test_elbo = float(dataset_elbo(result.model, x)["elbo"].mean())
    report = {"epochs": args.epochs, "train_seconds": round(train_s, 1),
              "seconds_per_epoch": round(train_s / args.epochs, 2),
              "test_elbo": round(test_elbo, 2), "test_nll": round(-ll.mean, 2),
              "test_nll_stderr": round(ll.stderr, 2), "k": args.k, "n_test": len(x),
              "eval_seconds": round(eval_s, 1), "published_nll": PUBLISHED_NLL,
              "gap_to_published": round(-ll.mean - PUBLISHED_NLL, 2),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch "
                         f"{torch.__version__}"}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
