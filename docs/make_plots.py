"""Draw docs/hour-curves.png and docs/hour-nll-curve.png from the numbers printed in
docs/results.md (no run needed).

    python docs/make_plots.py

hour-curves.png: each curve is a run's training ELBO along its hour (epoch, minutes, nats) as
the Results report it; each marker at 60 minutes is that run's test NLL (k = 1000, all 10,000
test images). hour-nll-curve.png: the test NLL of saved checkpoints along the hour (k = 100),
for the new preset and the old one trained side by side (benchmarks/hour_sweep.py
--curve-minutes), with each run's final k = 1000 number.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

#: (minutes, training ELBO) along the hour, and the test NLL at the end; docs/results.md.
RUNS = {
    "hvae-mnist (Xeon)": ([(4.2, -98.9), (18.0, -89.8), (33.6, -88.3), (59.8, -86.7)], 84.80),
    "hvae-mnist (EPYC)": ([(2.9, -98.9), (20.1, -89.8), (38.0, -88.3), (59.9, -86.9)], 84.91),
    "burda-vae, one layer (Xeon)": ([(1.5, -104.8), (16.4, -95.2), (60.0, -92.2)], 88.36),
    "planar, one layer (EPYC)": ([(2.0, -106.1), (25.2, -97.8), (59.9, -96.9)], 89.44),
    "burda-iwae, one layer (EPYC)": ([(12.8, -112.9), (59.1, -105.4)], 90.56),
    "burda-iwae-2layer (EPYC)": ([(30.4, -121.5), (58.8, -111.2)], 93.73),
}


#: (minutes, test NLL at k = 100) of saved checkpoints, and the final NLL at k = 1000;
#: docs/results.md, "The best hour"; /work/sweep/h60/curve.json on the Xeon.
NLL_CURVES = {
    "hvae-mnist-hour (4 groups, free bits 2, cosine over the clock)": ([
        (4.65, 88.33), (9.40, 86.21), (15.24, 85.32), (19.95, 84.90), (30.14, 84.38),
        (40.21, 84.07), (49.39, 83.91), (56.93, 83.86)], 83.55),
    "hvae-mnist (the old preset)": ([
        (5.09, 89.35), (9.70, 87.15), (15.12, 86.28), (19.51, 85.94), (29.86, 85.41),
        (39.77, 85.17), (49.56, 85.00), (59.51, 84.88)], 84.55),
}

OUT = Path(__file__).with_name("hour-curves.png")
NLL_OUT = Path(__file__).with_name("hour-nll-curve.png")


def main(out: Path = OUT) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for i, (name, (points, nll)) in enumerate(RUNS.items()):
        color = f"C{i}"
        minutes, elbo = zip(*points)
        ax.plot(minutes, [-e for e in elbo], "-o", color=color, ms=3, label=name)
        ax.plot([61.5], [nll], "D", color=color, ms=5)
    ax.axvline(60, color="0.8", lw=0.8)
    ax.set_xlabel("minutes of training (2 CPU cores, one thread per run)")
    ax.set_ylabel("nats (lower is better)")
    ax.set_title("MNIST, one hour: training −ELBO (lines), test NLL at k=1000 (◆)")
    ax.set_ylim(82, 134)
    ax.legend(fontsize=8, frameon=False, ncol=2, loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    print(out)
    nll_curve()


def nll_curve(out: Path = NLL_OUT) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for i, (name, (points, final)) in enumerate(NLL_CURVES.items()):
        minutes, nll = zip(*points)
        ax.plot(minutes, nll, "-o", color=f"C{i}", ms=3, label=name + " (k=100)")
        ax.plot([61.5], [final], "D", color=f"C{i}", ms=5)
    for value, label, va, dy in ((83.0, "the goal, 83.0", "bottom", 0.05),
                                 (82.90, "Burda et al.'s IWAE after 3,280 epochs, 82.90", "top",
                                  -0.05)):
        ax.axhline(value, color="0.6", lw=0.8, ls="--")
        ax.text(20, value + dy, label, fontsize=7, color="0.4", va=va)
    ax.set_xlabel("minutes of training (2-core Xeon, two runs at once, one thread each)")
    ax.set_ylabel("test NLL, nats (lower is better)")
    ax.set_title("MNIST: test NLL of saved checkpoints (k=100), final at k=1000 (◆)")
    ax.set_ylim(82, 90)
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    fig.tight_layout()
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
