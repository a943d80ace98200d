"""`vaekit quality`: sample quality of a run's model, or of any array of samples."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vaekit.errors import ConfigError, DataError


def add_quality_parser(sub: Any, positive_int: Any, temperature: Any) -> None:
    from vaekit.cli.common import add_sampler_flags

    p = sub.add_parser(
        "quality", help="sample quality: Fréchet distance, precision and recall against held-out "
        "data, beside the training data's own (the reference floor)",
        description="Draw N samples from RUN's model (or read --samples FILE.npy) and score "
        "them against the first N examples of the split in a fixed feature network: a "
        "classifier trained on the data's training split with a fixed recipe where the data "
        "have labels (for images with an extra not-data class of corrupted images, so that "
        "noise and blur score as unlike the data), else a seeded random network. Numbers "
        "are comparable only within one feature network; the report names it.")
    p.add_argument("run", metavar="RUN", nargs="?", help="run directory (its data are the "
                   "default --data; its report is saved there as quality.json)")
    p.add_argument("--samples", metavar="FILE.npy", help="score these samples (N, *shape) "
                   "instead of drawing from a run; uint8 images are read as levels / 255")
    p.add_argument("--data", help="dataset name or .npy/.npz path (default: the run's)")
    p.add_argument("--data-dir", help="directory of IDX files (default: the run's)")
    p.add_argument("--split", choices=["val", "test"], default="test",
                   help="held-out split to compare with (default: test)")
    p.add_argument("--n", type=positive_int, default=10000,
                   help="samples and held-out examples compared (default: 10000, or fewer "
                   "where the split is smaller)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default: 0)")
    p.add_argument("--temperature", type=temperature, default=1.0, metavar="T",
                   help="the prior's noise scaled by T (default: 1)")
    p.add_argument("--draw", action="store_true", help="score x ~ p(x|z) instead of its mean")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--target", metavar="COLUMN", help="a table's column to predict: the "
                   "accuracy of a classifier trained on synthetic rows and tested on real ones "
                   "(train on synthetic, test on real)")
    add_sampler_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def cmd_quality(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vaekit.cli.common import _check_device, apply_sampler_flags, require_sampler
    from vaekit.data import load_dataset
    from vaekit.io import atomic_write_json
    from vaekit.quality import check_samples, feature_network, sample_quality
    from vaekit.quality.manifold import DEFAULT_K
    from vaekit.run import ARRAY_DATA, QUALITY_FILE, load_run, read_run_info

    if (args.run is None) == (args.samples is None):
        raise ConfigError("give either a run directory or --samples FILE.npy (not both)")
    info = read_run_info(args.run) if args.run is not None else None
    if info is not None and info.config.table:
        return _table_quality(args, info)
    if args.target is not None:
        raise ConfigError("--target applies to a run trained on a table")
    if args.data is None and (info is None or info.config.data == ARRAY_DATA):
        raise ConfigError("--data is needed: the dataset the samples are compared with")
    name = args.data or info.config.data  # type: ignore[union-attr]
    data_dir = args.data_dir if args.data_dir is not None else (
        info.config.data_dir if info is not None and args.data is None else None)
    images = info.data.get("images") if info is not None else None
    settings = info.config if info is not None else None
    val_fraction = info.config.val_fraction if info is not None else 0.1
    if args.split == "val" and val_fraction == 0:
        raise DataError("--split val: the run has no validation split (val_fraction 0)")
    data = load_dataset(name, data_dir, val_fraction, images=images, settings=settings)
    if len(data.split(args.split)) < DEFAULT_K + 2 or len(data.train) < DEFAULT_K + 2:
        raise DataError(f"sample quality needs at least {DEFAULT_K + 2} examples in the "
                        f"{args.split} and training splits of {data.name}; they have "
                        f"{len(data.split(args.split))} and {len(data.train)}")
    if args.samples is not None:
        path = Path(args.samples)
        if path.suffix != ".npy":
            raise DataError(f"--samples {path}: expected a .npy file")
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"--samples {path} does not exist") from None
        except (OSError, ValueError) as e:
            raise DataError(f"--samples {path} is not a readable .npy array ({e})") from None
        samples = check_samples(array, data, f"--samples {path}")
        source: dict[str, Any] = {"samples_file": str(path)}
    else:
        device = _check_device(args.device)
        model, _ = load_run(args.run, device=device)
        require_sampler(model, args.run)
        apply_sampler_flags(model, args)
        if model.event_shape != data.event_shape:
            raise DataError(f"the data has examples of shape {data.event_shape}, but the model "
                            f"in {args.run} was trained on shape {model.event_shape}")
        n = min(args.n, len(data.split(args.split)))
        g = torch.Generator(device=device).manual_seed(args.seed)
        classes = _sample_classes(model, data, args.split, n)
        draws = [model.sample(min(1000, n - i), generator=g, mean=not args.draw,
                              temperature=args.temperature,
                              condition=None if classes is None else classes[i:i + 1000]).cpu()
                 for i in range(0, n, 1000)]
        drawn = torch.cat(draws)
        outside = float(((drawn < 0) | (drawn > 1)).float().mean()) if data.images else 0.0
        if data.images:  # a Gaussian's mean or draw can overshoot [0, 1]: score it as pixels
            drawn = drawn.clamp(0, 1)
        samples = check_samples(drawn, data, f"samples of {args.run}")
        source = {"run": str(args.run), "seed": args.seed, "temperature": args.temperature,
                  "samples": "draws x ~ p(x|z)" if args.draw else "means of p(x|z)",
                  "fraction_clamped_to_0_1": outside}
    # One feature network per dataset, whatever a run's validation split: trained on every
    # training example, so runs with different --val-fraction are scored on one scale.
    whole = load_dataset(name, data_dir, 0.0, images=images, settings=settings) \
        if val_fraction else data
    net = feature_network(whole, progress=not args.json)
    report = {**source, **sample_quality(samples[:args.n], data, net, args.split)}
    _print_report(report)
    if args.run is not None:
        atomic_write_json(Path(args.run) / QUALITY_FILE, report)
    if args.json:
        print(json.dumps(report))
    return 0


def _print_report(r: dict[str, Any]) -> None:
    net = r["feature_network"]
    what = f"classifier, test accuracy {net['test_accuracy']:.4f}" if net["kind"] == \
        "classifier" else "untrained random network: the data have no labels"
    print(f"{r['data']} {r['split']}: n={r['n']}, feature network {net['name']} ({what}), "
          f"{r['seconds']:.1f}s")
    print(f"  {'':<20} {'samples':>10} {'floor (train vs ' + r['split'] + ')':>24}")
    for label, key in (("Fréchet distance", "fd"), ("precision", "precision"),
                       ("recall", "recall")):
        print(f"  {label:<20} {r[key]:>10.4f} {r['floor'][key]:>24.4f}")


def _table_quality(args: argparse.Namespace, info: Any) -> int:
    """`vaekit quality RUN` for a run trained on a table: synthetic rows (draws) against the
    real test rows (vaekit.quality.tables)."""
    import torch

    from vaekit.cli.common import _check_device
    from vaekit.data import load_dataset
    from vaekit.data.tables import TableSchema
    from vaekit.io import atomic_write_json
    from vaekit.quality.tables import table_quality
    from vaekit.run import QUALITY_FILE, load_run

    if args.samples is not None:
        raise ConfigError("--samples is for image or array samples; a table run draws its own")
    config = info.config
    data = load_dataset(args.data or config.data, args.data_dir or config.data_dir,
                        config.val_fraction, settings=config)
    schema = TableSchema.from_dict(config.table)
    test = data.split(args.split)
    if len(test) < 2:
        raise DataError(f"the {args.split} split of {data.name} has {len(test)} rows")
    model, _ = load_run(args.run, device=_check_device(args.device))
    n = min(args.n, len(data.train))
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    # a conditional run draws the training rows' classes (the column is not compared)
    classes = data.labels["train"][:n] if model.condition_dim and data.labels else None
    synthetic = schema.inverse(model.sample(n, generator=g, mean=False,
                                            temperature=args.temperature,
                                            condition=classes).cpu())
    try:
        report = table_quality(schema, schema.inverse(data.train), schema.inverse(test),
                               synthetic, args.target, args.seed)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    report = {"run": str(args.run), "data": data.name, "split": args.split, "seed": args.seed,
              "temperature": args.temperature, "samples": "draws x ~ p(x|z)", **report}
    print(f"{data.name}: {n} synthetic rows against {len(test)} real {args.split} rows")
    for name, shape in report["column_shapes"].items():
        print(f"  {name:<28} {shape['metric']:<14} {shape['score']:.4f}")
    print(f"  {'column shapes, mean':<43} {report['column_shapes_mean']:.4f}")
    if report["correlation_similarity"] is not None:
        print(f"  {'correlation similarity':<43} {report['correlation_similarity']:.4f}")
    _print_missing_rates(report["missing_rates"], args.split)
    if "tstr" in report:
        t = report["tstr"]
        print(f"  predicting {t['target']}: accuracy trained on synthetic "
              f"{t['accuracy_synthetic']:.4f}, on real {t['accuracy_real']:.4f}, majority "
              f"class {t['accuracy_majority']:.4f}")
    atomic_write_json(Path(args.run) / QUALITY_FILE, report)
    if args.json:
        print(json.dumps(report))
    return 0


def _print_missing_rates(rates: dict[str, dict[str, Any]], split: str) -> None:
    """The missing rate of each column that misses cells, real against synthetic."""
    holes = {name: r for name, r in rates.items()
             if r["real"] or r["synthetic"] or r.get("train")}
    if not holes:
        print("  missing cells: none, real or synthetic")
        return
    print(f"  {'missing rate':<28} {'real ' + split:>10} {'synthetic':>10} {'real train':>10}")
    for name, r in holes.items():
        note = "" if r["modelled"] else "  (not modelled: complete when sampled)"
        print(f"  {name:<28} {r['real']:>10.4f} {r['synthetic']:>10.4f} "
              f"{r.get('train', float('nan')):>10.4f}{note}")


def _sample_classes(model: Any, data: Any, split: str, n: int) -> Any:
    """A conditional model's classes for n samples: those of the n real examples they are
    compared with (the same mix of classes), or the classes in turn where the data have no
    labels; None for an unconditional model."""
    import torch

    if not model.condition_dim:
        return None
    labels = data.split_labels(split)
    if labels is None:
        return torch.arange(n) % model.condition_dim
    return labels[:n]
