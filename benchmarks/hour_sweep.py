"""The sweep behind the best-hour preset (issue #29): candidates trained for a short budget,
two at a time, one thread each, then scored by the importance-weighted test NLL.

    python benchmarks/hour_sweep.py --data-dir ../shared/data/mnist --minutes 12 --out runs/sweep
    python benchmarks/hour_sweep.py --only old,cosine-fb2-4groups --minutes 60 --k 1000 \
        --curve-minutes 5,10,15,20,30,40,50 --out runs/hour

Every candidate is `vaekit train --preset hvae-mnist` plus its flags, with `--time-limit M
--threads 1`, so the two runs of a pair share the machine alike and the comparison is side by
side. Finished runs (a metrics file and an evaluation) are kept and not run again, so the sweep
resumes. The table (markdown) is printed and written with the raw numbers to OUT/sweep.json.

With --curve-minutes, each run's saved model (model.safetensors, written with every checkpoint,
so at most --checkpoint-every seconds behind) is copied when its training time passes each mark,
to OUT/snapshots/NAME-MMmin; after training, every snapshot is scored at --curve-k and the test
NLL against minutes of training goes to OUT/curve.json: the curve of the Results page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open

#: name -> the flags added to `--preset hvae-mnist`; the first is the preset as shipped
CANDIDATES: dict[str, list[str]] = {
    "old": [],
    "fb2": ["--free-bits", "2"],
    "cosine-fb2": ["--free-bits", "2", "--lr-schedule", "cosine", "--schedule-over", "time"],
    "cosine-fb2-lr2e-3": ["--free-bits", "2", "--lr-schedule", "cosine", "--schedule-over",
                          "time", "--lr", "2e-3", "--lr-warmup", "2"],
    "cosine-fb2-4groups": ["--free-bits", "2", "--lr-schedule", "cosine", "--schedule-over",
                           "time", "--hvae-latents", "64,32,16,8", "--hvae-widths",
                           "512,256,128,64"],
    "cosine-fb2-wide": ["--free-bits", "2", "--lr-schedule", "cosine", "--schedule-over",
                        "time", "--hvae-widths", "768,384,192"],
    "cosine-iwae-k3": ["--objective", "iwae", "--iw-samples", "3", "--lr-schedule", "cosine",
                       "--schedule-over", "time"],
    "cosine-fb2-batch50": ["--free-bits", "2", "--lr-schedule", "cosine", "--schedule-over",
                           "time", "--batch-size", "50"],
}


def _vaekit(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaekit", *args]


def _train(name: str, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    out = Path(args.out) / name
    cmd = _vaekit("train", "--preset", "hvae-mnist", *CANDIDATES[name], "--data-dir",
                  args.data_dir, "--time-limit", str(args.minutes), "--threads", "1",
                  "--out", str(out), "--quiet")
    log = open(Path(args.out) / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _evaluate(name: str, args: argparse.Namespace) -> dict[str, object]:
    cmd = _vaekit("evaluate", str(Path(args.out) / name), "--split", "test", "--k",
                  str(args.k), "--json")
    start = time.perf_counter()
    text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, object] = json.loads(text.strip().splitlines()[-1])
    result["eval_seconds"] = round(time.perf_counter() - start, 1)
    return result


def _snapshot(name: str, args: argparse.Namespace, marks: list[float]) -> None:
    """Copy the run's saved model at every mark its training time (metrics.jsonl) has passed."""
    run, root = Path(args.out) / name, Path(args.out) / "snapshots"
    if not (run / "metrics.jsonl").exists() or not (run / "model.safetensors").exists():
        return
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    spent = sum(r["seconds"] for r in rows) / 60
    for mark in marks:
        dst = root / f"{name}-{mark:02g}min"
        if spent >= mark and not dst.exists():
            tmp = root / f".{dst.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for f in ("config.json", "model.safetensors", "metrics.jsonl"):
                shutil.copy2(run / f, tmp / f)
            (tmp / "snapshot.json").write_text(json.dumps({"minutes": spent,
                                                           "epochs": len(rows)}))
            tmp.rename(dst)  # whole or absent


def _curve(names: list[str], args: argparse.Namespace) -> list[dict[str, object]]:
    """Every snapshot's test NLL at --curve-k, and the finished run's at the same k (the
    curve's last point), with the epoch each model was saved at."""
    points = []
    snaps = [(*s.name.rsplit("-", 1), s) for s in (Path(args.out) / "snapshots").glob("*min")]
    snaps += [(n, f"{args.minutes:g}min", Path(args.out) / n) for n in names]
    for name, mark, snap in sorted(snaps, key=lambda t: (t[0], float(t[1].removesuffix("min")))):
        if name not in names:
            continue
        scored = snap / f"test-k{args.curve_k}.json"
        if not scored.exists():
            cmd = _vaekit("evaluate", str(snap), "--split", "test", "--k", str(args.curve_k),
                          "--json")
            text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            scored.write_text(text.strip().splitlines()[-1])
        result = json.loads(scored.read_text())
        with safe_open(str(snap / "model.safetensors"), "pt") as f:
            epoch = int(json.loads((f.metadata() or {}).get("json", "{}")).get("epoch", -1))
        points.append({"name": name, "mark": float(mark.removesuffix("min")), "epoch": epoch,
                       "minutes": round(sum(json.loads(line)["seconds"] for line in (
                           snap / "metrics.jsonl").read_text().splitlines()[:epoch]) / 60, 2),
                       "nll": result["nll"], "nll_se": result["nll_stderr"]})
    return points


def _row(name: str, args: argparse.Namespace) -> dict[str, object]:
    run = Path(args.out) / name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    scored = json.loads((run / f"test-k{args.k}.json").read_text())
    log = (Path(args.out) / f"{name}.log").read_text(errors="replace")
    ran = [line for line in log.splitlines() if "learning-rate schedule" in line and "ran" in line]
    return {"name": name, "flags": " ".join(CANDIDATES[name]), "epochs": len(rows),
            "minutes": round(sum(r["seconds"] for r in rows) / 60, 1),
            "train_elbo": round(rows[-1]["train_elbo"], 2),
            "nll": scored.get("nll"), "nll_se": scored.get("nll_stderr"),
            "schedule": ran[-1].split(": ", 1)[-1] if ran else ""}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", default="../shared/data/mnist")
    p.add_argument("--minutes", type=float, default=12.0, help="training budget per candidate")
    p.add_argument("--k", type=int, default=200, help="importance samples of the test NLL")
    p.add_argument("--parallel", type=int, default=2, help="candidates trained at once")
    p.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--curve-minutes", default="",
                   help="comma-separated minutes at which to keep each run's model (the curve)")
    p.add_argument("--curve-k", type=int, default=100, help="importance samples of the curve")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        p.error(f"unknown candidate(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    marks = [float(m) for m in args.curve_minutes.split(",") if m]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not (Path(args.out) / n / "metrics.jsonl").exists()]
    for i in range(0, len(todo), args.parallel):
        procs = [(n, _train(n, args)) for n in todo[i:i + args.parallel]]
        while any(proc.poll() is None for _, proc in procs):
            for n, _ in procs:
                _snapshot(n, args, marks)
            time.sleep(10)
        for n, proc in procs:
            if proc.returncode != 0:
                sys.exit(f"{n} failed: see {Path(args.out) / (n + '.log')}")
    for n in names:
        scored = Path(args.out) / n / f"test-k{args.k}.json"
        if not scored.exists():
            scored.write_text(json.dumps(_evaluate(n, args)))
    table = [_row(n, args) for n in names]
    (Path(args.out) / "sweep.json").write_text(json.dumps({
        "minutes": args.minutes, "k": args.k, "parallel": args.parallel,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": table}, indent=1))
    if marks:
        curve = _curve(names, args)
        (Path(args.out) / "curve.json").write_text(json.dumps(curve, indent=1))
        print(f"| candidate | minutes | epoch | test NLL (k={args.curve_k}) |\n|---|---|---|---|")
        for c in curve:
            print(f"| {c['name']} | {c['minutes']} | {c['epoch']} | "
                  f"{float(c['nll']):.2f} ± {float(c['nll_se']):.2f} |")
    print(f"| candidate | flags | epochs | minutes | train ELBO | test NLL (k={args.k}) |")
    print("|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['name']} | `{r['flags']}` | {r['epochs']} | {r['minutes']} | "
              f"{r['train_elbo']} | {float(r['nll']):.2f} ± {float(r['nll_se']):.2f} |")


if __name__ == "__main__":
    main()
