"""What the trainer does when a step goes wrong: skip the update, count it, and after
MAX_CONSECUTIVE_SKIPS skips in a row roll back to the last snapshot of the whole trainer state
at half the learning rate, at most MAX_ROLLBACKS times.

A step is skipped where the loss or a gradient is NaN/Inf, or the gradient norm is above
--skip-threshold (VDVAE's update skipping). On a GPU the flags stay on the device and the host
reads them every few steps (see `Trainer.check_every`), so no step waits on a host sync.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from vaekit.errors import VaekitError
from vaekit.train.checkpoint import Snapshot

#: Consecutive skipped steps before rolling back to the last snapshot at half the rate.
MAX_CONSECUTIVE_SKIPS = 10
MAX_ROLLBACKS = 3


class TrainingDiverged(VaekitError):
    """The loss stayed NaN/Inf through every rollback."""


class FaultRecovery:
    """The trainer's fault handling, as a part of `Trainer` (it reads the trainer's model,
    optimiser, state, generators and configuration)."""

    model: Any
    optimizer: torch.optim.Optimizer
    state: Any
    config: Any
    dist: Any
    ema: Any
    epoch_perm: Tensor | None
    epoch_stats: Tensor
    perm_generator: torch.Generator
    noise_generator: torch.Generator
    last_good: Snapshot | None
    check_every: int
    _params: list[Tensor]
    _bad_step: Tensor
    _one: Tensor
    _fault_flags: Tensor

    def _log(self, message: str) -> None:
        raise NotImplementedError

    def _snapshot(self) -> Snapshot:
        """The whole trainer state: weights, optimiser, data position and permutation, the
        epoch's partial sums, the generators."""
        s = self.state
        return Snapshot(copy.deepcopy(self.model.state_dict()),
                        copy.deepcopy(self.optimizer.state_dict()),
                        (s.epoch, s.step_in_epoch, s.global_step), list(s.schedule),
                        self.epoch_perm, self.epoch_stats.clone(),
                        (torch.get_rng_state(), self.perm_generator.get_state(),
                         self.noise_generator.get_state()),
                        self.ema.copy() if self.ema is not None else None)

    def _restore(self, snap: Snapshot) -> None:
        """Back to `snap`; the fault counters and the learning-rate scale stay as they are."""
        self.model.load_state_dict(snap.model)
        self.optimizer.load_state_dict(snap.optim)
        if self.ema is not None and snap.ema is not None:
            self.ema.load(snap.ema)
        s = self.state
        s.epoch, s.step_in_epoch, s.global_step = snap.position
        s.schedule = list(snap.schedule)
        s.consecutive_skips = 0
        self.epoch_perm = snap.epoch_perm  # never changed in place: a new epoch draws anew
        self.epoch_stats.copy_(snap.epoch_stats)
        torch.set_rng_state(snap.rng[0])
        self.perm_generator.set_state(snap.rng[1])
        self.noise_generator.set_state(snap.rng[2])

    def _rollback(self, reason: str) -> None:
        """Restore the last snapshot and halve the learning rate; stop after MAX_ROLLBACKS."""
        s = self.state
        s.rollbacks += 1
        if s.rollbacks > MAX_ROLLBACKS or self.last_good is None:
            raise TrainingDiverged(
                f"training diverged: {reason} for {MAX_CONSECUTIVE_SKIPS} steps in a row, even "
                f"after {MAX_ROLLBACKS} rollbacks at lower learning rates (now "
                f"{self.config.lr * s.lr_scale:.3g}). Likely causes: a learning rate too high "
                "(try --lr 1e-4), a Gaussian likelihood whose variance collapsed (try "
                "--variance fixed), or extreme input values (standardise the data)")
        self._restore(self.last_good)
        s.lr_scale *= 0.5
        self._log(f"warning: {reason} for {MAX_CONSECUTIVE_SKIPS} steps in a row; rolled back to "
                  f"{self.last_good.where()} with the learning rate halved (x{s.lr_scale:g})")

    def _flag_non_finite(self, loss: Tensor) -> Tensor:
        """Clip the gradient norm to --grad-clip, and set the step's flag (a 0-d tensor that
        stays on the device) to 1 if a gradient or the loss is NaN/Inf, or the norm is above
        --skip-threshold. Without either, one fused non-finite check replaces the norm (5x
        cheaper). Under DDP only the gradients count: they are averaged over the processes, so
        every process reaches the same flag (a non-finite local loss makes them non-finite)."""
        bad = self._bad_step
        clip, threshold = self.config.grad_clip, self.config.skip_threshold
        if clip > 0 or threshold > 0:
            norm = torch.nn.utils.clip_grad_norm_(self._params, clip if clip > 0 else math.inf)
            bad.copy_(~torch.isfinite(norm))
            if threshold > 0:
                bad.logical_or_(norm > threshold)
            if not self.dist.enabled:
                bad.logical_or_(~torch.isfinite(loss.detach()))
        else:
            checked = [p.grad for p in self._params if p.grad is not None]
            loss_joins = not self.dist.enabled and all(g.dtype == loss.dtype for g in checked[:1])
            if loss_joins:  # the check scales in place by 1: harmless to a spent loss
                checked.append(loss.detach())
            bad.zero_()
            torch._amp_foreach_non_finite_check_and_unscale_(checked, bad, self._one)
            if not (loss_joins or self.dist.enabled):
                bad.logical_or_(~torch.isfinite(loss.detach()))
        return bad

    def _read_fault_flags(self, unread: tuple[int, int], step: int) -> bool:
        """The host's look, every `check_every` steps, at the skip flags of the steps of this
        epoch from `unread` = (step in the epoch, global steps before it) to `step`: one read
        of the device. Returns whether it rolled back."""
        first, before = unread
        flags = self._fault_flags[first % self.check_every:step % self.check_every + 1].tolist()
        return self._record_faults(flags, before + 1)

    def _record_faults(self, flags: Sequence[float], first_step: int) -> bool:
        """Take in the skip flags of consecutive steps, the first being step `first_step` of the
        run (counting from 1); warn at the run's first fault, naming its step, and roll back
        where a run of skips, continued from earlier looks, reaches MAX_CONSECUTIVE_SKIPS
        (whether or not it is still going). Returns whether it rolled back."""
        s = self.state
        if not any(flags):
            s.consecutive_skips = 0
            return False
        run, longest, skipped, first_fault = s.consecutive_skips, 0, 0, 0
        for i, flag in enumerate(flags):
            run = run + 1 if flag else 0
            longest = max(longest, run)
            if flag:
                skipped += 1
                first_fault = first_fault or first_step + i
        if s.skipped == 0:
            self._log(f"warning: non-finite loss or gradient at step {first_fault}; update "
                      "skipped (skips are counted in metrics.jsonl)")
        s.skipped += skipped
        s.consecutive_skips = run
        if longest >= MAX_CONSECUTIVE_SKIPS:
            self._rollback("the loss or gradient was NaN/Inf" + (
                " (or the gradient norm above --skip-threshold)"
                if self.config.skip_threshold else ""))
            return True
        return False
