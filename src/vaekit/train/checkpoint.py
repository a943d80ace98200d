"""The trainer's checkpoint: all a resumed run needs to go on bit for bit where it stopped.

    checkpoint.safetensors  model.* weights, optim.* Adam moments, rng.* generator states,
                            epoch.stats (the epoch's partial sums), epoch.perm (mid-epoch only),
                            ema.* the weight average (with --ema), best.* the best weights so
                            far (where they are not the checkpoint's own weights)
    its JSON metadata       the TrainState counters and learning-rate schedule segments, the
                            optimiser's param groups, world size, and the metrics line of the
                            epoch the checkpoint ends (`last_row`)

Checkpoints come on a time cadence (--checkpoint-every), so the checkpoint alone must be enough
to resume: the best weights travel inside it, and so does the epoch's metrics line, written to
metrics.jsonl just after it (a kill in between is repaired on resume).

Older checkpoints still resume: 4-slot epoch.stats (an unused first slot) lose that slot, and
a state without schedule segments gets one over the epochs in the run's config.json.

Written atomically by rank 0 (see `vaekit.io`); read without unpickling anything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaekit.config import Config
from vaekit.errors import ConfigError, RunDirError, VaekitError
from vaekit.io import load_tensors
from vaekit.models import LatentVariableModel
from vaekit.run import CHECKPOINT_FILE, load_weights, read_run_info, save_weights
from vaekit.train.schedules import Segment

#: Fields that may change when a run is resumed; the rest define the run.
RESUMABLE_OVERRIDES = ("epochs", "time_limit", "device", "threads", "compile", "bf16",
                       "tensorboard", "checkpoint_every", "schedule_over")


@dataclass
class TrainState:
    """Progress that the checkpoint carries besides tensors."""

    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # steps done in the current (incomplete) epoch
    global_step: int = 0
    best_val: float = -math.inf
    best_epoch: int = -1
    skipped: int = 0
    consecutive_skips: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0
    schedule: list[Segment] = field(default_factory=list)  # the lr schedule's segments
    history: list[dict[str, Any]] = field(default_factory=list)  # kept in metrics.jsonl


@dataclass
class Checkpoint:
    """What a checkpoint holds besides the model's weights and the optimiser's state."""

    state: TrainState
    torch_rng: Tensor  # torch's global generator
    perm_rng: Tensor  # the data order's generator
    noise_rng: Tensor  # binarization and reparameterization noise
    epoch_stats: Tensor  # float64 [sum of reconstruction, sum of KL, examples]
    epoch_perm: Tensor | None = None  # the interrupted epoch's data order
    ema: dict[str, Tensor] = field(default_factory=dict)  # the weight average, ema.NAME
    best: dict[str, Tensor] = field(default_factory=dict)  # the best weights (a state dict)
    last_row: dict[str, Any] | None = None  # the metrics line of the epoch it ends


@dataclass
class Snapshot:
    """The whole trainer state, in memory: what a rollback returns to. Taken at the end of each
    epoch and at a resume (then possibly mid-epoch)."""

    model: dict[str, Tensor]
    optim: dict[str, Any]
    position: tuple[int, int, int]  # epoch, step_in_epoch, global_step
    schedule: list[Segment]
    epoch_perm: Tensor | None
    epoch_stats: Tensor
    rng: tuple[Tensor, Tensor, Tensor]  # torch's, the data order's, the noise's
    ema: list[Tensor] | None = None  # the weight average's tensors

    def where(self) -> str:
        """Where the snapshot stands, in words."""
        epoch, step, _ = self.position
        if step:
            return f"epoch {epoch + 1}, step {step}"
        return f"the end of epoch {epoch}" if epoch else "the start of training"


def write_checkpoint(path: Path, model: LatentVariableModel, optimizer: torch.optim.Optimizer,
                     checkpoint: Checkpoint, world_size: int) -> None:
    optim_tensors, optim_meta = optimizer_to_tensors(optimizer)
    extra = {**optim_tensors, "rng.torch": checkpoint.torch_rng, "rng.perm": checkpoint.perm_rng,
             "rng.noise": checkpoint.noise_rng, "epoch.stats": checkpoint.epoch_stats}
    if checkpoint.epoch_perm is not None:
        extra["epoch.perm"] = checkpoint.epoch_perm
    extra.update(checkpoint.ema)
    extra.update({f"best.{k}": v for k, v in checkpoint.best.items()})
    state = {k: v for k, v in checkpoint.state.__dict__.items() if k != "history"}
    state["schedule"] = [asdict(segment) for segment in checkpoint.state.schedule]
    meta: dict[str, Any] = {"state": state, "optim": optim_meta, "world_size": world_size}
    if checkpoint.last_row is not None:
        meta["last_row"] = checkpoint.last_row
    save_weights(model, path, extra, meta)


def read_checkpoint(path: Path, model: LatentVariableModel,
                    optimizer: torch.optim.Optimizer) -> Checkpoint:
    """Load the weights and the optimiser's state in place; return the rest."""
    tensors, meta = load_tensors(path)
    if not meta or "state" not in meta or "optim" not in meta:
        raise VaekitError(f"{path} has no trainer state; it cannot be resumed")
    load_weights(model, tensors, path)
    optimizer_from_tensors(optimizer, tensors, meta["optim"])
    try:
        counters = dict(meta["state"])
        segments = counters.pop("schedule", [])
        state = TrainState(**counters, schedule=[Segment(**segment) for segment in segments])
        stats = tensors["epoch.stats"]
        if stats.shape == (4,):  # written before the unused first slot was dropped
            stats = stats[1:]
        if stats.shape != (3,):
            raise TypeError(f"epoch.stats has shape {tuple(stats.shape)}, not (3,)")
        last_row = meta.get("last_row")
        if last_row is not None and not isinstance(last_row, dict):
            raise TypeError("last_row is not a mapping")
        return Checkpoint(state, tensors["rng.torch"], tensors["rng.perm"], tensors["rng.noise"],
                          stats, tensors.get("epoch.perm"),
                          {k: v for k, v in tensors.items() if k.startswith("ema.")},
                          {k[len("best."):]: v for k, v in tensors.items()
                           if k.startswith("best.")}, last_row)
    except (TypeError, KeyError, ValueError) as e:
        raise RunDirError(f"{path}: the trainer state is incomplete or malformed ({e}); it "
                          "cannot be resumed") from None


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """The optimiser's per-parameter tensors as optim.{param}.{key}, and the rest as JSON."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, Tensor],
                           meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    try:
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError, TypeError) as e:
        raise RunDirError(f"the optimiser state in the checkpoint does not fit the model: {e}") \
            from None


def prepare_resume(run_dir: Path, overrides: dict[str, Any]) -> Config:
    """The config of a run to resume, with only the allowed fields overridden."""
    info = read_run_info(run_dir)
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise VaekitError(f"{run_dir} has no {CHECKPOINT_FILE} to resume from")
    bad = sorted(k for k, v in overrides.items()
                 if k not in RESUMABLE_OVERRIDES and getattr(info.config, k) != v)
    if bad:
        raise ConfigError(f"cannot change {', '.join('--' + b.replace('_', '-') for b in bad)} "
                          f"when resuming; only {', '.join(RESUMABLE_OVERRIDES)} may change")
    return info.config.replace(**{k: v for k, v in overrides.items() if k in RESUMABLE_OVERRIDES})
