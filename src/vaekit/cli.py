"""The `vaekit` command line: train | evaluate | sample | reconstruct | encode | interpolate |
score | info. Bad input ends with a one- or two-line message and exit status 2, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from vaekit.config import (
    PRESETS,
    Config,
    ConfigError,
    _flag,
    coerce,
    field_choices,
    load_config_file,
    registry,
)
from vaekit.errors import DataError, VaekitError

EPILOG = "Docs: README.md. Every value is per example, in nats, summed over data dimensions."
#: `vaekit evaluate`'s importance samples: enough for an estimate worth the name log p(x).
DEFAULT_EVAL_K = 1000


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in the same two-line form as every other vaekit error."""

    def error(self, message: str) -> Any:
        self.exit(2, f"vaekit: error: {message}\n(see '{self.prog} --help')\n")


def _temperature(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per Config field; values stay unset unless given, so a --config file can fill
    them and the command line wins over the file."""
    for f in fields(Config):
        if f.name == "model_options":  # one flag per option of each model, below
            continue
        choices = field_choices(f)
        help_text = f.metadata.get("help", "")
        if choices:
            help_text += f" {{{'|'.join(choices)}}}"
        help_text = _with_default(help_text, f.default if f.default is not MISSING else None)
        if isinstance(f.default, bool):
            parser.add_argument(f"--{_flag(f.name)}", dest=f.name, default=argparse.SUPPRESS,
                                action=argparse.BooleanOptionalAction, help=help_text)
            continue
        parser.add_argument(f"--{_flag(f.name)}", dest=f.name, default=argparse.SUPPRESS,
                            metavar=f.name.upper(), help=help_text)
    for model, spec in registry("model").items():
        for f in fields(spec.options) if spec.options is not None else ():
            default = f.default if f.default is not MISSING else None
            parser.add_argument(f"--{model}-{_flag(f.name)}", dest=f"{_OPTION}{model}:{f.name}",
                                default=argparse.SUPPRESS, metavar=f.name.upper(),
                                help=_with_default(_option_help(spec.options, f.name), default))


#: The prefix of the argparse destination of a model's own option: "model_option:MODEL:NAME".
_OPTION = "model_option:"


def _option_help(options: type, name: str) -> str:
    """The comment above an options dataclass's field (its `#:` line), as the flag's help."""
    import inspect

    lines = inspect.getsource(options).splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(f"{name}:"):
            notes: list[str] = []
            for previous in reversed(lines[:i]):
                if not previous.strip().startswith("#:"):
                    break
                notes.insert(0, previous.strip()[2:].strip())
            return " ".join(notes)
    return ""


def _with_default(help_text: str, default: Any) -> str:
    """`help_text` ending in '(default: X)' once: not where the text already says its default,
    and not for None, which a text that needs one spells out in words."""
    if default is None or "(default" in help_text:
        return help_text
    if isinstance(default, bool):
        default = "on" if default else "off"
    elif isinstance(default, tuple):
        default = ",".join(map(str, default))
    return f"{help_text} (default: {default})"


def _config_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values from --config FILE, values from flags), both keyed by Config field name."""
    from_file = load_config_file(args.config) if args.config else {}
    known = {f.name: f for f in fields(Config)}
    from_flags = {name: coerce(known[name], getattr(args, name), source="command line")
                  for name in known if hasattr(args, name)}
    options: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if dest.startswith(_OPTION):
            model, name = dest[len(_OPTION):].split(":")
            options.setdefault(model, {})[name] = value
    if options:
        from_flags["model_options"] = options
    return from_file, from_flags


def merge_config_values(*layers: dict[str, Any]) -> dict[str, Any]:
    """Config values from a preset, a file and flags, later layers winning; model_options are
    merged option by option."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in ("model_options", "model-options") and isinstance(value, dict):
                into = merged.setdefault("model_options", {})
                for model, options in value.items():
                    into[model] = {**into.get(model, {}), **(options or {})}
            else:
                merged[key] = value
    return merged


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vaekit", description="Variational autoencoders: train, evaluate, "
                     "sample, encode, reconstruct, interpolate and score anomalies.",
                     epilog=EPILOG)
    from vaekit import __version__

    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a VAE and write a run directory",
                       description="Train a VAE. With no flags: the built-in 8x8 digits. Flags "
                       "override --config FILE (YAML or JSON, keys named like the flags).")
    p.add_argument("--config", metavar="FILE", help="YAML/JSON file of option values")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a published setup to start from "
                   "(flags and --config override it): " + ", ".join(sorted(PRESETS)))
    p.add_argument("--out", metavar="RUN", help="run directory to create "
                   "(default: runs/DATA-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last "
                   "checkpoint (only --epochs, --device, --threads, --compile, --bf16 may change)")
    p.add_argument("--restart-schedule", action="store_true", help="with --resume and a "
                   "larger --epochs: restart the learning-rate schedule from --lr over the added "
                   "epochs (a warm restart) instead of stretching the rest of it over them")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction,
                   help="flush subnormal floats to zero in this process's CPU arithmetic: "
                   "Adam's moments of inputs that are always 0 (MNIST's border pixels) decay "
                   "into them, and each costs a slow path (default: on)")
    # the default set here, not on the action: Python 3.10's BooleanOptionalAction would add
    # a second '(default: True)' to the help
    p.set_defaults(flush_denormal=True)
    _add_config_flags(p)

    def add_data(p: argparse.ArgumentParser, split: str = "test") -> None:
        p.add_argument("run", metavar="RUN", help="run directory")
        p.add_argument("--data", help="dataset name or .npy/.npz path (default: the run's)")
        p.add_argument("--data-dir", help="directory of IDX files (default: the run's)")
        p.add_argument("--split", choices=["train", "val", "test", "all"],
                       help=f"which split (default: {split}; with --data PATH.npy/.npz: all, "
                       "every row in file order)")
        p.add_argument("--n", type=_positive_int, help="use the first N examples of the split")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")

    def add_output(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("-o", "--output", required=True, help=what + "; never a file the "
                       "command reads (--data, the run's files)")
        p.add_argument("--force", action="store_true", help="replace an existing -o file "
                       "(atomically); without it an existing file is refused")

    def add_compile(p: argparse.ArgumentParser) -> None:
        p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="decode through torch.compile (default: on a CPU from 5 million "
                       "(sample, example) rows, where it pays back its compilation)")

    p = sub.add_parser("evaluate", help="ELBO, importance-weighted log p(x), bits/dim, "
                       "active units", description="Evaluate a run on a data split. --k 5000 is "
                       "the standard for published log-likelihoods; --k 1 gives only a "
                       "single-sample estimate of the ELBO, not a likelihood estimate.")
    add_data(p)
    p.add_argument("--k", type=_positive_int, default=DEFAULT_EVAL_K,
                   help=f"importance samples (default: {DEFAULT_EVAL_K})")
    p.add_argument("--chunk-rows", type=_positive_int, default=1024,
                   help="(sample, example) rows decoded at once; bounds peak memory "
                   "(default: 1024)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default: 0)")
    add_compile(p)
    p.add_argument("--amortization-gap", type=_positive_int, default=0, metavar="M",
                   help="also measure the amortization gap on the first M examples")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    p = sub.add_parser("sample", help="draw samples from the prior through the decoder")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples (default: 64)")
    add_output(p, "FILE.png (a grid) or FILE.npy")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--draw", action="store_true", help="sample x ~ p(x|z) instead of its mean")
    p.add_argument("--temperature", type=_temperature, default=1.0, metavar="T",
                   help="scale the prior's noise by T: below 1, colder, more typical samples "
                   "(default: 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")

    p = sub.add_parser("reconstruct", help="inputs beside their reconstructions")
    add_data(p)
    add_output(p, "FILE.png (rows of inputs, each above its reconstructions) or FILE.npy "
               "(N, 2, ...): [:, 0] inputs, [:, 1] reconstructions")

    p = sub.add_parser("encode", help="posterior means and log-variances of a split (for a flow "
                       "posterior, those of its Gaussian base q_0(z|x))")
    add_data(p)
    add_output(p, "codes.npy: array (N, 2, latent_dim), [:, 0] means, [:, 1] log-variances; "
               "or codes.npz with arrays mean, log_var")

    p = sub.add_parser("interpolate", help="decode a straight line between two examples' codes")
    add_data(p)
    p.add_argument("--pair", type=int, nargs=2, default=(0, 1), metavar=("I", "J"),
                   help="indices of the two examples in the split (default: 0 1)")
    p.add_argument("--steps", type=_positive_int, default=10,
                   help="points on the line, both ends included (default: 10)")
    add_output(p, "FILE.png (one row) or FILE.npy (steps, ...)")

    p = sub.add_parser("score", help="anomaly scores: -log p(x) per example (importance-weighted)")
    add_data(p)
    p.add_argument("--k", type=_positive_int, default=100, help="importance samples (default: 100)")
    p.add_argument("--chunk-rows", type=_positive_int, default=1024,
                   help="(sample, example) rows decoded at once; bounds peak memory "
                   "(default: 1024)")
    add_compile(p)
    add_output(p, "scores.npy: one value per example")

    p = sub.add_parser("info", help="what a run directory holds")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


# ---------------------------------------------------------------------------- commands

def cmd_train(args: argparse.Namespace) -> int:
    from vaekit.api import train

    from_file, from_flags = _config_from_args(args)
    if args.flush_denormal and args.own_process:
        import torch

        # A per-thread CPU flag, inherited by the threads torch starts later: set it before
        # any tensor work. Only where vaekit owns the process, never inside a caller's.
        torch.set_flush_denormal(True)
    if args.resume:
        if args.out:
            raise ConfigError("--out cannot be combined with --resume (the run continues in "
                              "its own directory)")
        if from_file or args.preset:
            raise ConfigError("--config and --preset cannot be combined with --resume (the "
                              "run's config is in its config.json)")
        result = train(resume=args.resume, progress=not args.quiet,
                       restart_schedule=args.restart_schedule, **from_flags)
    else:
        preset = dict(PRESETS[args.preset]) if args.preset else {}
        config = Config.from_dict(merge_config_values(preset, from_file, from_flags),
                                  source=args.config or "flags")
        result = train(config, out=args.out, progress=not args.quiet,
                       restart_schedule=args.restart_schedule)
    best = max((r for r in result.history), key=lambda r: r.get("val_elbo", r["train_elbo"]),
               default=None)
    if best is not None:
        score = best.get("val_elbo", best["train_elbo"])
        which = "validation" if "val_elbo" in best else "training"
        print(f"best {which} ELBO {score:.3f} nats at epoch {best['epoch']}")
    pictures = sorted(p.name for p in Path(str(result.run_dir)).glob("*.png"))
    print(f"run directory: {result.run_dir}")
    if pictures:
        print(f"pictures: {', '.join(str(Path(str(result.run_dir)) / p) for p in pictures)}")
    return 0


def _check_device(name: str) -> str:
    from vaekit.train.loop import resolve_device

    return str(resolve_device(Config(device=name).validate().device))


def _claim_output(args: argparse.Namespace, reads: Sequence[Path] = (),
                  read_dirs: Sequence[Path] = ()) -> None:
    """Refuse -o before any work: a file the command reads, or (without --force) any
    existing file. The run directory is always read."""
    from vaekit.io import claim_output

    if getattr(args, "output", None) is not None:
        claim_output(args.output, reads=reads, read_dirs=[Path(args.run), *read_dirs],
                     force=args.force)


def _data_source(args: argparse.Namespace, info: Any) -> tuple[str, str | None]:
    """(dataset name or file, data directory) that the command reads: --data and --data-dir,
    else the run's own. A run fitted on an in-memory array has no data to fall back on."""
    from vaekit.run import ARRAY_DATA

    if args.data is None and info.config.data == ARRAY_DATA:
        raise DataError(f"{args.run} was trained on an in-memory array (vaekit.fit), so it has "
                        "no data of its own: pass --data FILE.npy, or use the model from "
                        f"Python (vaekit.load({str(args.run)!r}))")
    data_dir = args.data_dir if args.data_dir is not None else (
        info.config.data_dir if args.data is None else None)
    return args.data or info.config.data, data_dir


def _eval_data(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The run's model and the requested split, binarized and checked as in training."""
    from vaekit.data import check_data_fits, load_dataset, prepare_eval_data
    from vaekit.data.datasets import IDX_DATASETS, array_file
    from vaekit.data.mnist import find_idx_dir
    from vaekit.run import load_run, read_run_info

    args.device = _check_device(args.device)
    name, data_dir = _data_source(args, read_run_info(args.run))
    data_file = array_file(name)
    _claim_output(args, reads=[data_file] if data_file is not None else [],
                  read_dirs=[find_idx_dir(name, data_dir, download=False)]
                  if name in IDX_DATASETS else [])
    model, info = load_run(args.run, device=args.device)
    data = load_dataset(name, data_dir, info.config.val_fraction,
                        images=info.data.get("images"))
    if data.event_shape != model.event_shape:
        raise DataError(f"the data has examples of shape {data.event_shape}, but the model in "
                        f"{args.run} was trained on shape {model.event_shape}")
    if args.split is None:
        args.split = "all" if args.data and Path(args.data).suffix in (".npy", ".npz") else "test"
    mode = info.data.get("binarize", "none")
    check_data_fits(info.config, data, mode, training=False)
    x = data.split(args.split)
    if len(x) == 0:
        raise DataError(f"the {args.split} split of {data.name} is empty")
    if args.n:
        x = x[:args.n]
    x = prepare_eval_data(x, mode, info.data.get("dequantize"))
    return model, info, (x, data)


ESTIMATE_IW = "importance-weighted estimate of log p(x) (Burda et al. 2016)"
ESTIMATE_SINGLE = "single-sample estimate (the ELBO's), not a likelihood estimate"


def _evaluate_rows(k: int) -> list[tuple[str, str]]:
    """(label, report key) of the printed rows; each label says which estimate it shows."""
    rows = [("ELBO", "elbo"), ("  reconstruction E_q log p(x|z)", "reconstruction"),
            ("  KL(q || p)", "kl")]
    if k == 1:  # log w of one sample: an unbiased estimate of the ELBO, not of log p(x)
        rows += [("ELBO, single-sample estimate (k=1)", "log_likelihood"),
                 ("  its negative (not an NLL)", "nll"), ("  standard error", "nll_stderr"),
                 ("  its bits/dim (not a likelihood's)", "bits_per_dim")]
    else:
        rows += [(f"log p(x), importance-weighted (k={k})", "log_likelihood"),
                 (f"NLL (k={k})", "nll"), ("  standard error", "nll_stderr"),
                 (f"bits/dim (k={k})", "bits_per_dim"),
                 ("log p(x) - ELBO", "gap_log_likelihood_minus_elbo")]
    return [*rows, ("amortization gap", "amortization_gap")]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.evaluate import amortization_gap, evaluate

    model, info, (x, data) = _eval_data(args)
    bin_width = info.data.get("dequantize")  # a continuous density on dequantized data
    report = evaluate(model, x, k=args.k, chunk_rows=args.chunk_rows, bin_width=bin_width,
                      seed=args.seed, progress=not args.json, compile=args.compile)
    report.update({"split": args.split, "data": data.name})
    if args.amortization_gap:
        report.update(amortization_gap(model, x[:args.amortization_gap], seed=args.seed))
    report["estimate"] = ESTIMATE_SINGLE if args.k == 1 else ESTIMATE_IW
    print(f"{data.name} {args.split}: n={report['n']} examples, k={args.k}, "
          f"{report['seconds']:.1f}s  (nats per example)")
    for label, key in _evaluate_rows(args.k):
        if key in report:
            print(f"  {label:<36} {report[key]:>12.4f}")
    print(f"  {'active units':<36} {report['active_units']:>8} / {model.latent_dim}")
    if len(model.latent_groups) > 1:
        print("  latent groups, from the data up: KL (nats), active units")
        for i, (size, kl, active) in enumerate(zip(model.latent_groups, report["kl_per_group"],
                                                   report["active_units_per_group"],
                                                   strict=True)):
            print(f"    group {i + 1} ({size:>4} units) {kl:>23.4f} {active:>8} / {size}")
    if args.k == 1:
        print(f"  k=1: a {ESTIMATE_SINGLE}; use --k {DEFAULT_EVAL_K} or more")
    if "caveat" in report:
        print(f"  caveat: {report['caveat']}")
    if args.json:
        print(json.dumps(report))
    return 0


def _save_array_or_grid(array: Any, output: str, nrow: int = 8, image: bool = True) -> None:
    import numpy as np

    from vaekit import plots
    from vaekit.io import atomic_write_bytes

    out = Path(output)
    if out.suffix == ".npy":
        import io

        buf = io.BytesIO()
        np.save(buf, array.cpu().numpy())
        atomic_write_bytes(out, buf.getvalue())
    elif out.suffix == ".png":
        if not image or array.dim() != 4:
            raise DataError(f"{out}: this model's data are not images; write .npy instead")
        plots.save_grid(array.cpu(), out, nrow=nrow)
    else:
        raise ConfigError(f"-o {out}: the file name must end in .png or .npy")
    print(f"wrote {out}")


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from vaekit.run import load_run

    args.device = _check_device(args.device)
    _claim_output(args)
    model, info = load_run(args.run, device=args.device)
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    x = model.sample(args.n, generator=g, mean=not args.draw, temperature=args.temperature)
    _save_array_or_grid(x, args.output, image=bool(info.data.get("images", True)))
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from vaekit import plots

    model, _info, (x, _) = _eval_data(args)
    x = x[:args.n or 32]
    recon = model.reconstruct(x.to(args.device)).cpu()
    if Path(args.output).suffix == ".png":
        if x.dim() != 4:
            raise DataError(f"{args.output}: this model's data are not images; write .npy")
        plots.save_reconstructions(x, recon, args.output)
        print(f"wrote {args.output}")
    else:
        _save_array_or_grid(torch.stack([x, recon], 1), args.output, image=False)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import io

    import numpy as np
    import torch

    from vaekit.io import atomic_write_bytes

    model, _, (x, _) = _eval_data(args)
    means, log_vars = [], []
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            q = model.encode(x[i:i + 1000].to(args.device))
            q = getattr(q, "base", q)  # a flow posterior: its Gaussian q_0(z|x)
            means.append(q.mean.cpu())
            log_vars.append(q.variance.log().cpu())
    mean, log_var = torch.cat(means).numpy(), torch.cat(log_vars).numpy()
    out = Path(args.output)
    buf = io.BytesIO()
    if out.suffix == ".npz":
        np.savez(buf, mean=mean, log_var=log_var)
    elif out.suffix == ".npy":
        np.save(buf, np.stack([mean, log_var], axis=1))
    else:
        raise ConfigError(f"-o {out}: the file name must end in .npy or .npz")
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {out}: {len(mean)} examples x {mean.shape[1]} latent dimensions")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    import torch

    model, info, (x, _) = _eval_data(args)
    i, j = args.pair
    if not (0 <= i < len(x) and 0 <= j < len(x)):
        raise DataError(f"--pair {i} {j}: the split has {len(x)} examples")
    with torch.no_grad():
        mu = model.encode(x[[i, j]].to(args.device)).mean  # (2, L)
        t = torch.linspace(0, 1, args.steps, device=mu.device)[:, None]
        frames = model.decode_mean((1 - t) * mu[0] + t * mu[1])
    _save_array_or_grid(frames, args.output, nrow=args.steps,
                        image=bool(info.data.get("images", True)))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from vaekit.evaluate import log_likelihood
    from vaekit.io import atomic_write_bytes

    model, _, (x, _) = _eval_data(args)
    if Path(args.output).suffix != ".npy":
        raise ConfigError(f"-o {args.output}: the file name must end in .npy")
    ll = log_likelihood(model, x, k=args.k, chunk_rows=args.chunk_rows,
                        compile=args.compile)
    scores = (-ll.per_example).numpy()
    buf = io.BytesIO()
    np.save(buf, scores)
    atomic_write_bytes(args.output, buf.getvalue())
    print(f"wrote {args.output}: -log p(x) for {len(scores)} examples (mean {scores.mean():.3f}, "
          f"max {scores.max():.3f} nats)")
    caveat = model.likelihood.caveat(x)
    if caveat is not None:
        print(f"caveat: {caveat}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vaekit.run import read_metrics, read_run_info

    info = read_run_info(args.run)
    run = Path(args.run)
    history = [row for row in read_metrics(run) if "train_elbo" in row]
    summary = {"run": str(run), "config": info.config.to_dict(),
               "event_shape": list(info.event_shape), "data": info.data,
               "epochs_done": len(history), "last": history[-1] if history else None,
               "files": sorted(p.name for p in run.iterdir() if not p.name.startswith("."))}
    if args.json:
        print(json.dumps(summary))
        return 0
    c = info.config
    print(f"run {run}: {describe_model(c)}, {c.likelihood} likelihood, "
          f"data {info.data.get('name', c.data)} {tuple(info.event_shape)}")
    print(f"  trained {len(history)}/{c.epochs} epochs, seed {c.seed}, batch {c.batch_size}, "
          f"lr {c.lr} ({c.lr_schedule})")
    if history:
        last = history[-1]
        best = last.get("best_epoch")
        val = [r for r in history if r.get("epoch") == best]
        if val and "val_elbo" in val[0]:
            print(f"  best validation ELBO {val[0]['val_elbo']:.3f} nats at epoch {best}")
        print(f"  last epoch: train ELBO {last['train_elbo']:.3f}, "
              f"skipped steps {last.get('skipped_steps', 0)}")
    print(f"  files: {', '.join(sorted(p.name for p in run.iterdir()))}")
    return 0


def describe_model(config: Config) -> str:
    """The model in a few words: its structure and latent sizes."""
    options = config.options()
    if options is None:
        return f"{config.net} VAE, latent {config.latent_dim}"
    sizes = ", ".join(f"{k} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                      for k, v in vars(options).items())
    return f"{config.model} ({sizes})"


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample,
            "reconstruct": cmd_reconstruct, "encode": cmd_encode,
            "interpolate": cmd_interpolate, "score": cmd_score, "info": cmd_info}


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run one vaekit command; `own_process`: the process is vaekit's own (see `entry`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.own_process = own_process
    try:
        return COMMANDS[args.command](args)
    except VaekitError as e:
        from vaekit.train.loop import TrainingInterrupted

        print(f"vaekit: {'stopped' if isinstance(e, TrainingInterrupted) else 'error'}: {e}",
              file=sys.stderr)
        return 130 if isinstance(e, TrainingInterrupted) else 2
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130


def entry() -> int:
    """The `vaekit` program (console script, `python -m vaekit`, torchrun): `main` in a process
    of its own, which may take process-wide settings that a call from Python must not."""
    return main(own_process=True)
