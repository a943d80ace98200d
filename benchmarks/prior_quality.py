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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class Row:
    """One row: a run (trained, or `fit` = (source run, fit-prior flags)) and the flags that
    `quality` and `evaluate` take for it (a diffusion prior's sampler: two rows, one fit)."""

    label: str
    run: Path
    fit: tuple[Path, list[str]] | None = None
    view: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The name of the row's saved report in its run directory."""
        return "benchmark" + "".join("-" + f.lstrip("-") for f in self.view) + ".json"

    @property
    def diffusion(self) -> bool:
        """A diffusion prior's row: its log p(z) costs many denoiser passes per code."""
        return self.fit is not None and "diffusion" in self.fit[1]


DIFFUSION_ODE = ["--kind", "diffusion", "--sampler", "ode"]
#: the ancestral chain's M-trajectory weight, on the same fit as the ODE row
ANCESTRAL = ["--sampler", "ancestral", "--trajectories", "4"]


def base_rows(out: Path) -> list[Row]:
    """The AE, the VAE with N(0, I) and with each fitted prior, the VampPrior."""
    ae, vae = out / "ae", out / "vae"
    return [
        Row("AE + Gaussian", out / "ae-gaussian", (ae, ["--kind", "gaussian"])),
        Row("AE + mixture (10)", out / "ae-mog", (ae, ["--kind", "mog"])),
        Row("VAE, N(0, I)", vae),
        Row("VAE + fitted mixture (10)", out / "vae-mog", (vae, ["--kind", "mog"])),
        Row("VAE + fitted flow", out / "vae-flow", (vae, ["--kind", "flow"])),
        Row("VAE + fitted diffusion (ODE)", out / "vae-diffusion", (vae, DIFFUSION_ODE)),
        Row("VAE + fitted diffusion (ancestral, M = 4)", out / "vae-diffusion",
            (vae, DIFFUSION_ODE), ANCESTRAL),
        Row("VampPrior (500 pseudo-inputs)", out / "vamp"),
    ]


def hierarchy_rows(top: Path, out: Path) -> list[Row]:
    """A hierarchy with its own N(0, I) top, and with priors fitted to its top group."""
    return [Row(f"{top.name}, N(0, I) top", top),
            Row(f"{top.name} + fitted flow top", out / f"{top.name}-flow",
                (top, ["--kind", "flow"])),
            Row(f"{top.name} + fitted diffusion top (ODE)", out / f"{top.name}-diffusion",
                (top, DIFFUSION_ODE))]


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
    ap.add_argument("--diffusion-nll-n", type=int, default=0, help="the NLL of a diffusion "
                    "prior's rows on the first N test images only (0: as --nll-n): the ODE's "
                    "exact divergence costs L vector-Jacobian products per solver step, the "
                    "ancestral weight M x T denoiser passes per code; the source run is "
                    "evaluated on the same images beside it")
    ap.add_argument("--diffusion-k", type=int, default=0, help="importance samples of those "
                    "rows (0: as --k)")
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
    rows = [] if args.no_base else base_rows(out)
    rows += [Row(label, Path(run)) for label, run in (e.split("=", 1) for e in args.extra)]
    if args.hierarchy:
        rows += hierarchy_rows(Path(args.hierarchy), out)
    for row in rows:
        if row.fit is not None and not (row.run / "config.json").exists():
            source, flags = row.fit
            start = time.perf_counter()
            vaekit("fit-prior", str(source), *flags, "--out", str(row.run),
                   "--epochs", str(args.prior_epochs), "--quiet")
            (row.run / "fit_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    results = []
    for row in rows:
        report_file = row.run / row.key
        if report_file.exists():
            results.append(json.loads(report_file.read_text()))
            continue
        start = time.perf_counter()
        quality = last_json(vaekit("quality", str(row.run), "--n", str(args.n), *row.view,
                                   "--json"))
        quality_seconds = round(time.perf_counter() - start, 1)
        fit_file = row.run / "fit_seconds.txt"
        nll, nll_n, k, paired = None, args.nll_n, args.k, None
        if row.diffusion:
            nll_n, k = args.diffusion_nll_n or args.nll_n, args.diffusion_k or args.k
        if json.loads((row.run / "config.json").read_text())["config"]["model"] != "ae":
            subset = ["--k", str(k)] + (["--n", str(nll_n)] if nll_n else [])
            nll = last_json(vaekit("evaluate", str(row.run), *subset, *row.view, "--json"))
            if row.diffusion and row.fit is not None and (nll_n, k) != (args.nll_n, args.k):
                paired = last_json(vaekit("evaluate", str(row.fit[0]), *subset, "--json"))
        result = {"label": row.label, "run": str(row.run), "view": row.view,
                  "quality": quality, "nll_n": nll_n, "k": k,
                  "source_nll": None if paired is None else paired["nll"],
                  "source_nll_stderr": None if paired is None else paired["nll_stderr"],
                  "nll": None if nll is None else nll["nll"],
                  "nll_stderr": None if nll is None else nll["nll_stderr"],
                  "elbo": None if nll is None else nll["elbo"],
                  "fit_seconds": float(fit_file.read_text()) if fit_file.exists() else None,
                  "quality_seconds": quality_seconds}
        report_file.write_text(json.dumps(result))
        results.append(result)
    table = render_table(results, args.k)
    (out / "table.md").write_text(table)
    print(table)
    save_sample_strip(results, out / "samples.png")
    print(f"wrote {out / 'table.md'} and {out / 'samples.png'}")


def render_table(results: list[dict[str, Any]], k: int) -> str:
    floor = results[0]["quality"]["floor"]
    net = results[0]["quality"]["feature_network"]
    lines = [f"| model | test NLL (k={k}; test images) | test −ELBO | FD | precision | "
             "recall | fit s | sample and score s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        q = r["quality"]
        n = r.get("nll_n") or "all"
        nll = "no likelihood" if r["nll"] is None else \
            f"{r['nll']:.2f} ± {r['nll_stderr']:.2f} ({n}" + (
                f", k={r['k']}" if r.get("k", k) != k else "") + ")"
        if r.get("source_nll") is not None:  # its source's NLL, on the same images
            nll += f"; source {r['source_nll']:.2f} ± {r['source_nll_stderr']:.2f}"
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
        view = r.get("view") or []
        if "--sampler" in view:  # the row's sampler, not the run's saved one
            prior: Any = getattr(model, "prior", None)
            prior.configure(sampler=view[view.index("--sampler") + 1])
        x = model.sample(64, generator=torch.Generator().manual_seed(0))
        ax.imshow(image_grid(x), cmap="gray", vmin=0, vmax=1)
        ax.set_title(r["label"], fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
