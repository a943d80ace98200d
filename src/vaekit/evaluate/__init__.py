"""Honest evaluation: the ELBO, the importance-weighted log-likelihood, annealed importance
sampling with its bidirectional Monte Carlo bounds, bits/dim and the diagnostics of what the
ELBO hides.

Layer: evaluation and sample quality, above the models and the run directory; it may import them
and everything below, never training, the views or the interfaces (see
tests/test_architecture.py).
"""

from __future__ import annotations

import time
from typing import Any

from torch import Tensor

from vaekit.distributions import bits_per_dim
from vaekit.evaluate.ais import AISLogLikelihood, ais_log_likelihood, ais_report
from vaekit.evaluate.bdmc import BDMCBounds, bdmc, bdmc_report
from vaekit.evaluate.diagnostics import (
    active_units,
    active_units_per_group,
    amortization_gap,
    kl_per_dimension,
    posterior_means,
)
from vaekit.evaluate.elbo import dataset_elbo
from vaekit.evaluate.likelihood import (
    DEFAULT_CHUNK_ROWS,
    LogLikelihood,
    log_likelihood,
    marginal_log_likelihood,
)
from vaekit.evaluate.linear import (
    exact_log_likelihood,
    linear_gaussian_marginal,
    ppca_log_likelihood,
)
from vaekit.models import LatentVariableModel

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "AISLogLikelihood",
    "BDMCBounds",
    "LogLikelihood",
    "active_units",
    "active_units_per_group",
    "ais_log_likelihood",
    "ais_report",
    "amortization_gap",
    "bdmc",
    "bdmc_report",
    "bits_per_dim",
    "dataset_elbo",
    "evaluate",
    "exact_log_likelihood",
    "kl_per_dimension",
    "linear_gaussian_marginal",
    "log_likelihood",
    "marginal_log_likelihood",
    "posterior_means",
    "ppca_log_likelihood",
    "side_term_report",
]


def evaluate(model: LatentVariableModel, x: Tensor, k: int = 1,
             chunk_rows: int = DEFAULT_CHUNK_ROWS,
             bin_width: float | None = None, seed: int = 0, progress: bool = False,
             compile: bool | None = None, condition: Any = None,
             class_prior: Tensor | None = None, marginal: bool = False) -> dict[str, Any]:
    """The evaluation report of `vaekit evaluate`: mean nats per example and diagnostics
    (`compile` as in `log_likelihood`; a conditional model is evaluated given each example's
    class label, `condition` (N,): its numbers are log p(x|c), and the report says so; with
    `marginal`, also its log p(x) = log sum_c p(c) p(x|c), p(c) = `class_prior`).

    A likelihood with a `side_term` (a table's missingness, m) is evaluated on the data's own
    part: the ELBO, log p(x) and bits/dim are those of the values, log p(x_obs), comparable
    with a model without the side term; the side term's log p(m|x_obs) = log p(x_obs, m) -
    log p(x_obs), both importance-weighted with the same noise, is reported apart
    (`side_term_report`)."""
    start = time.perf_counter()
    with model.likelihood.main_term_only():
        terms = dataset_elbo(model, x, seed=seed, units=True, condition=condition)
        ll = log_likelihood(model, x, k=k, chunk_rows=chunk_rows, seed=seed, progress=progress,
                            compile=compile, condition=condition)
        kl_dims = kl_per_dimension(model, x, elbo_terms=terms)
    groups = active_units_per_group(model, x, condition=condition)
    report: dict[str, Any] = {
        "elbo": float(terms["elbo"].double().mean()),
        "reconstruction": float(terms["reconstruction"].double().mean()),
        "kl": float(terms["kl"].double().mean()),
        "log_likelihood": ll.mean,
        "nll": -ll.mean,
        "nll_stderr": ll.stderr,
        "bits_per_dim": bits_per_dim(-ll.mean, model.data_dim, bin_width),
        "gap_log_likelihood_minus_elbo": ll.mean - float(terms["elbo"].double().mean()),
        "active_units": sum(groups),
        "latent_dim": model.latent_dim,
        "latent_groups": list(model.latent_groups),
        "group_names": model.group_names,
        "kl_per_group": [round(float(v), 5) for v in terms["kl_groups"].double().mean(0)],
        "active_units_per_group": groups,
        "kl_per_dim": None if kl_dims is None else [round(float(v), 5) for v in kl_dims],
        "k": k,
        "n": len(x),
    }
    if model.condition_dim:
        report["conditioned_on"] = ("each example's true class label: these are log p(x|c), "
                                    "not log p(x)")
    if model.likelihood.side_term is not None:
        report.update(side_term_report(model, x, ll, chunk_rows=chunk_rows, seed=seed,
                                       progress=progress, compile=compile, condition=condition))
    if marginal:
        with model.likelihood.main_term_only():
            m = marginal_log_likelihood(model, x, k=k, class_prior=class_prior,
                                        chunk_rows=chunk_rows, seed=seed, progress=progress,
                                        compile=compile)
        report.update({"marginal_log_likelihood": m.mean, "marginal_nll": -m.mean,
                       "marginal_nll_stderr": m.stderr,
                       "class_prior": "uniform" if class_prior is None else
                       "the training set's class frequencies"})
    report["latent_kind"] = model.latent_kind
    if model.evaluation_note is not None:
        report["evaluated_as"] = model.evaluation_note
    caveat = model.likelihood.caveat(x)
    if caveat is not None:
        report["caveat"] = caveat
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def side_term_report(model: LatentVariableModel, x: Tensor, main: LogLikelihood,
                     **options: Any) -> dict[str, Any]:
    """The side term S of the likelihood (`Likelihood.side_term`, e.g. "missingness") beside
    the `main` estimate of log p(x): the joint log p(x, S) with the same k and seed (so the
    same noise), and log p(S|x) = log p(x, S) - log p(x) per example. The difference of two
    importance-weighted estimates is no bound, but it converges to log p(S|x) as k grows; at
    k = 1 it is the single-sample log p(S|z) of the ELBO's samples."""
    name = model.likelihood.side_term
    joint = log_likelihood(model, x, k=main.k, **options)
    side = LogLikelihood(joint.per_example - main.per_example, main.k)
    return {"side_term": name, "side_term_of": list(model.likelihood.side_term_of),
            f"{name}_log_likelihood": side.mean,
            f"{name}_log_likelihood_stderr": side.stderr,
            "joint_log_likelihood": joint.mean, "joint_nll": -joint.mean,
            "log_likelihood_is": f"the data's own, without the {name}: compare it with a model "
                                 f"that has no {name} term"}
