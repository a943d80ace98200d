"""Time to quality: wall-clock seconds of training until the test ELBO on dynamically binarized
MNIST first reaches a target, with vaekit's default network (784-512-256-32 relu, batch 100).

    python benchmarks/time_to_quality.py --data-dir ../shared/data/mnist --target -105

The model trains on all 60,000 training images; the test set (binarized once, fixed seed)
takes the place of the validation split, so the per-epoch validation ELBO is the test ELBO.
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

import vaekit
from vaekit.data import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--target", type=float, default=-105.0, help="test ELBO to reach (nats)")
    p.add_argument("--max-epochs", type=int, default=8)
    p.add_argument("--latent-dim", type=int, default=32)
    args = p.parse_args()
    data = load_dataset("mnist", args.data_dir, val_fraction=0.0)
    data.val = data.test  # evaluated every epoch, binarized once with the fixed seed
    config = vaekit.Config(data="mnist", latent_dim=args.latent_dim, epochs=args.max_epochs)
    result = vaekit.train(config, data=data, progress=False, save=False)
    elapsed, reached = 0.0, None
    for row in result.history:
        elapsed += row["seconds"]
        if reached is None and row["val_elbo"] >= args.target:
            reached = {"epoch": row["epoch"], "seconds": round(elapsed, 1),
                       "test_elbo": round(row["val_elbo"], 2)}
    print(json.dumps({"target": args.target, "reached": reached,
                      "final_test_elbo": round(result.history[-1]["val_elbo"], 2),
                      "epochs": len(result.history), "total_seconds": round(elapsed, 1),
                      "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"}))


if __name__ == "__main__":
    main()
