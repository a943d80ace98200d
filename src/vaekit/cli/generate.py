"""The commands that use a trained model on data or on its prior: sample, reconstruct, encode,
interpolate and score."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vaekit.cli.common import (
    _check_device,
    _claim_output,
    _eval_data,
    _save_array_or_grid,
    apply_sampler_flags,
    require_sampler,
)
from vaekit.config import ConfigError
from vaekit.errors import DataError, NoLikelihoodError


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from vaekit.run import load_run

    args.device = _check_device(args.device)
    _claim_output(args)
    model, info = load_run(args.run, device=args.device)
    require_sampler(model, args.run)
    apply_sampler_flags(model, args)
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

    from vaekit.views import plots

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


def _write_codes(model: Any, x: Any, out: Path, device: str) -> int:
    """A VQ-VAE's codes: int64 (examples, G) indices in [0, K), the h x w grid in raster order
    (.npy, or .npz key `codes`)."""
    import io

    import numpy as np
    import torch

    from vaekit.io import atomic_write_bytes

    with torch.no_grad():
        codes = torch.cat([model.encode(x[i:i + 1000].to(device)).mean.cpu()
                           for i in range(0, len(x), 1000)]).long().numpy()
    buf = io.BytesIO()
    np.savez(buf, codes=codes) if out.suffix == ".npz" else np.save(buf, codes)
    atomic_write_bytes(out, buf.getvalue())
    h, w = model.grid
    print(f"wrote {out}: {len(codes)} examples x {codes.shape[1]} code indices in [0, "
          f"{model.codebook_size}) (a {h}x{w} grid, raster order)")
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import io

    import numpy as np
    import torch

    from vaekit.distributions.categorical import OneHotCategoricals
    from vaekit.evaluate.elbo import condition_rows
    from vaekit.io import atomic_write_bytes

    model, _, (x, _, labels) = _eval_data(args)
    out = Path(args.output)
    if out.suffix not in (".npy", ".npz"):
        raise ConfigError(f"-o {out}: the file name must end in .npy or .npz")
    if model.latent_kind == "discrete" and model.noise_dim == 0:  # a VQ-VAE's code grid
        return _write_codes(model, x, out, args.device)
    means, log_vars = [], []
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            q = model.encode(x[i:i + 1000].to(args.device),
                             condition=condition_rows(labels, i, 1000))
            q = getattr(q, "base", q)  # a flow posterior: its Gaussian q_0(z|x)
            if isinstance(q, OneHotCategoricals):  # discrete: each variable's class probabilities
                means.append(q.probs.cpu())  # (B, N, K)
                continue
            means.append(q.mean.cpu())
            log_vars.append(q.variance.log().cpu())
    mean = torch.cat(means).numpy()
    buf = io.BytesIO()
    if not log_vars:  # (examples, N variables, K classes), each row summing to 1
        np.savez(buf, probs=mean) if out.suffix == ".npz" else np.save(buf, mean)
        atomic_write_bytes(out, buf.getvalue())
        print(f"wrote {out}: {len(mean)} examples x {mean.shape[1]} categorical variables x "
              f"{mean.shape[2]} class probabilities")
        return 0
    log_var = torch.cat(log_vars).numpy()
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
        if model.latent_kind == "discrete" and model.noise_dim == 0:
            # code indices do not average: frame t takes the second example's codes at the
            # first round(t G) positions of the grid, in raster order
            taken = torch.arange(mu.shape[1], device=mu.device) < (t * mu.shape[1]).round()
            path = torch.where(taken, mu[1], mu[0])  # (steps, G)
            print("note: a VQ-VAE's codes are discrete: each frame swaps in more of the "
                  "second example's codes, in raster order", file=sys.stderr)
        else:
            path = (1 - t) * mu[0] + t * mu[1]  # (steps, L)
        frames = model.decode_mean(path, condition=shown)
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
