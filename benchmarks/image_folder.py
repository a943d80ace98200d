"""Reading a folder of images: from a cold start, and again with the decoded-array cache.

    python benchmarks/image_folder.py --data-dir ../shared/data/mnist [--folder DIR]

Writes MNIST's 70,000 images as PNG files in class subfolders (once, into --folder or a
temporary folder), then, each in a fresh process, times `vaekit.data.load_dataset(FOLDER)`:
cold (an empty cache: every file decoded by Pillow on a thread pool) and warm (the cached
.npz). Prints the seconds of each and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TIMED = """
import sys, time
start = time.perf_counter()
from vaekit.data import load_dataset
data = load_dataset(sys.argv[1], val_fraction=0.0)
print(time.perf_counter() - start, len(data.split("all")), tuple(data.event_shape))
"""


def write_pngs(data_dir: str, folder: Path) -> int:
    from PIL import Image

    from vaekit.data import load_dataset

    mnist = load_dataset("mnist", data_dir, val_fraction=0.0)
    x = (mnist.split("all")[:, 0] * 255).round().byte().numpy()
    labels = mnist.split_labels("all")
    assert labels is not None
    for i, (image, label) in enumerate(zip(x, labels.tolist(), strict=True)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image)).save(target / f"{i:05d}.png")
    return len(x)


def timed_load(folder: Path, cache: Path) -> tuple[float, float]:
    """(seconds inside the process to load, wall seconds of the process)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", TIMED, str(folder)], capture_output=True,
                         text=True, check=True, env={**os.environ, "VAEKIT_CACHE": str(cache)})
    wall = time.perf_counter() - start
    return float(out.stdout.split()[0]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="MNIST's IDX files")
    parser.add_argument("--folder", help="where to write (or find) the PNG folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "mnist-png"
        if not folder.exists():
            start = time.perf_counter()
            n = write_pngs(args.data_dir, folder)
            print(f"wrote {n} PNG files to {folder} in {time.perf_counter() - start:.1f} s")
        cache = Path(tmp) / "cache"
        cold = timed_load(folder, cache)
        warm = timed_load(folder, cache)
        print(f"machine: {os.cpu_count()} cores")
        print(f"cold (decode every file): load {cold[0]:.1f} s, process {cold[1]:.1f} s")
        print(f"warm (the cache):         load {warm[0]:.1f} s, process {warm[1]:.1f} s")
        print(json.dumps({"cold_load_s": round(cold[0], 2), "cold_process_s": round(cold[1], 2),
                          "warm_load_s": round(warm[0], 2),
                          "warm_process_s": round(warm[1], 2)}))


if __name__ == "__main__":
    main()
