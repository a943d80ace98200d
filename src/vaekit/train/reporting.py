"""What the trainer reports of each epoch: the validation ELBO and its parts, each latent
group's KL and active units, the epoch's line on stderr, TensorBoard, and the warning when a
group switches off. A part of `Trainer` (it reads the trainer's model, data and state)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from torch import Tensor
from tqdm import tqdm

from vaekit.config import Config
from vaekit.data import Dataset
from vaekit.evaluate.diagnostics import active_units_per_group
from vaekit.evaluate.elbo import dataset_elbo
from vaekit.train.checkpoint import TrainState
from vaekit.train.distributed import DistInfo
from vaekit.train.tensorboard import TensorBoardLog

#: the model's own epoch metrics (`epoch_metrics`) that the epoch's line shows
LATENT_METRICS = ("code_usage", "code_perplexity", "temperature")


def _too_early_to_judge(epoch: int, kl_warmup: int) -> bool:
    """Whether it is too early to call a group switched off: during the KL warm-up, and in the
    first epochs, a group may still come on."""
    return epoch < max(kl_warmup, 3)


class EpochReport:
    """The trainer's reporting, as a part of `Trainer`."""

    config: Config
    data: Dataset
    dist: DistInfo
    model: Any
    ema: Any
    state: TrainState
    progress: bool
    run_dir: Path | None
    train_x: Tensor
    val_x: Tensor
    train_labels: Tensor | None
    val_labels: Tensor | None
    tensorboard: TensorBoardLog | None
    _switched_off: set[int]

    def _log(self, message: str) -> None:
        raise NotImplementedError

    def validate(self) -> dict[str, Any]:
        """The validation ELBO, its parts, the KL and the active units of each latent group
        (with the weight average, where there is one)."""
        if len(self.val_x) == 0:
            return {}
        self.model.eval()
        with self.ema.applied() if self.ema is not None else nullcontext():
            out = dataset_elbo(self.model, self.val_x, seed=0, condition=self.val_labels)
            active = active_units_per_group(self.model, self.val_x, condition=self.val_labels)
        self.model.train()
        row: dict[str, Any] = {f"val_{k}": float(v.mean()) for k, v in out.items()
                               if k != "kl_groups"}
        row["val_kl_groups"] = [round(float(v), 4) for v in out["kl_groups"].double().mean(0)]
        row["val_active_units"] = active
        return row

    def _print_epoch(self, row: dict[str, Any], seconds: float) -> None:
        """The epoch's line on stderr: the training and validation objective, each latent
        group's KL and active units, the wall time."""
        if not (self.dist.is_main and self.progress):
            return
        name = self.model.objective_name
        val = (f"  val {self.model.evaluated_name} {row['val_elbo']:.3f}" if "val_elbo" in row
               else "")
        groups = ""
        if len(row.get("val_kl_groups", ())) > 1:
            groups = "  KL|units per group " + " ".join(
                f"{kl:.1f}|{units}" for kl, units in zip(
                    row["val_kl_groups"], row["val_active_units"], strict=True))
        latents = "".join(f"  {key.replace('_', ' ')} {row[key]:.3g}" for key in LATENT_METRICS
                          if key in row)
        tqdm.write(f"epoch {self.state.epoch:>3}/{self.config.epochs}  train {name} "
                   f"{row['train_elbo']:.3f}{val}{groups}{latents}  ({seconds:.1f}s)",
                   file=sys.stderr)

    @contextmanager
    def _tensorboard(self) -> Iterator[None]:
        """RUN/tensorboard's writer (rank 0, with --tensorboard) for the block, continuing a
        resumed run's stream from its next epoch; closed however the block ends."""
        if self.config.tensorboard and self.run_dir is not None and self.dist.is_main:
            images = labels = None
            if self.data.images and len(self.data.event_shape) == 3:
                held_out = self.val_x if len(self.val_x) else self.train_x
                images = held_out[:8].cpu()
                if self.train_labels is not None:  # a conditional model: their classes
                    source = self.val_labels if len(self.val_x) else self.train_labels
                    labels = source[:8].cpu() if source is not None else None
            self.tensorboard = TensorBoardLog(self.run_dir, self.config.to_dict(),
                                              self.state.epoch + 1, self.config.epochs, images,
                                              labels)
        try:
            yield
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
                self.tensorboard = None

    def _warn_switched_off(self, row: dict[str, Any]) -> None:
        """Once per group: a latent group with no active unit and almost no KL has switched off
        (posterior collapse), which deep hierarchies are prone to."""
        kls, units = row.get("val_kl_groups", ()), row.get("val_active_units", ())
        if len(kls) < 2 or _too_early_to_judge(self.state.epoch, self.config.kl_warmup):
            return
        warned = self._switched_off
        for group, (kl, active) in enumerate(zip(kls, units, strict=True), start=1):
            if active == 0 and kl < 0.1 and group not in warned:
                warned.add(group)
                self._log(f"warning: latent group {group} has switched off after epoch "
                          f"{self.state.epoch} (KL {kl:.3f} nats, no active unit): the model "
                          "does not use it. Remedies: --free-bits (a floor per group), "
                          "--kl-warmup, fewer or smaller groups")
