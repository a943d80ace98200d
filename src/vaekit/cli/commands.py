"""The `vaekit` commands: each takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vaekit.cli.parser import DEFAULT_EVAL_K, _config_from_args, merge_config_values
from vaekit.config import PRESETS, Config, ConfigError
from vaekit.errors import DataError, NoLikelihoodError, VaekitError


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
        print(f"best {which} {result.model.objective_name} {score:.3f} nats at epoch "
              f"{best['epoch']}")
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
    """The run's model and the requested split, binarized and checked as in training: (model,
    run info, (x, dataset, the examples' class labels for a conditional model, else None))."""
    from vaekit.data import check_data_fits, load_dataset, prepare_eval_data
    from vaekit.data.datasets import IDX_DATASETS, array_file
    from vaekit.data.mnist import find_idx_dir
    from vaekit.run import load_run, read_run_info

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
    import torch

    from vaekit.evaluate import amortization_gap, evaluate
    from vaekit.run import EVALUATION_FILE

    model, info, (x, data, labels) = _eval_data(args)
    if not model.has_likelihood:
        raise NoLikelihoodError(f"{args.run} is a plain autoencoder: it has no likelihood, so no "
                                f"ELBO, log p(x) or bits/dim; {_reconstruction_error(model, x)} "
                                f"on {data.name} {args.split}")
    bin_width = info.data.get("dequantize")  # a continuous density on dequantized data
    if args.marginal and not model.condition_dim:
        raise ConfigError(f"--marginal is for a conditional run; {args.run} is not one (its "
                          "log p(x) is the NLL row already)")
    counts = info.data.get("class_counts")
    class_prior = torch.tensor(counts, dtype=torch.float64) if args.marginal and counts else None
    report = evaluate(model, x, k=args.k, chunk_rows=args.chunk_rows, bin_width=bin_width,
                      seed=args.seed, progress=not args.json, compile=args.compile,
                      condition=labels, class_prior=class_prior, marginal=args.marginal)
    report.update({"split": args.split, "data": data.name})
    if args.amortization_gap:  # of the values' likelihood, as the rows above
        with model.likelihood.main_term_only():
            report.update(amortization_gap(model, x[:args.amortization_gap], seed=args.seed))
    report["estimate"] = ESTIMATE_SINGLE if args.k == 1 else ESTIMATE_IW
    report.setdefault("k", args.k)
    print(f"{data.name} {args.split}: n={report['n']} examples, k={args.k}, "
          f"{report['seconds']:.1f}s  (nats per example)")
    for label, key in _evaluate_rows(args.k):
        if key in report:
            print(f"  {label:<36} {report[key]:>12.4f}")
    print(f"  {'active units':<36} {report['active_units']:>8} / {model.latent_dim}")
    if len(model.latent_groups) > 1:
        print("  latent groups: KL (nats), active units")
        for name, size, kl, active in zip(model.group_names, model.latent_groups,
                                          report["kl_per_group"],
                                          report["active_units_per_group"], strict=True):
            label = f"{name} ({size} units)"
            print(f"    {label:<32} {kl:>10.4f} {active:>8} / {size}")
    if args.k == 1:
        print(f"  k=1: a {ESTIMATE_SINGLE}; use --k {DEFAULT_EVAL_K} or more")
    if "side_term" in report:
        _print_side_term(report, args.k)
    if "conditioned_on" in report:
        print(f"  conditional model: given {report['conditioned_on']}")
    if "marginal_nll" in report:
        print(f"  {'marginal NLL, -log sum_c p(c) p(x|c)':<36} {report['marginal_nll']:>12.4f}")
        print(f"  {'  standard error':<36} {report['marginal_nll_stderr']:>12.4f}")
        print(f"  (k={args.k} for each of {model.condition_dim} classes; p(c): "
              f"{report['class_prior']}; this one compares with an unconditional NLL)")
    if "caveat" in report:
        print(f"  caveat: {report['caveat']}")
    _save_report(Path(args.run) / EVALUATION_FILE, report)
    if args.json:
        print(json.dumps(report))
    return 0


def _print_side_term(report: dict[str, Any], k: int) -> None:
    """The rows of the likelihood's side term (a table's missingness), apart from the data's."""
    name, of = report["side_term"], ", ".join(report["side_term_of"])
    estimate = f"k={k}" if k > 1 else "k=1, single-sample"
    print(f"  {f'log p({name} | x), {estimate}':<36} "
          f"{report[f'{name}_log_likelihood']:>12.4f}")
    print(f"  {'  standard error':<36} {report[f'{name}_log_likelihood_stderr']:>12.4f}")
    print(f"  {f'log p(x, {name}), joint':<36} {report['joint_log_likelihood']:>12.4f}")
    print(f"  ({name} of {of}: modelled and trained on, but left out of the rows above, which "
          f"are the values' alone and compare with a model without it)")


def _save_report(path: Path, report: dict[str, Any]) -> None:
    """The latest report, kept in the run directory for `vaekit report`; a run directory that
    cannot be written to (read-only, say) gets a note, not a failure."""
    from vaekit.io import atomic_write_json

    try:
        atomic_write_json(path, report)
    except VaekitError as e:  # atomic_write_* report an OSError as a VaekitError
        print(f"note: could not save the report as {path}: {e}", file=sys.stderr)


def _reconstruction_error(model: Any, x: Any) -> str:
    """The reconstruction error of an autoencoder on x, in words."""
    import torch

    device = next(model.parameters()).device
    nll = squared = 0.0
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            batch = x[i:i + 1000].to(device)
            nll -= float(model.terms(batch).log_px_z[0].double().sum())
            squared += float((model.reconstruct(batch) - batch).double().pow(2).flatten(1)
                             .sum(1).sum())
    return (f"its reconstruction error is {nll / len(x):.3f} nats per example "
            f"(-log p(x|f(x))), squared error {squared / len(x):.4f}")


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
    require_sampler(model, args.run)
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    table = Path(args.output).suffix.lower() == ".csv"
    if table != bool(info.config.table):
        raise ConfigError(f"-o {args.output}: " + (
            "a table's samples are written as .csv (or .npy, encoded)" if not table or
            Path(args.output).suffix == ".png" else "only a run trained on a table writes .csv"))
    if (args.bounds or args.missing != "draw") and not info.config.table:
        raise ConfigError(f"--{'bounds' if args.bounds else 'missing'} applies to a run "
                          "trained on a table")
    condition = _sample_condition(model, args)
    # a table's rows are draws of every cell (the mean of a categorical is no category)
    x = model.sample(args.n, generator=g, mean=not (args.draw or info.config.table),
                     temperature=args.temperature, condition=condition)
    if table:
        from vaekit.data.tables import TableSchema
        from vaekit.io import atomic_write_text

        schema = TableSchema.from_dict(info.config.table)
        if args.missing == "impute":
            from vaekit.data.table_missing import fill_missing

            x = fill_missing(x, len(schema.columns))
        frame = schema.inverse(x, bounds=args.bounds)
        if condition is not None:  # the condition column, first: each row's class
            from vaekit.data.table_condition import with_condition_column

            labels = model.class_labels(condition, args.n, "sample")  # (n,)
            assert labels is not None  # a conditional model
            frame = with_condition_column(frame, info.config.condition,
                                          model.condition_classes, labels.cpu())
        atomic_write_text(args.output, frame.to_csv(index=False))
        holes = int(frame.isna().to_numpy().sum())
        print(f"wrote {args.output}: {len(frame)} rows x {frame.shape[1]} columns"
              + (f", {holes} missing cells (--missing impute for none)" if holes else ""))
        return 0
    by_class = model.condition_dim and args.condition is None
    _save_array_or_grid(x, args.output, image=bool(info.data.get("images", True)),
                        nrow=model.condition_dim if by_class else 8)
    return 0


def _sample_condition(model: Any, args: argparse.Namespace) -> Any:
    """`vaekit sample`'s classes: --condition CLASS for every draw, or (without it) the classes
    in turn, so that column j of a grid is class j."""
    import torch

    if not model.condition_dim:
        if args.condition is not None:
            raise ConfigError(f"--condition: {args.run} is not a conditional model")
        return None
    if args.condition is None:
        print(f"note: {args.run} is conditional; without --condition the draws take its "
              f"{model.condition_dim} classes in turn", file=sys.stderr)
        return torch.arange(args.n) % model.condition_dim
    name = args.condition  # a class name, or its index
    if name not in model.condition_classes and name.lstrip("-").isdigit():
        return int(name)
    return name


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import torch

    from vaekit import plots

    model, _info, (x, _, labels) = _eval_data(args)
    x = x[:args.n or 32]
    recon = model.reconstruct(x.to(args.device), condition=(
        labels[:len(x)] if labels is not None else None)).cpu()
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

    from vaekit.evaluate.elbo import condition_rows
    from vaekit.io import atomic_write_bytes

    model, _, (x, _, labels) = _eval_data(args)
    means, log_vars = [], []
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            q = model.encode(x[i:i + 1000].to(args.device),
                             condition=condition_rows(labels, i, 1000))
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

    model, info, (x, _, labels) = _eval_data(args)
    i, j = args.pair
    if not (0 <= i < len(x) and 0 <= j < len(x)):
        raise DataError(f"--pair {i} {j}: the split has {len(x)} examples")
    pair = labels[[i, j]] if labels is not None else None
    with torch.no_grad():
        mu = model.encode(x[[i, j]].to(args.device), condition=pair).mean  # (2, L)
        t = torch.linspace(0, 1, args.steps, device=mu.device)[:, None]
        # a conditional model decodes every frame as the first example's class
        shown = int(pair[0]) if pair is not None else None
        frames = model.decode_mean((1 - t) * mu[0] + t * mu[1], condition=shown)
    if pair is not None:
        print(f"note: every frame is decoded as class {model.condition_classes[shown]}, the "
              "first example's", file=sys.stderr)
    _save_array_or_grid(frames, args.output, nrow=args.steps,
                        image=bool(info.data.get("images", True)))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from vaekit.evaluate import log_likelihood
    from vaekit.io import atomic_write_bytes

    model, _, (x, _, labels) = _eval_data(args)
    if not model.has_likelihood:
        raise NoLikelihoodError(f"{args.run} is a plain autoencoder: it has no likelihood to "
                                "score -log p(x) with; use `vaekit reconstruct` for its "
                                "reconstruction error")
    if Path(args.output).suffix != ".npy":
        raise ConfigError(f"-o {args.output}: the file name must end in .npy")
    ll = log_likelihood(model, x, k=args.k, chunk_rows=args.chunk_rows,
                        compile=args.compile, condition=labels)
    scores = (-ll.per_example).numpy()
    buf = io.BytesIO()
    np.save(buf, scores)
    atomic_write_bytes(args.output, buf.getvalue())
    given = " given each example's class, -log p(x|c)" if labels is not None else ""
    if model.likelihood.side_term is not None:  # the model's whole likelihood, as trained
        given += f" (with the {model.likelihood.side_term} of " \
                 f"{', '.join(model.likelihood.side_term_of)})"
    print(f"wrote {args.output}: -log p(x) for {len(scores)} examples{given} (mean "
          f"{scores.mean():.3f}, max {scores.max():.3f} nats)")
    caveat = model.likelihood.caveat(x)
    if caveat is not None:
        print(f"caveat: {caveat}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from vaekit.models import MODELS
    from vaekit.models.autoencoder import RECONSTRUCTION_OBJECTIVE
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
        name = "ELBO" if MODELS[c.model].has_likelihood else RECONSTRUCTION_OBJECTIVE
        if val and "val_elbo" in val[0]:
            print(f"  best validation {name} {val[0]['val_elbo']:.3f} nats at epoch {best}")
        print(f"  last epoch: train {name} {last['train_elbo']:.3f}, "
              f"skipped steps {last.get('skipped_steps', 0)}")
    print(f"  files: {', '.join(sorted(p.name for p in run.iterdir()))}")
    return 0


def require_sampler(model: Any, run: str) -> None:
    """A clear error where the model has no prior to sample from (an autoencoder)."""
    if not model.can_sample:
        raise NoLikelihoodError(f"{run} is a plain autoencoder: it samples only through a "
                                "density fitted to its codes; fit one with: vaekit fit-prior "
                                f"{run} --kind mog --out {str(run).rstrip('/')}-mog")


def describe_model(config: Config) -> str:
    """The model in a few words: its structure, latent sizes and any fitted prior."""
    words = _structure(config)
    if config.condition_classes:
        words += (f", conditioned on {len(config.condition_classes)} class labels (a "
                  "conditional VAE)")
    if config.fitted_prior:
        words += (f", with a {config.fitted_prior['kind']} prior fitted to its codes "
                  f"(vaekit fit-prior from {config.fitted_prior.get('source', '?')})")
    return words


def _structure(config: Config) -> str:
    options = config.options()
    if config.model == "ae":
        return f"{config.net} autoencoder (no likelihood), latent {config.latent_dim}"
    if options is None:
        return f"{config.net} VAE, latent {config.latent_dim}"
    sizes = ", ".join(f"{k} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                      for k, v in vars(options).items())
    return f"{config.model} ({sizes})"
