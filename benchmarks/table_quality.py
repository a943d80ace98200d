"""Synthetic tables: vaekit beside SDV's TVAE (Xu et al. 2019), measured side by side.

    python benchmarks/table_quality.py --tvae-python /path/to/sdv-venv/bin/python

Two tables that scikit-learn ships, each with its class as a text column: wine (178 rows,
13 numbers, `cultivar` with 3 values) and breast cancer (569 rows, 30 numbers, `diagnosis`
with 2). Every model trains on the same 90% of the rows (vaekit's fixed split), for the same
number of epochs (TVAE's default, 300), with the same layer widths (128, 128), and draws as
many rows as it trained on. vaekit runs twice: one Gaussian per number column, and with every
number column `multimodal` (TVAE's mode-specific normalisation). The synthetic tables are
scored by `vaekit.quality.tables` against the held-out 10%: the mean column-shape
similarity (KS / TV complements), the correlation similarity, and the accuracy of a
classifier of the class trained on the synthetic rows, with the same classifier trained on
real rows beside it. Without --tvae-python (an environment with `pip install sdv`), only
vaekit's rows are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer, load_wine

import vaekit
from vaekit.config import Config
from vaekit.data.splits import _split
from vaekit.data.tables import TableSchema
from vaekit.quality.tables import table_quality

HERE = Path(__file__).resolve().parent


def tables() -> dict[str, tuple[pd.DataFrame, str]]:
    wine = load_wine(as_frame=True).frame
    wine["cultivar"] = wine.pop("target").map({0: "barolo", 1: "grignolino", 2: "barbera"})
    cancer = load_breast_cancer(as_frame=True).frame
    cancer["diagnosis"] = cancer.pop("target").map({0: "malignant", 1: "benign"})
    return {"wine": (wine, "cultivar"), "breast-cancer": (cancer, "diagnosis")}


def vaekit_rows(csv: Path, rows: int, epochs: int, seed: int,
                columns: str = "") -> tuple[Any, float, Any]:
    config = Config(data=str(csv), val_fraction=0.0, epochs=epochs, hidden=(128, 128),
                    latent_dim=8, batch_size=100, lr=1e-3, seed=seed, columns=columns)
    start = time.perf_counter()
    result = vaekit.train(config, progress=False, save=False)
    seconds = time.perf_counter() - start
    schema = TableSchema.from_dict(result.model.config.table)
    g = torch.Generator().manual_seed(seed)
    synthetic = schema.inverse(result.model.sample(rows, generator=g, mean=False))
    return synthetic, seconds, schema


def tvae_rows(python: str, train_csv: Path, rows: int, epochs: int,
              seed: int) -> tuple[Any, float]:
    out = train_csv.with_name("tvae.csv")
    done = subprocess.run([python, str(HERE / "_tvae_worker.py"), str(train_csv), str(out),
                           "--rows", str(rows), "--epochs", str(epochs), "--seed", str(seed)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": os.environ.get(
                              "OMP_NUM_THREADS", "2")})
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    return pd.read_csv(out), float(timing["fit_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tvae-python", help="python of an environment with sdv installed")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}; {args.epochs} epochs each")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (frame, target) in tables().items():
            full, train_csv = Path(tmp) / f"{name}.csv", Path(tmp) / f"{name}-train.csv"
            frame.to_csv(full, index=False)
            index = torch.arange(len(frame), dtype=torch.float64)[:, None]
            split = _split(full.name, index, None, 0.0, images=False)
            train_rows = split.train[:, 0].long().numpy()
            test_rows = split.test[:, 0].long().numpy()
            train, test = frame.iloc[train_rows], frame.iloc[test_rows]
            train.to_csv(train_csv, index=False)
            synthetic, seconds, schema = vaekit_rows(full, len(train), args.epochs, args.seed)
            runs = {"vaekit": (synthetic, seconds)}
            # the same with TVAE's mode-specific normalisation of every number column
            numbers = ",".join(f"{name}:multimodal" for name in frame.columns if name != target)
            modal, modal_seconds, _ = vaekit_rows(full, len(train), args.epochs, args.seed,
                                                  numbers)
            runs["vaekit, modes"] = (modal, modal_seconds)
            if args.tvae_python:
                runs["SDV TVAE"] = tvae_rows(args.tvae_python, train_csv, len(train),
                                             args.epochs, args.seed)
            for model, (rows, secs) in runs.items():
                q = table_quality(schema, train, test, rows[list(frame.columns)], target,
                                  args.seed)
                results.append({"table": name, "model": model, "train_seconds": round(secs, 1),
                                "column_shapes": q["column_shapes_mean"],
                                "correlation": q["correlation_similarity"],
                                "tstr_accuracy": q["tstr"]["accuracy_synthetic"],
                                "real_accuracy": q["tstr"]["accuracy_real"],
                                "train_rows": len(train), "test_rows": len(test)})
    print(f"{'table':<14} {'model':<14} {'train s':>8} {'shapes':>7} {'corr':>7} "
          f"{'TSTR acc':>9} {'TRTR acc':>9}")
    for r in results:
        print(f"{r['table']:<14} {r['model']:<14} {r['train_seconds']:>8.1f} "
              f"{r['column_shapes']:>7.3f} {r['correlation']:>7.3f} {r['tstr_accuracy']:>9.3f} "
              f"{r['real_accuracy']:>9.3f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
