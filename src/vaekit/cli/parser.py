"""The `vaekit` command line's parser: one flag per Config field and per option of each model
(`--MODEL-OPTION`), and the commands' own flags."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from typing import Any

from vaekit.cli.common import add_sampler_flags
from vaekit.cli.fit_prior import add_fit_prior_parser
from vaekit.cli.quality import add_quality_parser
from vaekit.cli.view import add_view_parsers
from vaekit.config import (
    PRESETS,
    Config,
    _flag,
    coerce,
    field_choices,
    load_config_file,
    registry,
)

EPILOG = ("Docs: the manual in docs/ (mkdocs serve). Every value is per example, in nats, "
          "summed over data dimensions.")
#: `vaekit evaluate`'s importance samples: enough for an estimate worth the name log p(x).
DEFAULT_EVAL_K = 1000
#: `vaekit evaluate --bdmc`'s annealing steps when --ais-steps is not given
DEFAULT_BDMC_STEPS = 100


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
        if f.name in ("model_options", "fitted_prior", "condition_classes"):
            # per model, below; fit-prior's own; written by training
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
                                help=_with_default(f.metadata.get("help", ""), default))


#: The prefix of the argparse destination of a model's own option: "model_option:MODEL:NAME".
_OPTION = "model_option:"


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

    def add_ais(p: argparse.ArgumentParser) -> None:
        from vaekit.evaluate.ais import STARTS

        p.add_argument("--ais-steps", type=_positive_int, metavar="T", help="also estimate "
                       "log p(x) by annealed importance sampling with T intermediate "
                       "distributions (HMC; Wu et al. 2017 use 10000); the steps of --bdmc "
                       f"(default there: {DEFAULT_BDMC_STEPS})")
        p.add_argument("--ais-chains", type=_positive_int, default=16, metavar="M",
                       help="AIS chains per example (default: 16)")
        p.add_argument("--ais-leapfrog", type=_positive_int, default=10, metavar="L",
                       help="leapfrog steps per HMC transition (default: 10)")
        p.add_argument("--ais-start", choices=tuple(STARTS), default="prior",
                       help="where the AIS path starts: " + "; ".join(
                           f"{k}: {v}" for k, v in STARTS.items()) + " (default: prior)")
        p.add_argument("--bdmc", type=_positive_int, metavar="N", help="simulate N examples "
                       "from the model and bound their log p(x) by forward and reverse AIS "
                       "(bidirectional Monte Carlo): the gap says how far to trust AIS")

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
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise and of a "
                   "diffusion prior's trajectories (default: 0)")
    add_sampler_flags(p)
    add_compile(p)
    p.add_argument("--marginal", action="store_true", help="a conditional run: also its "
                   "log p(x) = log sum_c p(c) p(x|c), p(c) the training frequencies (costs one "
                   "evaluation per class)")
    p.add_argument("--amortization-gap", type=_positive_int, default=0, metavar="M",
                   help="also measure the amortization gap on the first M examples")
    add_ais(p)
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")

    p = sub.add_parser("sample", help="draw samples from the prior through the decoder")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("-n", type=_positive_int, default=64, help="number of samples (default: 64)")
    add_output(p, "FILE.png (a grid), FILE.npy, or FILE.csv (a table's rows)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--draw", action="store_true", help="sample x ~ p(x|z) instead of its mean "
                   "(always, for a table)")
    p.add_argument("--temperature", type=_temperature, default=1.0, metavar="T",
                   help="scale the prior's noise by T: below 1, colder, more typical samples "
                   "(default: 1)")
    p.add_argument("--bounds", action="store_true", help="a table's numbers clipped to the "
                   "training range of their column")
    p.add_argument("--missing", choices=("draw", "impute"), default="draw",
                   help="a table's columns with missing cells in training: draw which cells "
                   "are missing, as the model learned (default), or impute every cell")
    p.add_argument("--condition", metavar="CLASS", help="a conditional run (trained with "
                   "--condition label): draw every sample of this class, by name or index "
                   "(default: the classes in turn, column j of a grid being class j)")
    add_sampler_flags(p)
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

    add_quality_parser(sub, _positive_int, _temperature)
    add_fit_prior_parser(sub, _positive_int)
    add_view_parsers(sub, _positive_int)

    p = sub.add_parser("info", help="what a run directory holds")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


# ---------------------------------------------------------------------------- commands
