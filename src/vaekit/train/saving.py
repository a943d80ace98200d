"""The trainer's run directory: checkpoints on a time cadence, the best weights, metrics.jsonl.

Writing and fsyncing a checkpoint after every epoch made small models wait on the disk longer
than they computed (a 500-epoch linear fit: 21 s of wall time for 8 s of CPU). So a checkpoint
is written every --checkpoint-every seconds (default 60, as Lightning's `train_time_interval`),
and also:

- after the run's first epoch, so that a run can be resumed from its first minute;
- at the end of training, whether --epochs or --time-limit ended it;
- on SIGINT/SIGTERM (mid-epoch), and after a rollback to the last good state.

Between two checkpoints the best weights stay in memory; `model.safetensors` is written with
each checkpoint, after it, when they have changed. The checkpoint carries the best weights
itself (`best.*`, where they are not its own weights) and the metrics line of the epoch it ends,
so a SIGKILL loses at most one interval of training, and never a file or a line that the
checkpoint covers: on resume, metrics.jsonl is cut back to the checkpoint (the lost epochs run
again, bit for bit) and model.safetensors is rewritten if it lags.

metrics.jsonl gets one line per epoch, not fsynced: the line is in the page cache, so readers
see it and a killed process keeps it. The file is fsynced before each checkpoint, so every line
a checkpoint covers is on disk; a power loss can cost only lines after it, which a resume drops
and writes again anyway. Each line's `seconds` is the epoch's wall time, training, validation
and file writing together; `io_seconds` is the part spent writing the checkpoint and the best
weights (0 on epochs without a checkpoint).
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vaekit.config import Config
from vaekit.io import load_tensors
from vaekit.run import (
    CHECKPOINT_FILE,
    MODEL_FILE,
    append_metrics,
    read_metrics,
    read_run_info,
    save_weights,
    sync_metrics,
    write_metrics,
)
from vaekit.train.checkpoint import Checkpoint, TrainState, read_checkpoint, write_checkpoint
from vaekit.train.distributed import DistInfo, all_reduce_sum
from vaekit.train.schedules import Segment


class RunDirectory:
    """The trainer's checkpointing, as a part of `Trainer` (it reads the trainer's model,
    optimiser, state, generators and configuration)."""

    config: Config
    run_dir: Path | None
    dist: DistInfo
    device: torch.device
    model: Any
    optimizer: torch.optim.Optimizer
    state: TrainState
    ema: Any
    epoch_perm: Tensor | None
    epoch_stats: Tensor
    perm_generator: torch.Generator
    noise_generator: torch.Generator
    best_weights: dict[str, Tensor] | None
    #: monotonic time of this process's last checkpoint; None before the first
    _checkpointed_at: float | None = None
    #: the best epoch that model.safetensors holds
    _best_written: int = -1

    def _log(self, message: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ writing

    def checkpoint_due(self) -> bool:
        """Whether the epoch just ended writes a checkpoint: the first of this process, every
        --checkpoint-every seconds, and the last one. Every process takes rank 0's answer."""
        every, last = self.config.checkpoint_every, self._checkpointed_at
        due = (every == 0 or last is None or time.monotonic() - last >= every
               or self.state.epoch >= self.config.epochs)
        if not self.dist.enabled:
            return due
        flag = torch.full((), float(due and self.dist.is_main), device=self.device)
        return bool(all_reduce_sum(flag, self.dist).item() > 0)

    def save_checkpoint(self, last_row: dict[str, Any] | None = None) -> float:
        """The checkpoint, then model.safetensors if the best weights changed. Called by every
        process (the epoch's partial sums are gathered); rank 0 writes. Returns the seconds it
        took."""
        start = time.perf_counter()
        stats = all_reduce_sum(self.epoch_stats.clone(), self.dist)
        self._checkpointed_at = time.monotonic()
        if self.run_dir is None or not self.dist.is_main:
            return 0.0
        s = self.state
        sync_metrics(self.run_dir)  # every line the checkpoint covers is on disk first
        perm = self.epoch_perm if s.step_in_epoch else None
        best = self.best_weights if self.best_weights is not None and not self._best_is_own() \
            else {}
        write_checkpoint(self.run_dir / CHECKPOINT_FILE, self.model, self.optimizer, Checkpoint(
            s, torch.get_rng_state(), self.perm_generator.get_state(),
            self.noise_generator.get_state(), stats.cpu(), perm,
            self.ema.tensors() if self.ema is not None else {}, best, last_row),
            self.dist.world_size)
        if self.best_weights is not None and self._best_written != s.best_epoch:
            self._save_best()  # after the checkpoint: a kill in between is repaired on resume
        return time.perf_counter() - start

    def _best_is_own(self) -> bool:
        """Whether the best weights are the checkpoint's own (its weights, or their average):
        at the end of the best epoch."""
        s = self.state
        return s.best_epoch == s.epoch and s.step_in_epoch == 0

    def _save_best(self) -> None:
        if self.run_dir is not None and self.dist.is_main:
            save_weights(self.model, self.run_dir / MODEL_FILE,
                         metadata={"epoch": self.state.best_epoch,
                                   "val_elbo": self.state.best_val}, state=self.best_weights)
            self._best_written = self.state.best_epoch

    def _weights_to_keep(self) -> dict[str, Tensor]:
        """A copy of the weights that the run saves: the average, where there is one."""
        with self.ema.applied() if self.ema is not None else nullcontext():
            return copy.deepcopy(self.model.state_dict())

    def _rewrite_metrics(self) -> None:
        if self.run_dir is not None and self.dist.is_main:
            write_metrics(self.run_dir, self.state.history)

    def _append_metrics(self, row: dict[str, Any]) -> None:
        """One line per epoch, appended, not fsynced (see the module's docstring)."""
        if self.run_dir is not None and self.dist.is_main:
            append_metrics(self.run_dir, row, fsync=False)

    # ------------------------------------------------------------------ reading

    def restore_checkpoint(self) -> None:
        assert self.run_dir is not None
        ckpt = read_checkpoint(self.run_dir / CHECKPOINT_FILE, self.model, self.optimizer)
        if self.ema is not None:
            self.ema.load_tensors(ckpt.ema, str(self.run_dir / CHECKPOINT_FILE))
        self.state = ckpt.state
        self.state.history = self._read_history(ckpt.last_row)
        self._rewrite_metrics()
        torch.set_rng_state(ckpt.torch_rng)
        self.perm_generator.set_state(ckpt.perm_rng)
        try:
            self.noise_generator.set_state(ckpt.noise_rng)
        except RuntimeError:  # resumed on another kind of device: its RNG state cannot move
            self.noise_generator.manual_seed(self.config.seed + 1 + self.state.global_step)
            self._log("warning: resumed on a different device type; the sampling noise is "
                      "reseeded, so the run continues correctly but not bit-identically")
        self.epoch_stats = ckpt.epoch_stats.to(self.device)
        if not self.dist.is_main:  # rank 0 carries the sum over all processes
            self.epoch_stats.zero_()
        self.epoch_perm = ckpt.epoch_perm
        self._restore_best(ckpt)
        self._checkpointed_at = time.monotonic()
        if not self.state.schedule:  # written before checkpoints kept the schedule's segments
            original = read_run_info(self.run_dir).config.epochs
            self.state.schedule = [Segment(0.0, float(original))]

    def _restore_best(self, ckpt: Checkpoint) -> None:
        """The best weights: the checkpoint's `best.*`, its own weights at the end of the best
        epoch, or (a checkpoint written before it carried them) model.safetensors. Then
        model.safetensors is rewritten where it lags behind the checkpoint."""
        assert self.run_dir is not None
        s = self.state
        if s.best_epoch < 0:
            return
        on_disk, meta = (load_tensors(self.run_dir / MODEL_FILE)
                         if (self.run_dir / MODEL_FILE).exists() else ({}, None))
        self._best_written = int((meta or {}).get("epoch", -1))
        if ckpt.best:
            self.best_weights = {k: v.to(self.device) for k, v in ckpt.best.items()}
        elif self._best_is_own():
            self.best_weights = self._weights_to_keep()
        elif self._best_written == s.best_epoch:
            self.best_weights = {k[len("model."):]: v.to(self.device)
                                 for k, v in on_disk.items()}
        if self.best_weights is not None and self._best_written != s.best_epoch:
            self._save_best()  # killed between the checkpoint and model.safetensors

    def _read_history(self, last_row: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The metrics of the epochs the checkpoint covers: later lines, from epochs that ran
        after it was written, are dropped (the resumed run writes them again), and its own
        epoch's line, if a kill came before it reached metrics.jsonl, is taken from it."""
        assert self.run_dir is not None
        rows = [row for row in read_metrics(self.run_dir)
                if row.get("epoch", 0) <= self.state.epoch]
        if last_row is not None and not any(r.get("epoch") == last_row.get("epoch")
                                            for r in rows):
            rows.append(last_row)
        return rows
