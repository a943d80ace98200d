"""`--compile` on the convolutional hierarchy: the `hvae-mnist-conv` preset trained eagerly and
through torch.compile, side by side in one run (alternating repeats, so that drift in a shared
machine hits both alike), on the first `--examples` MNIST training images. Prints seconds per
epoch (the best after the first, which for the compiled loop includes compilation), the first
compiled epoch, and the speed ratio.

    python benchmarks/conv_compile.py --data-dir ../shared/data/mnist --examples 6000 --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform

import torch

import vaekit
from vaekit.config import PRESETS
from vaekit.data import load_dataset


def epoch_seconds(data: vaekit.data.Dataset, compile: bool, epochs: int) -> list[float]:
    """Seconds of each epoch of the preset (training and validation, as metrics.jsonl)."""
    preset = {k: v for k, v in PRESETS["hvae-mnist-conv"].items() if k != "time_limit"}
    config = vaekit.Config.from_dict({**preset, "epochs": epochs, "compile": compile})
    result = vaekit.train(config, data=data, progress=False, save=False)
    return [float(row["seconds"]) for row in result.history]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--examples", type=int, default=6000, help="training images per epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement")
    p.add_argument("--repeats", type=int, default=2, help="alternating repeats of each loop")
    args = p.parse_args()
    full = load_dataset("mnist", args.data_dir, val_fraction=0.0)
    data = dataclasses.replace(full, train=full.train[:args.examples].contiguous(), labels=None)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; {len(data.train)} training images per epoch")
    eager, compiled, first = [], [], []
    for _ in range(args.repeats):
        eager.append(min(epoch_seconds(data, False, args.epochs)))
        seconds = epoch_seconds(data, True, args.epochs)
        first.append(seconds[0])
        compiled.append(min(seconds[1:]))
    row = {"examples": len(data.train), "eager_s_per_epoch": round(min(eager), 3),
           "compiled_s_per_epoch": round(min(compiled), 3),
           "first_compiled_epoch_s": round(min(first), 3),
           "compiled_speed_vs_eager": round(min(eager) / min(compiled), 3),
           "paired": [round(e / c, 3) for e, c in zip(eager, compiled, strict=True)]}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
