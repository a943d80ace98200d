"""The `vaekit` command line: train | evaluate | sample | reconstruct | encode | interpolate |
score | quality | fit-prior | report | serve | info. Bad input ends with a one- or two-line
message and exit status 2, no traceback.

One file per family of commands: `train`, `evaluate` and `quality`, `generate` (sample,
reconstruct, encode, interpolate, score), `fit_prior`, `view` (report, serve) and `info`, with
the flags in `parser` and what they share in `common`. Layer: the top, beside `vaekit.api`; it
may import every layer below, and nothing outside `vaekit.cli` imports it
(see tests/test_architecture.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vaekit.cli.evaluate import cmd_evaluate
from vaekit.cli.fit_prior import cmd_fit_prior
from vaekit.cli.generate import cmd_encode, cmd_interpolate, cmd_reconstruct, cmd_sample, cmd_score
from vaekit.cli.info import cmd_info
from vaekit.cli.parser import DEFAULT_EVAL_K, build_parser, merge_config_values
from vaekit.cli.quality import cmd_quality
from vaekit.cli.train import cmd_train
from vaekit.cli.view import cmd_report, cmd_serve
from vaekit.errors import VaekitError
from vaekit.models.describe import describe_model

__all__ = ["COMMANDS", "DEFAULT_EVAL_K", "build_parser", "describe_model", "entry", "main",
           "merge_config_values"]

COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "sample": cmd_sample,
            "reconstruct": cmd_reconstruct, "encode": cmd_encode,
            "interpolate": cmd_interpolate, "score": cmd_score, "quality": cmd_quality,
            "fit-prior": cmd_fit_prior, "report": cmd_report, "serve": cmd_serve,
            "info": cmd_info}


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
