"""The second stage: fit a prior to a trained model's codes and write a new run directory.

    vaekit fit-prior RUN --kind gaussian|mog|flow|diffusion --out NEW_RUN
    vaekit fit-prior VQ_RUN --kind autoregressive --out NEW_RUN

The encoder and decoder are frozen. The codes are draws z ~ q(z|x) of the training split for a
VAE (fresh draws every epoch for a prior trained by gradient steps; binarized data as the run
saw them, one fixed draw), z = f(x) for an autoencoder and the index grid c(x) for a VQ-VAE
(whose prior must be discrete: `--kind autoregressive`). NEW_RUN is self-contained: the same
config with a `fitted_prior` record, the weights with the new prior's, and the source run's
training record, so `sample`, `evaluate` (for a VAE; an autoencoder has no likelihood, prior or
not), `quality` and `info` take it like any other run.

A prior trained by gradient steps (`flow`, `diffusion`) keeps prior-checkpoint.safetensors in
NEW_RUN after each epoch (its weights, Adam's state, the code generator's state); `--resume`
continues from it exactly. config.json is written last: a NEW_RUN without it is an unfinished
fit, never a run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vaekit.data import load_dataset
from vaekit.distributions import DiagonalNormal, rsample_and_log_prob
from vaekit.errors import ConfigError, DataError, RunDirError
from vaekit.io import atomic_write_bytes, atomic_write_json, load_tensors, save_tensors
from vaekit.models import LatentVariableModel
from vaekit.priors.fitted import (
    DISCRETE_KINDS,
    FITTED_PRIOR_MODELS,
    FITTED_PRIORS,
    GaussianPrior,
    MixturePriorFitted,
    fitted_prior_options,
    log_prob_nats,
)
from vaekit.priors.probability_flow import EXACT_DIVERGENCE_MAX_DIM
from vaekit.run import (
    ARRAY_DATA,
    CONFIG_FILE,
    METRICS_FILE,
    RunInfo,
    append_metrics,
    load_run,
    read_run_info,
    save_weights,
)
from vaekit.train.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from vaekit.train.prepare import prepare_eval_data

PRIOR_CHECKPOINT = "prior-checkpoint.safetensors"
PRIOR_METRICS = "prior_metrics.jsonl"
#: the test codes whose mean log p(z) a diffusion prior's fit reports (its log p(z) costs an ODE
#: solve with L vector-Jacobian products per step, or M x T denoiser passes, per code)
COSTLY_TEST_CODES = 500


class CodeSource:
    """Codes (N, L) of the training split: fresh draws z ~ q(z|x) from a generator for a VAE
    (z_L ~ q(z_L|x), L the top group's size, for a hierarchy), the fixed z = f(x) of an
    autoencoder or c(x) of a VQ-VAE (both point masses)."""

    def __init__(self, model: LatentVariableModel, x: Tensor, batch: int = 1000) -> None:
        self.model, self.x, self.batch = model, x, batch
        self._fixed: Tensor | None = None

    @torch.no_grad()
    def draw(self, generator: torch.Generator) -> Tensor:
        if not self.model.has_likelihood or self.model.noise_dim == 0:  # a point mass: the
            # same codes every time
            if self._fixed is None:
                self._fixed = torch.cat([self.model.encode(self.x[i:i + self.batch]).mean
                                         for i in range(0, len(self.x), self.batch)])
            return self._fixed
        draws, codes = [], self.model.prior_slice
        for i in range(0, len(self.x), self.batch):
            q = self.model.encode(self.x[i:i + self.batch])
            if codes != slice(0, self.model.latent_dim):  # a hierarchy's top group, whose
                # posterior q(z_L|x) reads only x (the groups above it: none)
                assert isinstance(q, DiagonalNormal)
                q = DiagonalNormal(q.mean[:, codes], q.log_var[:, codes])
            noise = torch.randn(1, len(q.mean), codes.stop - codes.start, generator=generator)
            draws.append(rsample_and_log_prob(q, noise)[0][0])  # (B, L)
        return torch.cat(draws)


def fit_prior(run: str | Path, kind: str, out: str | Path, *, options: dict[str, Any],
              epochs: int = 50, batch_size: int = 500, lr: float = 1e-3, seed: int = 0,
              resume: bool = False, progress: bool = True,
              time_limit: float | None = None) -> Path:
    """Fit the prior `kind` (a key of FITTED_PRIORS) to RUN's codes; write NEW_RUN `out`. A
    prior trained by gradient steps stops after `epochs` or `time_limit` seconds (checked after
    each epoch), whichever comes first."""
    run, out = Path(run), Path(out)
    if kind not in FITTED_PRIORS:
        raise ConfigError(f"unknown --kind {kind!r}; choose from: {', '.join(FITTED_PRIORS)}")
    info = read_run_info(run)
    if info.config.model not in FITTED_PRIOR_MODELS:
        raise ConfigError(f"fit-prior fits p(z) of --model {', '.join(FITTED_PRIOR_MODELS)} "
                          f"(a hierarchy's top group); {run} is --model "
                          f"{info.config.model}, whose prior is its own")
    discrete = info.config.model == "vqvae"
    if discrete != (kind in DISCRETE_KINDS):
        raise ConfigError(
            f"--kind {kind} fits continuous codes; {run} is a VQ-VAE, whose codes are discrete: "
            f"use --kind {' or '.join(DISCRETE_KINDS)}" if discrete else
            f"--kind {kind} fits discrete codes (a VQ-VAE's); {run} is --model "
            f"{info.config.model}, whose codes are continuous")
    if info.config.condition:
        raise ConfigError(f"fit-prior fits one unconditional p(z); {run} is a conditional VAE "
                          f"(--condition {info.config.condition}), whose codes depend on "
                          "their class")
    if info.config.data == ARRAY_DATA:
        raise DataError(f"{run} was trained on an in-memory array (vaekit.fit), so it has no "
                        "data of its own to draw codes from")
    _claim_run_dir(out, run, resume)
    if time_limit is not None and not time_limit > 0:
        raise ConfigError(f"--time-limit {time_limit}: must be a positive number of seconds")
    kind, options = fitted_prior_options({"kind": kind, **options}, saved=False)
    record = {"kind": kind, **options}  # every option, so that later defaults never change it
    settings = {"kind": kind, **options, "source": str(run.resolve()), "seed": seed, "lr": lr,
                "batch_size": batch_size}
    model, _ = load_run(run)
    model.requires_grad_(False)
    if discrete:  # the code space's size is the model's, never a choice
        record["categories"] = options["categories"] = int(getattr(model, "codebook_size"))  # noqa: B009
        settings["categories"] = record["categories"]
    data = load_dataset(info.config.data, info.config.data_dir, info.config.val_fraction,
                        images=info.data.get("images"), settings=info.config)
    x = prepare_eval_data(data.train, info.data.get("binarize", "none"),
                          info.data.get("dequantize"))
    held_out = prepare_eval_data(data.test, info.data.get("binarize", "none"),
                                 info.data.get("dequantize"))
    codes, test_codes = CodeSource(model, x), CodeSource(model, held_out)
    val = prepare_eval_data(data.val, info.data.get("binarize", "none"),
                            info.data.get("dequantize"))
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed alone
        torch.manual_seed(seed)
        dim = model.prior_slice.stop - model.prior_slice.start  # the codes' size
        prior = FITTED_PRIORS[kind].build(dim, options)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(prior, GaussianPrior):
        prior.fit(codes.draw(g))
    elif isinstance(prior, MixturePriorFitted):
        prior.fit(codes.draw(g), seed)
    else:  # trained by gradient steps: flow, diffusion, autoregressive
        val_codes = CodeSource(model, val).draw(torch.Generator().manual_seed(seed + 2)) \
            if len(val) else None
        _train_prior(prior, codes, out, TrainingPlan(epochs, batch_size, lr, time_limit,
                                                     FITTED_PRIORS[kind].ema),
                     g, resume, progress, settings, val_codes)
    test_log_pz = None  # mean log p(z) of the test split's codes (the ancestral's: a bound)
    test_n = len(held_out) if kind != "diffusion" else min(len(held_out), COSTLY_TEST_CODES)
    if test_n:
        reseed = getattr(prior, "reseed", None)
        if callable(reseed):
            reseed(seed + 1)
        test_log_pz = log_prob_nats(prior, test_codes.draw(
            torch.Generator().manual_seed(seed + 1))[:test_n])
    if progress:
        what = "no test split" if test_log_pz is None else \
            f"test codes' log p(z) {test_log_pz:.3f} nats" + (
                f" (the first {test_n})" if test_n < len(held_out) else "") + \
            _density_caveat(kind, options, dim)
        article = "an" if kind[0] in "aeiou" else "a"
        print(f"fitted {article} {kind} prior to {len(x)} codes of {run} in "
              f"{time.perf_counter() - start:.1f}s: {what}", file=sys.stderr)
    _write_run(model, prior, info, run, out, {**record, "source": str(run)},
               {"kind": kind, "test_codes_log_pz": test_log_pz, "test_codes": test_n,
                "seed": seed})
    return out


def _density_caveat(kind: str, options: dict[str, Any], dim: int) -> str:
    """What the fitted prior's log p(z) is, where it is not exact: the ancestral chain's bound,
    or above `EXACT_DIVERGENCE_MAX_DIM` the ODE's density by Hutchinson's estimator."""
    if kind != "diffusion":
        return ""
    if options["sampler"] != "ode":
        return " (a bound)"
    if dim > EXACT_DIVERGENCE_MAX_DIM:
        return (f" (Hutchinson's unbiased estimate of the ODE's density in {dim} dimensions: an "
                "importance-weighted log p(x) with it is a bound only approximately)")
    return ""


def _claim_run_dir(out: Path, run: Path, resume: bool) -> None:
    if out.resolve() == run.resolve():
        raise ConfigError(f"--out {out} is the source run; fit-prior writes a new run directory")
    if resume:
        if not (out / PRIOR_CHECKPOINT).exists():
            raise RunDirError(f"--resume: {out / PRIOR_CHECKPOINT} does not exist")
        if (out / CONFIG_FILE).exists():
            raise RunDirError(f"--resume: {out} is already a finished run")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists; choose a new directory (or --resume an "
                          "unfinished fit)")


@dataclass(frozen=True)
class TrainingPlan:
    """How a prior is trained by gradient steps: Adam at `lr` on minibatches, for `epochs` or
    until `time_limit` seconds have passed, with an EMA of the weights at decay `ema` (0: none),
    which becomes the run's prior (VDVAE, NVAE and DDPM all evaluate an EMA)."""

    epochs: int
    batch_size: int
    lr: float
    time_limit: float | None = None
    ema: float = 0.0


def _train_prior(prior: Any, codes: CodeSource, out: Path, plan: TrainingPlan,
                 g: torch.Generator, resume: bool, progress: bool, settings: dict[str, Any],
                 val_codes: Tensor | None = None) -> None:
    """Adam on the prior's `training_loss` (-mean log p(z) for a flow, the denoising loss for
    a diffusion) over minibatches of fresh codes each epoch; the validation loss of the
    (averaged) weights on held-out codes; a checkpoint after every epoch."""
    optimizer = torch.optim.Adam(prior.parameters(), lr=plan.lr)
    average: dict[str, Tensor] = {}  # the EMA of the weights (none: plan.ema = 0)
    first = 0
    if resume:
        tensors, meta = load_tensors(out / PRIOR_CHECKPOINT)
        saved = (meta or {}).get("settings", {})
        changed = [key for key in settings if saved.get(key) != settings[key]]
        if changed:
            raise ConfigError(f"--resume: {', '.join(changed)} differ from the unfinished fit in "
                              f"{out} ({', '.join(f'{k}={saved.get(k)!r}' for k in changed)}); "
                              "resume with the same settings")
        prior.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("prior.")})
        average = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        optimizer_from_tensors(optimizer, tensors, (meta or {})["optimizer"])
        g.set_state(tensors["generator_state"])
        first = int((meta or {})["epoch"])
    else:
        prior.init_from_codes(codes.draw(torch.Generator().manual_seed(g.initial_seed())))
        average = {k: v.detach().clone() for k, v in prior.state_dict().items()} \
            if plan.ema else {}
    began = time.perf_counter()
    for epoch in range(first, plan.epochs):
        start = time.perf_counter()
        z = codes.draw(g)
        perm = torch.randperm(len(z), generator=g)
        total = 0.0
        for i in range(0, len(z), plan.batch_size):
            batch = z[perm[i:i + plan.batch_size]]
            loss = prior.training_loss(batch, g)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 100.0)
            optimizer.step()
            if plan.ema:
                _update_average(average, prior, plan.ema)
            total += float(loss.detach()) * len(batch)
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / len(z)}
        if val_codes is not None:
            row["val_loss"] = _validation_loss(prior, average, val_codes)
        row["seconds"] = round(time.perf_counter() - start, 3)
        opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
        save_tensors(out / PRIOR_CHECKPOINT, {
            **{f"prior.{k}": v for k, v in prior.state_dict().items()},
            **{f"ema.{k}": v for k, v in average.items()}, **opt_tensors,
            "generator_state": g.get_state()}, {"epoch": epoch + 1, "optimizer": opt_meta,
                                                "settings": settings})
        append_metrics(out, row, PRIOR_METRICS)
        if progress:
            val = f"  val {row['val_loss']:.3f}" if "val_loss" in row else ""
            print(f"prior epoch {epoch + 1:>3}/{plan.epochs}  loss {row['train_loss']:.3f}{val}"
                  f"  ({row['seconds']:.1f}s)", file=sys.stderr)
        if plan.time_limit is not None and time.perf_counter() - began >= plan.time_limit:
            if progress:
                print(f"prior: --time-limit {plan.time_limit:g}s reached after epoch "
                      f"{epoch + 1}", file=sys.stderr)
            break
    if average:
        prior.load_state_dict(average)


@torch.no_grad()
def _update_average(average: dict[str, Tensor], prior: nn.Module, decay: float) -> None:
    """average <- decay average + (1 - decay) weights, for the floating-point tensors."""
    for name, value in prior.state_dict().items():
        if value.is_floating_point():
            average[name].lerp_(value, 1 - decay)
        else:
            average[name].copy_(value)


@torch.no_grad()
def _validation_loss(prior: Any, average: dict[str, Tensor], val_codes: Tensor) -> float:
    """The training loss on held-out codes, with the averaged weights where there are any, and
    the same t and noise every epoch (a fixed generator), so that epochs compare."""
    current = {k: v.clone() for k, v in prior.state_dict().items()} if average else {}
    if average:
        prior.load_state_dict(average)
    g = torch.Generator(device=val_codes.device).manual_seed(0)
    total = sum(float(prior.training_loss(val_codes[i:i + 4096], g)) * len(val_codes[i:i + 4096])
                for i in range(0, len(val_codes), 4096))
    if current:
        prior.load_state_dict(current)
    return total / len(val_codes)


def _write_run(model: LatentVariableModel, prior: nn.Module, info: RunInfo, run: Path,
               out: Path, record: dict[str, Any], summary: dict[str, Any]) -> None:
    """model.safetensors (the model with its new prior), the source's training record, then
    config.json last; the prior's checkpoint goes once the run is complete."""
    model.prior = prior
    config = info.config.replace(fitted_prior=record)
    save_weights(model, out / "model.safetensors")
    if (run / METRICS_FILE).exists():
        atomic_write_bytes(out / METRICS_FILE, (run / METRICS_FILE).read_bytes())
    atomic_write_json(out / "prior.json", summary)
    new_info = RunInfo(config, info.event_shape, dict(info.data))
    atomic_write_json(out / CONFIG_FILE, new_info.to_dict())
    (out / PRIOR_CHECKPOINT).unlink(missing_ok=True)
