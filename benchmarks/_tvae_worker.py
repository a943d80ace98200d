"""Runs inside a separate environment with SDV installed (see table_quality.py): SDV's
TVAESynthesizer (Xu et al. 2019) fitted on a CSV with its defaults and the given epochs, then
sampled. Writes the synthetic CSV and prints one JSON line with the seconds."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
import torch
from sdv.metadata import Metadata
from sdv.single_table import TVAESynthesizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("train_csv")
    parser.add_argument("out_csv")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    frame = pd.read_csv(args.train_csv)
    metadata = Metadata.detect_from_dataframes(data={"table": frame})
    synthesizer = TVAESynthesizer(metadata, epochs=args.epochs, enable_gpu=False)
    start = time.perf_counter()
    synthesizer.fit({"table": frame})
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    synthetic = synthesizer.sample(num_rows=args.rows)
    if isinstance(synthetic, dict):  # SDV 2 answers {table name: DataFrame}
        synthetic = next(iter(synthetic.values()))
    sample_seconds = time.perf_counter() - start
    synthetic.to_csv(args.out_csv, index=False)
    print(json.dumps({"fit_seconds": fit_seconds, "sample_seconds": sample_seconds}))


if __name__ == "__main__":
    main()
