"""The run directory: a self-contained record of one training run.

    config.json             the full config, the data's event shape and the format version
    model.safetensors       the best weights (by validation ELBO)
    checkpoint.safetensors  everything to resume: weights, optimiser, RNG states, data order
    metrics.jsonl           one JSON object per epoch
    evaluation.json         the latest `vaekit evaluate` report, quality.json `vaekit quality`'s
    tensorboard/            event files (--tensorboard)
    samples.png, reconstructions.png, curves.png, latent.png (2-D latents)

Every file is written atomically (see `vaekit.io`); loading never unpickles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaekit._version import RUN_FORMAT_VERSION, __version__
from vaekit.config import Config
from vaekit.errors import ConfigError, RunDirError, VaekitError
from vaekit.io import atomic_write_json, atomic_write_text, load_tensors, read_json, save_tensors
from vaekit.models import LatentVariableModel, build_model

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
METRICS_FILE = "metrics.jsonl"
#: the latest `vaekit evaluate` and `vaekit quality` reports on the run, for `vaekit report`
EVALUATION_FILE = "evaluation.json"
QUALITY_FILE = "quality.json"
#: `config.data` of a run fitted on an in-memory array (vaekit.fit): no data of its own to
#: reload; config.json's data section records the array's fingerprint instead.
ARRAY_DATA = "array"


@dataclass
class RunInfo:
    """What config.json records about a run besides the weights."""

    config: Config
    event_shape: tuple[int, ...]
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": RUN_FORMAT_VERSION, "vaekit_version": __version__,
                "config": self.config.to_dict(), "event_shape": list(self.event_shape),
                "data": self.data}


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    atomic_write_json(run_dir / CONFIG_FILE, info.to_dict())


def read_run_info(run_dir: str | Path) -> RunInfo:
    """Read and validate config.json of a run directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    raw = read_json(run_dir / CONFIG_FILE)
    if not isinstance(raw, dict) or "format_version" not in raw:
        raise RunDirError(f"{run_dir / CONFIG_FILE} is not a vaekit run config")
    if raw["format_version"] != RUN_FORMAT_VERSION:
        raise RunDirError(f"{run_dir} was written by vaekit {raw.get('vaekit_version', '?')} "
                          f"(run format {raw['format_version']!r}); this vaekit {__version__} "
                          f"reads format {RUN_FORMAT_VERSION} only")
    try:
        stored = raw.get("config", {})
        if isinstance(stored, dict):  # written before an epoch's partial batch was a step
            stored = {"drop_last": True, **stored}
        config = Config.from_dict(stored, source=str(run_dir / CONFIG_FILE))
        shape = tuple(int(s) for s in raw["event_shape"])
        if not shape or any(s <= 0 for s in shape):
            raise ValueError
    except ConfigError as e:
        raise RunDirError(str(e)) from None
    except (KeyError, TypeError, ValueError):
        raise RunDirError(f"{run_dir / CONFIG_FILE} has no valid event_shape") from None
    data: dict[str, Any] = raw["data"] if isinstance(raw.get("data"), dict) else {}
    return RunInfo(config, shape, data)


def save_weights(model: LatentVariableModel, path: Path,
                 extra: dict[str, torch.Tensor] | None = None,
                 metadata: dict[str, Any] | None = None,
                 state: dict[str, torch.Tensor] | None = None) -> None:
    """The model's weights (or `state`, a state dict of it) as model.*, with `extra` tensors."""
    state = model.state_dict() if state is None else state
    tensors = {f"model.{k}": v for k, v in state.items()}
    save_tensors(path, {**tensors, **(extra or {})}, metadata)


def load_weights(model: LatentVariableModel, tensors: dict[str, torch.Tensor],
                 source: Path) -> None:
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    for name, module in model.named_modules():  # parts that read older runs' weights
        legacy = getattr(module, "legacy_state", None)
        if callable(legacy):
            legacy(f"{name}." if name else "", state)
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise RunDirError(f"{source} does not match the model in config.json "
                          f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    for k, v in state.items():
        if v.shape != expected[k].shape or v.dtype != expected[k].dtype:
            raise RunDirError(f"{source}: tensor {k} has shape {tuple(v.shape)} {v.dtype}, the "
                              f"model needs {tuple(expected[k].shape)} {expected[k].dtype}")
        if not torch.isfinite(v).all():
            raise RunDirError(f"{source}: tensor {k} holds NaN or infinite values")
    model.load_state_dict(state)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             weights: str = MODEL_FILE) -> tuple[LatentVariableModel, RunInfo]:
    """Rebuild the model of a run directory from its config and load its best weights; the
    model carries the run's record of its data (`model.run_record`, which `vaekit.save`
    writes)."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    model = build_model(info.config, info.event_shape)
    tensors, _ = load_tensors(run_dir / weights)
    load_weights(model, tensors, run_dir / weights)
    model.run_record = dict(info.data)
    return model.to(device).eval(), info


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> LatentVariableModel:
    """Load the trained model of a run directory: rebuilt from its config.json, with the best
    weights of model.safetensors. Nothing is unpickled.

    Args:
        run_dir: a directory written by `vaekit train`, `vaekit.fit(out=...)`, `vaekit.save` or
            `vaekit fit-prior`.
        device: where the model's weights go ("cpu", "cuda", "cuda:1", a `torch.device`).

    Returns:
        The model in eval mode, carrying its `config` and `run_record` (binarization,
        dequantization, the data's name), so that `vaekit.save` copies it exactly.

    Raises:
        RunDirError: the directory is missing, written by an incompatible version, or its files
            are damaged (one line naming the file).

    Example:
        >>> model = vaekit.load("runs/digits")  # doctest: +SKIP
        >>> model.sample(16).shape  # doctest: +SKIP
        torch.Size([16, 1, 8, 8])
    """
    return load_run(run_dir, device)[0]


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl, up to a line cut short by a kill; [] for a missing or
    unreadable file (metrics are a record, never needed to load a model)."""
    try:
        text = (Path(run_dir) / METRICS_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return []
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if isinstance(row, dict):
            rows.append(row)
    return rows


def sync_metrics(run_dir: Path, name: str = METRICS_FILE) -> None:
    """fsync metrics.jsonl (or `name`), if it exists: the lines appended so far are on disk."""
    path = run_dir / name
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as e:
        raise VaekitError(f"could not read {path}: {e.strerror or e}") from None
    try:
        os.fsync(fd)
    except OSError as e:
        raise VaekitError(f"could not write {path}: {e.strerror or e}; the last checkpoint is "
                          "intact") from None
    finally:
        os.close(fd)


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace metrics.jsonl with `rows`, atomically."""
    atomic_write_text(run_dir / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in rows))


def append_metrics(run_dir: Path, row: dict[str, Any], name: str = METRICS_FILE,
                   fsync: bool = True) -> None:
    """Append one row to metrics.jsonl (or the file `name`); fsync it unless `fsync=False`
    (the line is then in the page cache: readers see it and a killed process keeps it, a power
    loss may not)."""
    path = run_dir / name
    try:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            if fsync:
                os.fsync(f.fileno())
    except OSError as e:
        raise VaekitError(f"could not write {path}: {e.strerror or e}; the last checkpoint is "
                          "intact") from None
