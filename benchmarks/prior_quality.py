"""A good ELBO can hide poor samples: one table of likelihood and sample quality for the plain
autoencoder, the VAE with N(0, I), the same VAE with priors fitted afterwards (mixture, flow,
diffusion), the VampPrior and any extra runs, and a hierarchy with and without priors fitted to
its top group (`--hierarchy RUN`), all on one scale.

    python benchmarks/prior_quality.py --data mnist --data-dir ../shared/data/mnist \\
        --epochs 30 --k 100 --out runs/quality

Every step is a `vaekit` command run in a subprocess, exactly as a user would type it (the
commands are printed); a step whose run directory or report exists already is skipped, so the
script can be stopped and restarted. The VAE, the autoencoder and the VampPrior share the nets
(784-512-256-L, ReLU) and the epochs. The table goes to OUT/table.md, the sample grids side by
side to OUT/samples.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: (row label, run name, source run and fit-prior flags or None for a trained run)
ROWS: list[tuple[str, str, tuple[str, list[str]] | None]] = [
    ("AE + Gaussian", "ae-gaussian", ("ae", ["--kind", "gaussian"])),
    ("AE + mixture (10)", "ae-mog", ("ae", ["--kind", "mog"])),
    ("VAE, N(0, I)", "vae", None),
    ("VAE + fitted mixture (10)", "vae-mog", ("vae", ["--kind", "mog"])),
    ("VAE + fitted flow", "vae-flow", ("vae", ["--kind", "flow"])),
    ("VAE + fitted diffusion", "vae-diffusion", ("vae", ["--kind", "diffusion"])),
    ("VampPrior (500 pseudo-inputs)", "vamp", None),
]


def vaekit(*args: str) -> str:
    print("$ vaekit " + " ".join(args), flush=True)
    r = subprocess.run([sys.executable, "-m", "vaekit", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"vaekit {args[0]} failed:\n{r.stderr[-2000:]}")
    return r.stdout


def last_json(text: str) -> dict[str, Any]:
    return json.loads(text.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="mnist")
    ap.add_argument("--data-dir")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--prior-epochs", type=int, default=50)
    ap.add_argument("--k", type=int, default=100, help="importance samples of the NLL")
    ap.add_argument("--nll-n", type=int, default=0, help="the NLL on the first N test images "
                    "only (0: all); a diffusion prior costs T denoiser passes per sample")
    ap.add_argument("--n", type=int, default=10000, help="samples scored by vaekit quality")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=RUN",
                    help="another trained run to score (e.g. a hierarchy)")
    ap.add_argument("--hierarchy", metavar="RUN", help="a trained hvae: score it, and it with "
                    "a flow and a diffusion (ODE) fitted to its top group's codes")
    ap.add_argument("--no-base", action="store_true", help="skip the AE, VAE and VampPrior "
                    "rows (score only --extra and --hierarchy)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = ["--data", args.data] + (["--data-dir", args.data_dir] if args.data_dir else [])
    common = [*data, "--latent-dim", str(args.latent_dim), "--epochs", str(args.epochs),
              "--threads", str(args.threads), "--quiet"]
    trained = {} if args.no_base else \
        {"vae": [], "ae": ["--model", "ae"], "vamp": ["--prior", "vamp"]}
    for name, flags in trained.items():
        if not (out / name / "config.json").exists():
            vaekit("train", *common, *flags, "--out", str(out / name))
    rows: list[tuple[str, Path, tuple[Path, list[str]] | None]] = [] if args.no_base else [
        (label, out / name, None if fit is None else (out / fit[0], fit[1]))
        for label, name, fit in ROWS]
    rows += [(label, Path(run), None) for label, run in (e.split("=", 1) for e in args.extra)]
    if args.hierarchy:  # its own N(0, I) top, then priors fitted to the top group's codes
        top = Path(args.hierarchy)
        rows += [(f"{top.name}, N(0, I) top", top, None),
                 (f"{top.name} + fitted flow top", out / f"{top.name}-flow",
                  (top, ["--kind", "flow"])),
                 (f"{top.name} + fitted diffusion top (ODE)", out / f"{top.name}-diffusion",
                  (top, ["--kind", "diffusion", "--sampler", "ode"]))]
    for _, run, fit in rows:
        if fit is not None and not (run / "config.json").exists():
            source, flags = fit
            start = time.perf_counter()
            vaekit("fit-prior", str(source), *flags, "--out", str(run),
                   "--epochs", str(args.prior_epochs), "--quiet")
            (run / "fit_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    results = []
    for label, run, _ in rows:
        report_file = run / "benchmark.json"
        if report_file.exists():
            results.append(json.loads(report_file.read_text()))
            continue
        saved = run / "quality.json"  # the report of an earlier, interrupted pass
        start = time.perf_counter()
        quality = json.loads(saved.read_text()) if saved.exists() else \
            last_json(vaekit("quality", str(run), "--n", str(args.n), "--json"))
        quality_seconds = None if saved.exists() and time.perf_counter() - start < 1 else \
            round(time.perf_counter() - start, 1)
        fit_file = run / "fit_seconds.txt"
        nll = None
        if json.loads((run / "config.json").read_text())["config"]["model"] != "ae":
            subset = ["--n", str(args.nll_n)] if args.nll_n else []
            nll = last_json(vaekit("evaluate", str(run), "--k", str(args.k), *subset, "--json"))
        row = {"label": label, "run": str(run), "quality": quality, "nll_n": args.nll_n,
               "nll": None if nll is None else nll["nll"],
               "nll_stderr": None if nll is None else nll["nll_stderr"],
               "elbo": None if nll is None else nll["elbo"],
               "fit_seconds": float(fit_file.read_text()) if fit_file.exists() else None,
               "quality_seconds": quality_seconds}
        report_file.write_text(json.dumps(row))
        results.append(row)
    table = render_table(results, args.k)
    (out / "table.md").write_text(table)
    print(table)
    save_sample_strip(results, out / "samples.png")
    print(f"wrote {out / 'table.md'} and {out / 'samples.png'}")


def render_table(results: list[dict[str, Any]], k: int) -> str:
    floor = results[0]["quality"]["floor"]
    net = results[0]["quality"]["feature_network"]
    n = results[0].get("nll_n") or "all"
    lines = [f"| model | test NLL (k={k}, {n} test images) | test −ELBO | FD | precision | "
             "recall | fit s | sample and score s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        q = r["quality"]
        nll = "no likelihood" if r["nll"] is None else f"{r['nll']:.2f} ± {r['nll_stderr']:.2f}"
        elbo = "" if r["elbo"] is None else f"{-r['elbo']:.2f}"
        fit = "" if r.get("fit_seconds") is None else f"{r['fit_seconds']:.0f}"
        seconds = "" if r.get("quality_seconds") is None else f"{r['quality_seconds']:.0f}"
        lines.append(f"| {r['label']} | {nll} | {elbo} | {q['fd']:.2f} | {q['precision']:.3f} "
                     f"| {q['recall']:.3f} | {fit} | {seconds} |")
    lines.append(f"| reference floor (training vs test images) | | | {floor['fd']:.2f} | "
                 f"{floor['precision']:.3f} | {floor['recall']:.3f} | | |")
    lines.append("")
    lines.append(f"Feature network: {net['name']} ({net['kind']}"
                 + (f", test accuracy {net['test_accuracy']:.4f})" if net.get("test_accuracy")
                    else ")") + f"; n = {results[0]['quality']['n']} samples against as many "
                 "test images.")
    return "\n".join(lines) + "\n"


def save_sample_strip(results: list[dict[str, Any]], path: Path) -> None:
    """64 samples of each row (seed 0), as 8x8 grids side by side with their labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import vaekit
    from vaekit.views.plots import image_grid

    fig, axes = plt.subplots(1, len(results), figsize=(2.4 * len(results), 2.9))
    for ax, r in zip(np.atleast_1d(axes), results):
        model = vaekit.load(r["run"])
        x = model.sample(64, generator=torch.Generator().manual_seed(0))
        ax.imshow(image_grid(x), cmap="gray", vmin=0, vmax=1)
        ax.set_title(r["label"], fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
