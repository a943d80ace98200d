"""The one training loop: Adam on the ELBO over in-memory tensors sliced by a shuffled index.

Every random draw of a step (the data order, dynamic binarization, the reparameterization noise)
comes from two generators that the checkpoint saves, and is drawn for the *global* batch, of
which each torchrun process takes its slice. So a run is a function of its seed alone: the same
on resume, and the same on 1 or N processes (up to float summation order).
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from vaekit.config import Config
from vaekit.data import Dataset, dequantize
from vaekit.errors import ConfigError
from vaekit.models import LatentVariableModel, build_model
from vaekit.run import RunInfo, write_run_info
from vaekit.train.distributed import all_reduce_sum, barrier
from vaekit.train.faults import MAX_CONSECUTIVE_SKIPS, FaultRecovery, TrainingDiverged
from vaekit.train.loss import LossModule
from vaekit.train.pacing import TrainerPacing
from vaekit.train.reporting import EpochReport
from vaekit.train.saving import RunDirectory
from vaekit.train.schedules import LR_SCHEDULES, warmup
from vaekit.train.setup import TrainerSetup
from vaekit.train.signals import TrainingInterrupted, stop_on_signals
from vaekit.train.tensorboard import TensorBoardLog

#: What `Trainer.train_epoch` ends with.
DONE, STOPPED, ROLLED_BACK = "done", "stopped", "rolled back"
__all__ = ["MAX_CONSECUTIVE_SKIPS", "LossModule", "Trainer", "TrainingDiverged",
           "TrainingInterrupted"]


class Trainer(TrainerSetup, FaultRecovery, RunDirectory, EpochReport, TrainerPacing):
    """Trains `config` on `data`, writing the run directory `run_dir` (rank 0 only)."""

    def __init__(self, config: Config, data: Dataset, run_dir: Path | None = None,
                 progress: bool = True, data_record: dict[str, Any] | None = None) -> None:
        self.data = data
        self.data_record = dict(data_record or {})  # more for config.json's data section
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        config = config.validate()
        self._place(config)
        self.config = self._resolve_config(config, data)
        self.tensorboard: TensorBoardLog | None = None
        torch.manual_seed(self.config.seed)
        self.model = build_model(self.config, data.event_shape).to(self.device)
        self._build_optimizer()
        self._start_state()
        self._load_data(data)
        self._initialise_from_data()
        self._wrap_loss()

    # ------------------------------------------------------------------ run directory

    def run_info(self) -> RunInfo:
        d = self.data
        return RunInfo(self.config, d.event_shape, {
            "name": d.name, "images": d.images, "bin_width": d.bin_width,
            "binarize": self.binarize, "dequantize": self.dequantize,
            "val_fraction": self.config.val_fraction,
            "train_size": len(d.train), **self.data_record, **self._class_counts()})

    def _class_counts(self) -> dict[str, Any]:
        """A conditional run's training examples per class: p(c) for its marginal log p(x)."""
        if self.train_labels is None:
            return {}
        counts = torch.bincount(self.train_labels.cpu(), minlength=self.model.condition_dim)
        return {"class_counts": counts.tolist()}

    # ------------------------------------------------------------------ training

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(message, file=sys.stderr)

    def steps_per_epoch(self) -> int:
        """Global batches per epoch: the full ones, then the rest of the shuffled epoch as one
        smaller batch (trimmed to a multiple of the number of processes), unless --drop-last."""
        return len(self._epoch_batches())

    def _describe_steps(self) -> str:
        """How many steps an epoch runs, in words: small tables have few."""
        n, spans = len(self.train_x), self._epoch_batches()
        used = sum(size for _, size in spans)
        text = f"{self.data.name}: {n} training rows, batch {self.batch}: {len(spans)} step" \
               f"{'s' * (len(spans) != 1)} per epoch"
        if spans and spans[-1][1] != self.batch:
            text += f" (the last of {spans[-1][1]} rows)"
        if used < n:
            text += f"; {n - used} rows left out of each epoch" + (
                " (--drop-last)" if self.config.drop_last else "")
        return text

    def _epoch_batches(self) -> list[tuple[int, int]]:
        """(first row, rows) of each step's global batch within the epoch's permutation. A step's
        loss is the mean over its own rows, an unbiased estimate of the data's mean whatever
        the batch's size; the epoch's train_elbo counts every row once. Under torchrun the
        partial batch is trimmed to a multiple of the processes (at most N-1 rows left out an
        epoch), so N processes match one exactly where the batch size divides the training
        rows, or with --drop-last."""
        full, rest = divmod(len(self.train_x), self.batch)
        rest -= rest % self.dist.world_size
        spans = [(i * self.batch, self.batch) for i in range(full)]
        if rest and not self.config.drop_last:
            spans.append((full * self.batch, rest))
        return spans

    def _condition(self, rows: Tensor | slice) -> Tensor | None:
        """The one-hot condition (B, C) of training rows `rows` (a conditional model), else
        None."""
        if self.train_labels is None:
            return None
        return nn.functional.one_hot(self.train_labels[rows], self.model.condition_dim).to(
            self.train_x.dtype)

    def _beta(self, epoch_progress: float) -> float:
        """The KL weight: --beta, ramped up linearly over --kl-warmup epochs."""
        w = self.config.kl_warmup
        return self.config.beta * (1.0 if w == 0 else min(1.0, epoch_progress / w))

    def train_epoch(self, stop: dict[str, int]) -> str:
        """One pass over the training data (from a mid-epoch position after a resume or a
        rollback). Returns DONE, STOPPED (by a signal) or ROLLED_BACK (to the last snapshot,
        from where the epoch is to run again)."""
        cfg, s = self.config, self.state
        n = len(self.train_x)
        spans = self._epoch_batches()
        steps = len(spans)
        if s.step_in_epoch == 0 or self.epoch_perm is None:
            self.epoch_perm = torch.randperm(n, generator=self.perm_generator)
            self.epoch_stats.zero_()
        order = self.epoch_perm.to(self.device)  # the rows of step i: order[first:first + size]
        sums, check_every = self.epoch_stats, self.check_every
        schedule, segment = LR_SCHEDULES[cfg.lr_schedule], s.schedule[-1]
        lrs = [cfg.lr * segment.factor(schedule, s.epoch + i / steps) * s.lr_scale
               * warmup(s.epoch + (i + 1) / steps, cfg.lr_warmup)
               for i in range(steps)]  # of each step, computed once an epoch
        unread = (s.step_in_epoch, s.global_step)  # the first step whose flag the host has not read
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                    if cfg.bf16 and self.device.type == "cuda" else nullcontext())
        # tqdm's own rule for disable=None: no bar (and no carriage returns) off a terminal
        bar = tqdm(range(s.step_in_epoch, steps), desc=f"epoch {s.epoch + 1}/{cfg.epochs}",
                   leave=False, disable=None if self.progress and self.dist.is_main else True,
                   dynamic_ncols=True, file=sys.stderr)
        show_elbo = not bar.disable
        self.model.train()
        for step in bar:
            lr = lrs[step]
            if lr != self.optimizer.param_groups[0]["lr"]:
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
            first, batch = spans[step]
            x, noise, c = self._batch(order[first:first + batch])
            beta: float | Tensor = self._beta(s.epoch + step / steps)
            if cfg.compile:  # a Python float would recompile the graph at every new value
                beta = torch.tensor(beta, device=self.device)
            with autocast:
                loss, stats = self.loss_fn(x, noise, beta, c)
            for p in self._params:  # optimizer.zero_grad(set_to_none=True), minus its overhead
                p.grad = None
            loss.backward()
            bad = self._flag_non_finite(loss)  # on the device: no host sync
            s.global_step += 1
            s.step_in_epoch = step + 1
            if self._update(bad, stats, step):
                bar.close()
                return ROLLED_BACK
            stop_now = False
            if (step + 1) % check_every == 0 or step + 1 == steps:
                stop_now = self._agree_to_stop(stop)
                if check_every > 1:
                    rolled_back = self._read_fault_flags(unread, step)
                    unread = (step + 1, s.global_step)
                    if rolled_back:
                        bar.close()
                        return ROLLED_BACK
            if show_elbo and step % max(25, check_every) == 0:
                count = sums[2].item()
                if count:
                    bar.set_postfix(elbo=f"{((sums[0] - sums[1]) / count).item():.2f}")
            if stop_now:
                bar.close()
                return STOPPED
        bar.close()
        return DONE

    def _batch(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """A step's inputs from the global batch's `rows`: x (binarized or dequantized with the
        noise generator), the reparameterization noise and a conditional model's one-hot
        classes, each cut to this process's shard under torchrun."""
        batch = len(rows)
        x = torch.index_select(self.train_x, 0, rows)  # (batch, *event_shape)
        c = self._condition(rows)  # (batch, classes) or None
        if self.binarize == "dynamic":
            x = torch.bernoulli(x, generator=self.noise_generator)
        elif self.dequantize:
            x = dequantize(x, self.dequantize, self.noise_generator)
        noise = self.model.draw_noise(self.config.iw_samples, batch, self.noise_generator,
                                      self.device)  # (k, batch, ...)
        if self.dist.enabled:  # this process's shard of the global batch
            local = batch // self.dist.world_size
            mine = slice(self.dist.rank * local, (self.dist.rank + 1) * local)
            x, noise = x[mine], noise[:, mine]
            c = c[mine] if c is not None else None
        return x, noise, c

    def _update(self, bad: Tensor, stats: Tensor, step: int) -> bool:
        """The optimiser's step, the weight average and the epoch's sums, unless the step is
        flagged `bad`. Where the host looks at every step it skips the update itself, and
        returns whether the faults rolled the run back; else the fused step is a no-op where
        `bad` is set, and the flag waits on the device for the host's next look."""
        s = self.state
        if self.check_every == 1:
            if not bad.item():
                self.optimizer_step()
                if self.ema is not None:
                    self.ema.update()
                self.epoch_stats.add_(stats)
                s.consecutive_skips = 0
                return False
            return self._record_faults((1.0,), s.global_step)
        self.optimizer_step()
        if self.ema is not None:  # on a skipped step, a pull towards unchanged weights
            self.ema.update()
        self.epoch_stats.add_(torch.where(bad > 0, 0.0, stats))
        self._fault_slots[step % self.check_every].copy_(bad)
        return False

    def _agree_to_stop(self, stop: dict[str, int]) -> bool:
        """Whether a signal asked this or any other process to stop (one all-reduce)."""
        if not self.dist.enabled:
            return stop["signal"] != 0
        flag = torch.full((), float(stop["signal"] != 0), device=self.device)
        return bool(all_reduce_sum(flag, self.dist).item() > 0)

    def fit(self, resume: bool = False, restart_schedule: bool = False) -> LatentVariableModel:
        """Train to --epochs, from the run's checkpoint with `resume`; `restart_schedule`
        restarts the learning-rate schedule over the epochs a resume adds."""
        cfg = self.config
        if restart_schedule and not resume:
            raise ConfigError("--restart-schedule applies only with --resume (it restarts the "
                              "schedule over the epochs that the resume adds)")
        if self.run_dir is not None and self.dist.is_main:
            if resume:
                self.restore_checkpoint()
            else:
                write_run_info(self.run_dir, self.run_info())
                self._rewrite_metrics()
        elif resume and self.run_dir is not None:
            self.restore_checkpoint()  # every rank restores the same state
        barrier(self.dist)
        self._fit_schedule(restart_schedule)
        self.last_good = self._snapshot()
        with stop_on_signals() as stop, self._tensorboard():
            start = time.perf_counter()
            while self.state.epoch < cfg.epochs:
                outcome = self.train_epoch(stop)
                if outcome == ROLLED_BACK:  # the rollback and its halved rate, made durable
                    self.save_checkpoint(self.state.history[-1] if self.state.history else None)
                    continue
                if outcome == STOPPED:
                    self.save_checkpoint()
                    barrier(self.dist)
                    where = (f"epoch {self.state.epoch + 1}, step {self.state.step_in_epoch}")
                    hint = (f"; resume with: vaekit train --resume {self.run_dir}"
                            if self.run_dir else "")
                    raise TrainingInterrupted(f"training stopped by signal {stop['signal']} "
                                              f"at {where}; a checkpoint was written{hint}")
                out_of_time = self._end_epoch(start)
                start = time.perf_counter()
                if out_of_time:
                    break
        barrier(self.dist)
        self._report_schedule()
        if self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)
        self.model.eval()
        return self.model

    def _end_epoch(self, start: float) -> bool:
        """Validation, metrics and, when due, the checkpoint (see `saving`). Returns whether
        --time-limit ends the run here. The metrics line's `seconds` is the epoch's whole wall
        time, its checkpoint included; `io_seconds` is the checkpoint's part of it."""
        s = self.state
        totals = all_reduce_sum(self.epoch_stats.clone(), self.dist).cpu()
        count = max(float(totals[2]), 1.0)
        row: dict[str, Any] = {"epoch": s.epoch + 1, "step": s.global_step,
                               "train_elbo": float(totals[0] - totals[1]) / count,
                               "train_reconstruction": float(totals[0]) / count,
                               "train_kl": float(totals[1]) / count}
        row.update(self.model.epoch_metrics())  # e.g. a code space's usage, a temperature
        row.update(self.validate())
        row.update({"lr": self.optimizer.param_groups[0]["lr"], "skipped_steps": s.skipped,
                    "seconds": round(time.perf_counter() - start, 3), "io_seconds": 0.0})
        s.epoch += 1
        s.step_in_epoch = 0
        self.epoch_perm = None
        score = row.get("val_elbo", row["train_elbo"])
        improved = math.isfinite(score) and score > s.best_val
        if improved:
            s.best_val, s.best_epoch = score, s.epoch
            self.best_weights = self._weights_to_keep()
        row["best_epoch"] = s.best_epoch
        s.history.append(row)
        out_of_time = self._out_of_time(time.perf_counter() - start)  # may replan the schedule
        self.last_good = self._snapshot()
        if self.tensorboard is not None:
            with self.ema.applied() if self.ema is not None else nullcontext():
                self.tensorboard.log_epoch(row, self.model)
        if out_of_time or self.checkpoint_due():
            row["io_seconds"] = round(self.save_checkpoint(last_row=row), 3)
        seconds = time.perf_counter() - start
        row["seconds"] = round(seconds, 3)
        self._append_metrics(row)
        self._print_epoch(row, seconds)
        self._warn_switched_off(row)
        return out_of_time
