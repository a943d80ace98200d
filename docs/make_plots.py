"""Draw docs/hour-curves.png from the numbers printed in docs/results.md (no run needed).

    python docs/make_plots.py

Each curve is a run's training ELBO along its hour (epoch, minutes, nats) as the Results
report it; each marker at 60 minutes is that run's test NLL (k = 1000, all 10,000 test images).
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


OUT = Path(__file__).with_name("hour-curves.png")


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


if __name__ == "__main__":
    main()
