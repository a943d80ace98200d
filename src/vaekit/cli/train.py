"""`vaekit train`: a new run, or a resumed one."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaekit.cli.parser import _config_from_args, merge_config_values
from vaekit.config import PRESETS, Config, ConfigError


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
        name = result.model.evaluated_name if "val_elbo" in best else \
            result.model.objective_name
        print(f"best {which} {name} {score:.3f} nats at epoch "
              f"{best['epoch']}")
    pictures = sorted(p.name for p in Path(str(result.run_dir)).glob("*.png"))
    print(f"run directory: {result.run_dir}")
    if pictures:
        print(f"pictures: {', '.join(str(Path(str(result.run_dir)) / p) for p in pictures)}")
    return 0
