"""`vaekit info`: a run in a few lines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vaekit.models.describe import describe_model


def cmd_info(args: argparse.Namespace) -> int:
    from vaekit.models import MODELS
    from vaekit.models.autoencoder import RECONSTRUCTION_OBJECTIVE
    from vaekit.run import read_metrics, read_run_info

    info = read_run_info(args.run)
    run = Path(args.run)
    history = [row for row in read_metrics(run) if "train_elbo" in row]
    summary = {"run": str(run), "config": info.config.to_dict(),
               "event_shape": list(info.event_shape), "data": info.data,
               "epochs_done": len(history), "last": history[-1] if history else None,
               "files": sorted(p.name for p in run.iterdir() if not p.name.startswith("."))}
    if args.json:
        print(json.dumps(summary))
        return 0
    c = info.config
    print(f"run {run}: {describe_model(c)}, {c.likelihood} likelihood, "
          f"data {info.data.get('name', c.data)} {tuple(info.event_shape)}")
    print(f"  trained {len(history)}/{c.epochs} epochs, seed {c.seed}, batch {c.batch_size}, "
          f"lr {c.lr} ({c.lr_schedule})")
    if history:
        last = history[-1]
        best = last.get("best_epoch")
        val = [r for r in history if r.get("epoch") == best]
        name = "ELBO" if MODELS[c.model].has_likelihood else RECONSTRUCTION_OBJECTIVE
        if val and "val_elbo" in val[0]:
            print(f"  best validation {name} {val[0]['val_elbo']:.3f} nats at epoch {best}")
        print(f"  last epoch: train {name} {last['train_elbo']:.3f}, "
              f"skipped steps {last.get('skipped_steps', 0)}")
    print(f"  files: {', '.join(sorted(p.name for p in run.iterdir()))}")
    return 0
