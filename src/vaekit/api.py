"""The Python API: train from a config or fit an array in a line, save and load run directories.

    >>> import vaekit
    >>> model = vaekit.fit(x, latent_dim=8, epochs=20, out="runs/mine")  # x: (N, ...) array
    >>> model.sample(16); model.encode(x[:5]).mean; model.reconstruct(x[:5])
    >>> same = vaekit.load("runs/mine")
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.config import Config
from vaekit.data import Dataset, check_array, load_dataset, prepare_eval_data, resolve_binarize
from vaekit.data.datasets import _split, array_file
from vaekit.errors import ConfigError, VaekitError
from vaekit.models import VAE
from vaekit.run import CHECKPOINT_FILE, MODEL_FILE, RunInfo, save_weights, write_run_info
from vaekit.train.checkpoint import prepare_resume
from vaekit.train.loop import Trainer


@dataclass
class TrainResult:
    model: VAE
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
    """Train a VAE as `vaekit train` does; `options` override fields of `config`. With
    save=False nothing is written (no run directory, no resume). `restart_schedule`: with
    `resume` and a larger `epochs`, restart the learning-rate schedule from the base lr over
    the added epochs instead of stretching the rest of it over them."""
    if resume is not None:
        run_dir: Path | None = Path(resume)
        config = prepare_resume(Path(resume), options)
    else:
        config = (config or Config()).replace(**options) if options else (config or Config())
        config = _absolute_paths(config.validate())
        run_dir = (Path(out) if out is not None else default_run_dir(config)) if save else None
        if run_dir is not None and run_dir.exists() and ((run_dir / CHECKPOINT_FILE).exists()
                                 or (run_dir / MODEL_FILE).exists()):
            raise VaekitError(f"{run_dir} already holds a run; resume it with --resume "
                              f"{run_dir}, or choose another --out")
    if data is None:
        data = load_dataset(config.data, config.data_dir, config.val_fraction)
    trainer = Trainer(config, data, run_dir, progress=progress)
    model = trainer.fit(resume=resume is not None, restart_schedule=restart_schedule)
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


def fit(x: np.ndarray | Tensor, *, out: str | Path | None = None, progress: bool = False,
        config: Config | None = None, **options: Any) -> VAE:
    """Fit a VAE to an array of examples (N, ...), used exactly as given (no rescaling).
    `options` are Config fields, e.g. latent_dim=8, epochs=20, likelihood="gaussian"."""
    array = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    config = (config or Config(data="array")).replace(**options)
    x_all = check_array(array, "fit(x)")
    data = _split("array", x_all, x_all[:0], config.val_fraction, images=False)  # no test split
    return train(config, data=data, out=out, progress=progress, save=out is not None).model


def save(model: VAE, run_dir: str | Path) -> Path:
    """Write a model's config.json and model.safetensors into `run_dir` (atomically)."""
    config = getattr(model, "config", None)
    if not isinstance(config, Config):
        raise ConfigError("this model has no .config; build it with vaekit.build_model(config, "
                          "...) or train it with vaekit.fit / vaekit.train")
    run_dir = Path(run_dir)
    write_run_info(run_dir, RunInfo(config, model.event_shape, {}))
    save_weights(model, run_dir / MODEL_FILE)
    return run_dir


def write_pictures(model: VAE, data: Dataset, run_dir: Path, history: list[dict[str, Any]],
                   binarize_mode: str) -> None:
    """samples.png, reconstructions.png, curves.png, kl_per_dim.png and, for 2-D latents,
    latent.png, from held-out data (binarized as the validation data were)."""
    from vaekit import plots
    from vaekit.evaluate import kl_per_dimension

    if history:
        plots.save_curves(history, run_dir / "curves.png")
    image_shape = data.event_shape if data.images and len(data.event_shape) == 3 else None
    held_out = data.test if len(data.test) else (data.val if len(data.val) else data.train)
    held_out = prepare_eval_data(held_out[:2000], binarize_mode,
                                 data.bin_width if model.config.dequantize else None)
    device = next(model.parameters()).device
    if image_shape is not None:
        g = torch.Generator(device=device).manual_seed(0)
        plots.save_grid(model.sample(64, generator=g).cpu(), run_dir / "samples.png")
        x = held_out[:32]
        plots.save_reconstructions(x, model.reconstruct(x.to(device)).cpu(),
                                   run_dir / "reconstructions.png")
    kl = kl_per_dimension(model, held_out)
    if kl is not None:
        plots.save_kl_per_dimension(kl, run_dir / "kl_per_dim.png")
    if model.latent_dim == 2:
        plots.save_latent_plots(model, held_out.to(device), run_dir / "latent.png", image_shape)
