"""What the commands share: the device, the output file, a run's data and its labels, and
writing an array or a picture."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaekit.config import Config, ConfigError
from vaekit.errors import DataError, NoLikelihoodError


def _check_device(name: str) -> str:
    from vaekit.device import resolve_device

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
    """The run's model and the requested split, binarized and checked as in training: (model,
    run info, (x, dataset, the examples' class labels for a conditional model, else None))."""
    from vaekit.data import load_dataset
    from vaekit.data.datasets import IDX_DATASETS, array_file
    from vaekit.data.mnist import find_idx_dir
    from vaekit.run import load_run, read_run_info
    from vaekit.train.prepare import check_data_fits, prepare_eval_data

    args.device = _check_device(args.device)
    name, data_dir = _data_source(args, read_run_info(args.run))
    data_file = array_file(name)
    folder = [data_file] if data_file is not None and data_file.is_dir() else []
    _claim_output(args, reads=[data_file] if data_file is not None and not folder else [],
                  read_dirs=[find_idx_dir(name, data_dir, download=False)]
                  if name in IDX_DATASETS else folder)
    model, info = load_run(args.run, device=args.device)
    data = load_dataset(name, data_dir, info.config.val_fraction,
                        images=info.data.get("images"), settings=info.config)
    if data.event_shape != model.event_shape:
        raise DataError(f"the data has examples of shape {data.event_shape}, but the model in "
                        f"{args.run} was trained on shape {model.event_shape}")
    if args.split is None:
        args.split = "all" if args.data and Path(args.data).suffix.lower() in (
            ".npy", ".npz", ".csv", ".parquet", ".pq") else "test"
    mode = info.data.get("binarize", "none")
    check_data_fits(info.config, data, mode, training=False)
    x = data.split(args.split)
    if len(x) == 0:
        raise DataError(f"the {args.split} split of {data.name} is empty")
    labels = _condition_labels(model, data, args)
    if args.n:
        x = x[:args.n]
        labels = labels[:args.n] if labels is not None else None
    x = prepare_eval_data(x, mode, info.data.get("dequantize"))
    return model, info, (x, data, labels)


def _condition_labels(model: Any, data: Any, args: argparse.Namespace) -> Any:
    """A conditional model's classes of the split's examples, checked against the model's;
    None for an unconditional model."""
    if not model.condition_dim:
        return None
    labels = data.split_labels(args.split)
    if labels is None:
        raise DataError(f"{args.run} is conditioned on class labels, and {data.name} has none "
                        "to condition on")
    classes = data.classes()
    if classes != model.condition_classes[:len(classes)]:
        raise DataError(f"{data.name}'s classes ({', '.join(classes)}) are not those "
                        f"{args.run} was trained on ({', '.join(model.condition_classes)})")
    return labels


def _save_array_or_grid(array: Any, output: str, nrow: int = 8, image: bool = True) -> None:
    import numpy as np

    from vaekit.io import atomic_write_bytes
    from vaekit.views import plots

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


def require_sampler(model: Any, run: str) -> None:
    """A clear error where the model has no prior to sample from (an autoencoder, or a VQ-VAE
    before its codes have a fitted prior)."""
    if not model.can_sample:
        if model.latent_kind == "discrete":
            what, kind = "a VQ-VAE: it samples only through a prior fitted to its codes", \
                "autoregressive"
        else:
            what, kind = "a plain autoencoder: it samples only through a density fitted to " \
                "its codes", "mog"
        raise NoLikelihoodError(f"{run} is {what}; fit one with: vaekit fit-prior {run} --kind "
                                f"{kind} --out {str(run).rstrip('/')}-{kind}")


#: The flags that choose a fitted diffusion prior's sampler and likelihood on a loaded run.
SAMPLER_FLAGS = ("sampler", "trajectories", "tolerance")


def add_sampler_flags(p: argparse.ArgumentParser) -> None:
    """--sampler, --trajectories and --tolerance, for a run with a fitted diffusion prior."""
    from vaekit.priors.diffusion import SAMPLERS

    p.add_argument("--sampler", help=f"a fitted diffusion prior's sampler, {', '.join(SAMPLERS)}"
                   " (ode: the probability-flow ODE, whose exact density is then log p(z); "
                   "default: the run's)")
    p.add_argument("--trajectories", type=int, metavar="M", help="a diffusion prior's ancestral "
                   "log p(z): the weight of M forward trajectories, averaged inside the log "
                   "(default: the run's)")
    p.add_argument("--tolerance", type=float, help="the ODE solver's rtol = atol (default: the "
                   "run's)")


def apply_sampler_flags(model: Any, args: argparse.Namespace) -> None:
    """Set the flags of `add_sampler_flags` on the model's diffusion prior; a clear error where
    the run has none."""
    chosen = {k: getattr(args, k) for k in SAMPLER_FLAGS if getattr(args, k, None) is not None}
    if not chosen:
        return
    from vaekit.priors.diffusion import DiffusionPrior

    prior = getattr(model, "prior", None)
    if not isinstance(prior, DiffusionPrior):
        flag, value = next(iter(chosen.items()))
        kind = ((getattr(model, "config", None) and model.config.fitted_prior) or {}).get(
            "kind", "its own")
        raise ConfigError(f"--{flag} {value} is for a run with a fitted diffusion prior (vaekit "
                          f"fit-prior --kind diffusion); {args.run} has {kind} prior")
    prior.configure(**chosen)
