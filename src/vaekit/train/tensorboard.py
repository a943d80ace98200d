"""TensorBoard event files for a run (`--tensorboard`): RUN/tensorboard/.

Every epoch writes the metrics.jsonl row as scalars, step = the epoch number:

    elbo/train, elbo/val, reconstruction/train, kl/train, kl/val,
    kl_group/val_1..G (a hierarchy, in the order of its `group_names`), active_units/val_1..G,
    lr, skipped_steps, seconds

and every `IMAGE_EVERY` epochs (and the first and last) grids of samples (a fixed seed, so
that epochs compare) and of reconstructions of fixed held-out examples. A new run writes its
config as text. metrics.jsonl stays the record; these files are for looking.

A resumed run appends to the same directory: its writer is opened with `purge_step` = the
first epoch it will write, so TensorBoard discards whatever an interrupted run wrote after
its last checkpoint, and no step is shown twice. Only rank 0 writes under DDP.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaekit.errors import ConfigError

#: the run directory's subfolder of event files
TENSORBOARD_DIR = "tensorboard"
#: epochs between image grids
IMAGE_EVERY = 5

#: metrics.jsonl keys written as scalars, and their TensorBoard tags
SCALARS = {"train_elbo": "elbo/train", "val_elbo": "elbo/val",
           "train_reconstruction": "reconstruction/train", "train_kl": "kl/train",
           "val_kl": "kl/val", "val_active_units_total": "active_units/val",
           "lr": "lr", "skipped_steps": "skipped_steps", "seconds": "seconds",
           "code_usage": "codes/usage", "code_perplexity": "codes/perplexity",
           "temperature": "temperature"}


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install "
                          "'vaekit[tensorboard]' (or pip install tensorboard)") from None
    return SummaryWriter


def check_available() -> None:
    """A clear ConfigError, before training starts, where tensorboard is not installed."""
    _summary_writer_class()


class TensorBoardLog:
    """Writes a run's epochs to RUN/tensorboard (see the module's docstring)."""

    def __init__(self, run_dir: Path, config_dict: dict[str, Any], first_epoch: int,
                 total_epochs: int, images: Tensor | None,
                 image_labels: Tensor | None = None) -> None:
        """`first_epoch`: the epoch (1-based) the run writes next; > 1 on a resume.
        `images`: fixed held-out examples (N, C, H, W) to reconstruct, or None (not images);
        `image_labels`: their classes (N,), for a conditional model."""
        writer_class = _summary_writer_class()
        self.writer = writer_class(str(run_dir / TENSORBOARD_DIR),
                                   purge_step=first_epoch if first_epoch > 1 else None)
        self.total_epochs = total_epochs
        self.images, self.image_labels = images, image_labels
        if first_epoch <= 1:
            text = json.dumps(config_dict, indent=2, default=str)
            self.writer.add_text("config", "    " + text.replace("\n", "\n    "), 0)

    def log_epoch(self, row: dict[str, Any], model: Any) -> None:
        """Scalars of one metrics.jsonl row; image grids on the epochs that have them."""
        epoch = int(row["epoch"])
        values = dict(row)
        if "val_active_units" in row:
            values["val_active_units_total"] = sum(row["val_active_units"])
        for key, tag in SCALARS.items():
            if key in values and values[key] is not None:
                self.writer.add_scalar(tag, float(values[key]), epoch)
        groups = row.get("val_kl_groups", ())
        if len(groups) > 1:
            for g, (kl, active) in enumerate(zip(groups, row["val_active_units"], strict=True),
                                             start=1):
                self.writer.add_scalar(f"kl_group/val_{g}", float(kl), epoch)
                self.writer.add_scalar(f"active_units/val_{g}", float(active), epoch)
        if self.images is not None and (epoch == 1 or epoch % IMAGE_EVERY == 0
                                        or epoch == self.total_epochs):
            self._log_images(model, epoch)
        self.writer.flush()

    @torch.no_grad()
    def _log_images(self, model: Any, epoch: int) -> None:
        from vaekit.views.plots import image_grid, sample_picture

        assert self.images is not None
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            if model.can_sample:
                g = torch.Generator(device=device).manual_seed(0)
                self.writer.add_image("samples", sample_picture(model, g), epoch,
                                      dataformats="HWC")
            x = self.images
            recon = model.reconstruct(x.to(device), condition=self.image_labels).float().cpu()
            pairs = torch.stack([x.float(), recon], 1).flatten(0, 1)  # (2N, C, H, W)
            self.writer.add_image("reconstructions", image_grid(pairs, nrow=16), epoch,
                                  dataformats="HWC")
        finally:
            model.train(was_training)

    def close(self) -> None:
        self.writer.close()
