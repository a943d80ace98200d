"""The Python API: train from a config or fit an array in a line, save and load run directories.

    >>> import vaekit
    >>> model = vaekit.fit(x, latent_dim=8, epochs=20, out="runs/mine")  # x: (N, ...) array
    >>> model.sample(16); model.encode(x[:5]).mean; model.reconstruct(x[:5])
    >>> same = vaekit.load("runs/mine")
    >>> model = vaekit.fit(x, resume="runs/mine", epochs=40)  # the same x: checked
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.config import Config
from vaekit.data import Dataset, check_array, load_dataset
from vaekit.data.datasets import _split, array_file
from vaekit.errors import ConfigError, DataError, RunDirError, VaekitError
from vaekit.models import CategoricalVAE, LatentVariableModel
from vaekit.run import (
    ARRAY_DATA,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    RunInfo,
    read_run_info,
    save_weights,
    write_run_info,
)
from vaekit.train.checkpoint import prepare_resume
from vaekit.train.loop import Trainer
from vaekit.train.prepare import prepare_eval_data, resolve_binarize


@dataclass
class TrainResult:
    model: LatentVariableModel
    run_dir: Path | None
    history: list[dict[str, Any]]


def default_run_dir(config: Config) -> Path:
    name = Path(config.data).stem if config.data not in ("digits", "mnist", "fashion-mnist") \
        else config.data
    base = Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def train(config: Config | None = None, *, data: Dataset | None = None,
          out: str | Path | None = None, resume: str | Path | None = None,
          progress: bool = True, pictures: bool = True, save: bool = True,
          restart_schedule: bool = False, **options: Any) -> TrainResult:
    """Train a model as `vaekit train` does.

    Args:
        config: the run's configuration (default `Config()`: a VAE on the built-in digits).
        data: a `vaekit.data.Dataset` to train on instead of `config.data`'s.
        out: the run directory (default `runs/NAME-TIMESTAMP`); refused if it holds a run.
        resume: a run directory to continue from its checkpoint, bit for bit; only the
            options that `vaekit train --resume` takes may change (`epochs`, `time_limit`,
            `device`, `threads`, `compile`, `bf16`, `tensorboard`, `checkpoint_every`).
        progress: print a progress bar and a line per epoch on stderr.
        pictures: write samples.png, reconstructions.png, curves.png... at the end.
        save: with False nothing is written (no run directory, no resume).
        restart_schedule: with `resume` and a larger `epochs`, restart the learning-rate
            schedule from the base lr over the added epochs instead of stretching the rest of
            it over them.
        **options: `Config` fields that override `config`'s, e.g. `latent_dim=16`.

    Returns:
        A `TrainResult`: the model (with the best weights), the run directory and the
        per-epoch metrics (the rows of metrics.jsonl).
    """
    record: dict[str, Any] = {}
    recorded: dict[str, Any] = {}  # a resumed run's record of its data
    if resume is not None:
        run_dir: Path | None = Path(resume)
        config = prepare_resume(Path(resume), options)
        recorded = read_run_info(resume).data
        if config.data == ARRAY_DATA:
            if data is None:
                raise DataError(f"{resume} was trained on an in-memory array (vaekit.fit); "
                                "resume it from Python with that same array: vaekit.fit(x, "
                                f"resume={str(resume)!r})")
            check_fingerprint(recorded, data, f"{resume}")
    else:
        config = (config or Config()).replace(**options) if options else (config or Config())
        config = _absolute_paths(config.validate())
        if config.fitted_prior:
            raise ConfigError("fitted_prior is written by vaekit fit-prior after training, "
                              "never trained: train without it, then fit a prior to the codes")
        run_dir = (Path(out) if out is not None else default_run_dir(config)) if save else None
        if run_dir is not None and run_dir.exists() and ((run_dir / CHECKPOINT_FILE).exists()
                                 or (run_dir / MODEL_FILE).exists()):
            raise VaekitError(f"{run_dir} already holds a run; resume it with --resume "
                              f"{run_dir}, or choose another --out")
    if data is None:  # a resumed run's arrays are read as it recorded them (images or not)
        data = load_dataset(config.data, config.data_dir, config.val_fraction,
                            images=recorded.get("images"), settings=config)
    elif config.data == ARRAY_DATA:
        record = array_fingerprint(data)
    trainer = Trainer(config, data, run_dir, progress=progress, data_record=record)
    model = trainer.fit(resume=resume is not None, restart_schedule=restart_schedule)
    model.run_record = trainer.run_info().data
    if run_dir is not None and pictures and trainer.dist.is_main:
        write_pictures(model, data, run_dir, trainer.state.history,
                       resolve_binarize(config, data))
    return TrainResult(model, run_dir, trainer.state.history)


def _absolute_paths(config: Config) -> Config:
    """The data directory and a data file as absolute paths, so that the run's config.json
    still finds them when `vaekit evaluate` runs from another directory."""
    changes: dict[str, str] = {}
    if config.data_dir:
        changes["data_dir"] = str(Path(config.data_dir).expanduser().absolute())
    path = array_file(config.data)
    if path is not None:
        changes["data"] = str(path.expanduser().absolute())
    return config.replace(**changes) if changes else config


def fit(x: np.ndarray | Tensor, *, out: str | Path | None = None,
        resume: str | Path | None = None, progress: bool = True,
        config: Config | None = None, **options: Any) -> LatentVariableModel:
    """Fit a VAE to an array of examples (N, ...), used exactly as given (no rescaling).
    `options` are Config fields, e.g. latent_dim=8, epochs=20, likelihood="gaussian".
    Prints a progress bar and a line per epoch unless progress=False.

    The run directory `out` records the array's fingerprint (see `array_fingerprint`), not the
    array. `fit(x, resume=RUN, epochs=...)` continues such a run from its checkpoint; it needs
    the same x and refuses any other (only the options of `vaekit train --resume` may change).

    Args:
        x: the examples, (N, ...), a tensor or a NumPy array of any float dtype.
        out: a run directory to write (default: nothing is written).
        resume: a run directory written by `fit(x, out=...)`, to continue.
        progress: print a progress bar and a line per epoch on stderr.
        config: a `Config` to start from (its `data` is replaced by the array).
        **options: `Config` fields, e.g. `likelihood="gaussian"`, `latent_dim=8`, `epochs=20`.

    Returns:
        The trained model (the best weights), with `encode`, `decode`, `elbo`, `sample`...

    Example:
        >>> x = torch.rand(500, 10)  # doctest: +SKIP
        >>> model = vaekit.fit(x, likelihood="gaussian", latent_dim=2, epochs=5)  # doctest: +SKIP
    """
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    x_all = check_array(array, "fit(x)")
    if resume is not None:
        if config is not None or out is not None:
            raise ConfigError("fit(x, resume=RUN) continues RUN with its own config, in its own "
                              "directory: pass neither config= nor out=")
        run_config = read_run_info(resume).config
        if run_config.data != ARRAY_DATA:
            raise ConfigError(f"{resume} was trained on {run_config.data}, not on an array "
                              f"given to vaekit.fit; resume it with vaekit.train(resume="
                              f"{str(resume)!r})")
        val_fraction = run_config.val_fraction
    else:
        config = (config or Config()).replace(**{**options, "data": ARRAY_DATA, "data_dir": None})
        val_fraction = config.val_fraction
    data = _split(ARRAY_DATA, x_all, x_all[:0], val_fraction, images=False)  # no test split
    if resume is not None:
        return train(resume=resume, data=data, progress=progress, **options).model
    return train(config, data=data, out=out, progress=progress, save=out is not None).model


def array_fingerprint(data: Dataset) -> dict[str, Any]:
    """What config.json records of an in-memory array a run was fitted on: the sha256 of its
    float32 bytes (C order) and its shape. Enough to recognise the same array, not to rebuild
    it."""
    x = data.split("all").detach().cpu().to(torch.float32).contiguous()  # (N, ...)
    digest = hashlib.sha256(x.numpy().data).hexdigest()
    return {"array_sha256": digest, "array_shape": list(x.shape)}


def check_fingerprint(record: dict[str, Any], data: Dataset, run: str) -> None:
    """Refuse data that is not the array the run `run` was fitted on (a run written before
    fingerprints were recorded has none to check)."""
    if "array_sha256" not in record:
        return
    given = array_fingerprint(data)
    if given["array_shape"] != record.get("array_shape"):
        raise DataError(f"this is not the array {run} was trained on: shape "
                        f"{tuple(given['array_shape'])}, the run's was "
                        f"{tuple(record.get('array_shape') or ())}")
    if given["array_sha256"] != record["array_sha256"]:
        raise DataError(f"this is not the array {run} was trained on: same shape "
                        f"{tuple(given['array_shape'])}, different values (sha256 "
                        f"{given['array_sha256'][:12]}..., the run's "
                        f"{record['array_sha256'][:12]}...)")


def save(model: LatentVariableModel, run_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a model's config.json and model.safetensors into `run_dir` (atomically), with the
    run record it carries from training or `vaekit.load` (binarization, dequantization, the
    data's name...), so that the copy evaluates exactly as the original.

    Args:
        model: a model built from a `Config` (trained by `vaekit.fit` or `vaekit.train`, or
            loaded by `vaekit.load`).
        run_dir: the directory to write; created if missing.
        overwrite: replace a run that the directory already holds (refused otherwise).

    Returns:
        `run_dir`, as a Path.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, Config):
        raise ConfigError("this model has no .config; build it with vaekit.build_model(config, "
                          "...) or train it with vaekit.fit / vaekit.train")
    run_dir = Path(run_dir)
    if not overwrite and any((run_dir / name).exists()
                             for name in (CONFIG_FILE, MODEL_FILE, CHECKPOINT_FILE)):
        raise RunDirError(f"{run_dir} already holds a run; save elsewhere, or pass "
                          "overwrite=True to replace its config.json and model.safetensors")
    record = dict(model.run_record)
    write_run_info(run_dir, RunInfo(config, model.event_shape, record))
    save_weights(model, run_dir / MODEL_FILE)
    return run_dir


def write_pictures(model: LatentVariableModel, data: Dataset, run_dir: Path,
                   history: list[dict[str, Any]],
                   binarize_mode: str) -> None:
    """samples.png, reconstructions.png, curves.png, kl_per_dim.png, for 2-D latents
    latent.png and, for categorical latents, latent_classes.png, from held-out data (binarized
    as the validation data were)."""
    from vaekit.evaluate import kl_per_dimension
    from vaekit.evaluate.elbo import condition_rows
    from vaekit.views import plots

    if history:
        plots.save_curves(history, run_dir / "curves.png")
    image_shape = data.event_shape if data.images and len(data.event_shape) == 3 else None
    split = "test" if len(data.test) else ("val" if len(data.val) else "train")
    held_out, labels = data.split(split), data.split_labels(split)
    held_out = prepare_eval_data(held_out[:2000], binarize_mode,
                                 data.bin_width if model.config.dequantize else None)
    device = next(model.parameters()).device
    # a conditional model (trained on labels, so held-out data have them) sees each one's class
    condition = labels[:len(held_out)] if model.condition_dim and labels is not None else None
    if image_shape is not None:
        if model.can_sample:
            g = torch.Generator(device=device).manual_seed(0)
            plots.save_samples(model, run_dir / "samples.png", g)
        x = held_out[:32]
        recon = model.reconstruct(x.to(device), condition=condition_rows(condition, 0, 32))
        plots.save_reconstructions(x, recon.cpu(), run_dir / "reconstructions.png")
        if isinstance(model, CategoricalVAE):
            plots.save_latent_classes(model, x.to(device), run_dir / "latent_classes.png")
    kl = kl_per_dimension(model, held_out, condition=condition)
    if kl is not None:
        plots.save_kl_per_dimension(kl, run_dir / "kl_per_dim.png")
    if model.latent_dim == 2:
        plots.save_latent_plots(model, held_out.to(device), run_dir / "latent.png", image_shape,
                                labels)
