"""Does the feature space of `vaekit quality` tell noise from data? Real held-out images, the
same images blurred twice by the 3x3 binomial kernel, and uniform noise, each written as an
.npy file and scored by `vaekit quality --samples FILE.npy` as a user would (issue #24):

    python benchmarks/quality_sanity.py --data digits
    python benchmarks/quality_sanity.py --data mnist --data-dir ../shared/data/mnist
    python benchmarks/quality_sanity.py --data fashion-mnist

The real images are the validation split (val_fraction 0.1, what `vaekit quality --samples`
compares against the test split); a sound feature space scores real < blurred < noise in
Fréchet distance, with the noise's precision near 0. The commands are printed; the table goes
to standard output as Markdown.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def blurred_twice(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0])
    kernel = ((k[:, None] * k[None]) / 16).expand(x.shape[1], 1, 3, 3)
    for _ in range(2):
        x = torch.nn.functional.conv2d(x, kernel, padding=1, groups=x.shape[1])
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--data-dir")
    ap.add_argument("--out", help="folder of the .npy files (default: a temporary one)")
    args = ap.parse_args()

    from vaekit.data import load_dataset

    data = load_dataset(args.data, args.data_dir, 0.1)
    real = data.val
    sets = {"real": real, "blurred": blurred_twice(real),
            "noise": torch.rand(real.shape, generator=torch.Generator().manual_seed(0))}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for label, x in sets.items():
            path = out / f"{args.data}-{label}.npy"
            np.save(path, x.clamp(0, 1).numpy().astype(np.float32))
            cmd = ["quality", "--samples", str(path), "--data", args.data, "--json"]
            if args.data_dir:
                cmd[5:5] = ["--data-dir", args.data_dir]
            print("$ vaekit " + " ".join(cmd), file=sys.stderr, flush=True)
            r = subprocess.run([sys.executable, "-m", "vaekit", *cmd], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise SystemExit(f"vaekit quality failed:\n{r.stderr[-2000:]}")
            rows.append((label, json.loads(r.stdout.strip().splitlines()[-1])))
    net = rows[0][1]["feature_network"]
    print(f"{args.data}, n = {rows[0][1]['n']} against the {rows[0][1]['split']} split; "
          f"feature network {net['name']} (test accuracy {net.get('test_accuracy', 0):.4f})\n")
    print("| samples | FD | precision | recall |\n| --- | ---: | ---: | ---: |")
    for label, r in rows:
        print(f"| {label} | {r['fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    floor = rows[0][1]["floor"]
    print(f"| floor (train vs test) | {floor['fd']:.2f} | {floor['precision']:.3f} | "
          f"{floor['recall']:.3f} |")


if __name__ == "__main__":
    main()
