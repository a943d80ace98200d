"""`vaekit evaluate`: the ELBO, the importance-weighted log p(x) and the diagnostics of a run,
printed and saved as evaluation.json."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vaekit.cli.common import _eval_data, apply_sampler_flags
from vaekit.cli.parser import DEFAULT_BDMC_STEPS, DEFAULT_EVAL_K
from vaekit.config import ConfigError
from vaekit.errors import NoLikelihoodError, VaekitError

ESTIMATE_IW = "importance-weighted estimate of log p(x) (Burda et al. 2016)"


ESTIMATE_POINT_MASS = "the bound log p(x|c(x)) + log p(c(x)) of a point-mass q (exact)"
ESTIMATE_SINGLE = "single-sample estimate (the ELBO's), not a likelihood estimate"


def _evaluate_rows(k: int, point_mass: bool = False) -> list[tuple[str, str]]:
    """(label, report key) of the printed rows; each label says which estimate it shows. A
    model whose q is a point mass (a VQ-VAE) has one bound, log p(x|c(x)) + log p(c(x))."""
    if point_mass:
        return [("bound log p(x|c) + log p(c)", "elbo"), ("  reconstruction log p(x|c)",
                                                         "reconstruction"),
                ("  rate -log p(c)", "kl"), ("NLL bound", "nll"), ("  standard error",
                                                                  "nll_stderr"),
                ("bits/dim (bound)", "bits_per_dim")]
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
    apply_sampler_flags(model, args)
    if args.ais_steps or args.bdmc:  # before the autoencoder's refusal: it names the method
        _check_ais(model, args)
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
    if args.ais_steps or args.bdmc:
        with model.likelihood.main_term_only():
            report.update(_ais_and_bdmc(model, x, labels, args))
    report["estimate"] = ESTIMATE_POINT_MASS if model.noise_dim == 0 else \
        ESTIMATE_SINGLE if args.k == 1 else ESTIMATE_IW
    report.setdefault("k", args.k)
    print(f"{data.name} {args.split}: n={report['n']} examples, k={args.k}, "
          f"{report['seconds']:.1f}s  (nats per example)")
    if "evaluated_as" in report:
        print(f"  every number below is {report['evaluated_as']}")
    point_mass = model.noise_dim == 0
    for label, key in _evaluate_rows(args.k, point_mass):
        if key in report:
            print(f"  {label:<36} {report[key]:>12.4f}")
    if not point_mass:
        print(f"  {'active units':<36} {report['active_units']:>8} / {model.latent_dim}")
    if len(model.latent_groups) > 1:
        print("  latent groups: KL (nats), active units")
        for name, size, kl, active in zip(model.group_names, model.latent_groups,
                                          report["kl_per_group"],
                                          report["active_units_per_group"], strict=True):
            label = f"{name} ({size} units)"
            print(f"    {label:<32} {kl:>10.4f} {active:>8} / {size}")
    if args.k == 1 and not point_mass:
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
    _print_ais(report)
    if "caveat" in report:
        print(f"  caveat: {report['caveat']}")
    _save_report(Path(args.run) / EVALUATION_FILE, report)
    if args.json:
        print(json.dumps(report))
    return 0


def _check_ais(model: Any, args: argparse.Namespace) -> None:
    """One-line refusals of AIS and BDMC where the model cannot have them."""
    from vaekit.evaluate.ais import check_ais_options

    if args.bdmc and not model.can_sample:
        raise NoLikelihoodError(f"--bdmc simulates data from the model; {args.run} has no prior "
                                f"to sample from (fit one: vaekit fit-prior {args.run} ...)")
    if not model.has_joint_density:
        raise NoLikelihoodError(f"--ais-steps/--bdmc need a density over continuous latents, "
                                f"log p(x, z); {args.run} ({type(model).__name__}) has none")
    check_ais_options(model, args.ais_steps or DEFAULT_BDMC_STEPS, args.ais_chains,
                      args.ais_leapfrog, args.ais_start)


def _ais_and_bdmc(model: Any, x: Any, labels: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The report's ais_* keys (--ais-steps) and bdmc_* keys (--bdmc), each with its seconds."""
    import time

    from vaekit.evaluate import ais_log_likelihood, ais_report, bdmc, bdmc_report

    out: dict[str, Any] = {}
    progress = not args.json
    if args.ais_steps:
        start = time.perf_counter()
        result = ais_log_likelihood(model, x, args.ais_steps, args.ais_chains, args.ais_leapfrog,
                                    args.ais_start, chunk_rows=args.chunk_rows, seed=args.seed,
                                    progress=progress, condition=labels)
        out.update(ais_report(result), ais_seconds=round(time.perf_counter() - start, 3))
    if args.bdmc:
        start = time.perf_counter()
        bounds = bdmc(model, args.bdmc, args.ais_steps or DEFAULT_BDMC_STEPS, args.ais_chains,
                      args.ais_leapfrog, chunk_rows=args.chunk_rows, seed=args.seed,
                      progress=progress)
        out.update(bdmc_report(bounds), bdmc_seconds=round(time.perf_counter() - start, 3))
    return out


def _print_ais(report: dict[str, Any]) -> None:
    """The AIS and BDMC rows, where they were asked for."""
    if "ais_nll" in report:
        label = f"NLL, AIS (T={report['ais_steps']}, M={report['ais_chains']})"
        print(f"  {label:<36} {report['ais_nll']:>12.4f}")
        print(f"  {'  standard error':<36} {report['ais_nll_stderr']:>12.4f}")
        print(f"  {'  HMC acceptance rate':<36} {report['ais_acceptance']:>12.4f}")
    if "bdmc_gap" in report:
        print(f"  BDMC on {report['bdmc_n']} simulated examples (T={report['bdmc_steps']}, "
              f"M={report['bdmc_chains']}): log p(x) in [lower, upper]")
        for label, key in (("  lower (forward AIS)", "bdmc_lower"),
                           ("  upper (reverse AIS)", "bdmc_upper"), ("  gap", "bdmc_gap")):
            print(f"  {label:<36} {report[key]:>12.4f}")


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
