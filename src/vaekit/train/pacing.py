"""The trainer's pacing: where the learning-rate schedule ends, and when --time-limit stops a run.

A run's schedule ends at --epochs (`--schedule-over epochs`, the default), or where its time
will be up (`--schedule-over time`): after every epoch the schedule's segment is refitted to
end at the epoch `schedules.time_horizon` predicts from the epochs' recorded seconds, and the
run stops there. With --epochs only, --time-limit stops a run after the last epoch that fits,
wherever its schedule is. Either way the run says at its end how much of its schedule it ran.

Every decision reads only the state a checkpoint keeps (the epochs' seconds, the segments), and
every DDP process takes rank 0's, so a resumed run and N processes follow one plan.
"""

from __future__ import annotations

from typing import Any

import torch

from vaekit.config import Config
from vaekit.errors import ConfigError
from vaekit.train.checkpoint import TrainState
from vaekit.train.distributed import DistInfo, all_reduce_sum
from vaekit.train.schedules import LR_SCHEDULES, has_ended, refit, resume_segments, time_horizon


class TrainerPacing:
    """A part of `Trainer` (see the module's docstring)."""

    config: Config
    state: TrainState
    dist: DistInfo
    device: torch.device
    run_dir: Any

    def _log(self, message: str) -> None:
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def _rank0(self, value: float) -> float:
        """Rank 0's `value` on every process (one all-reduce under DDP)."""
        if not self.dist.enabled:
            return value
        t = torch.full((), value if self.dist.is_main else 0.0, device=self.device,
                       dtype=torch.float64)
        return float(all_reduce_sum(t, self.dist).item())

    def _out_of_time(self, last: float) -> bool:
        """Whether --time-limit ends the run after the epoch that just ended (`last` seconds so
        far), counting the seconds of the epochs before it (metrics.jsonl's, across resumes).
        Over epochs: when no room is left for another epoch as long as this one. Over time: when
        the replanned horizon (`_replan`) is here."""
        cfg, s = self.config, self.state
        limit = cfg.time_limit * 60
        if not limit or s.epoch >= cfg.epochs:
            return False
        seconds = [float(row.get("seconds", 0.0)) for row in s.history[:-1]] + [last]
        spent = sum(seconds)
        if cfg.schedule_over == "time":
            if not self._replan(seconds, limit):
                return False
        elif not self._rank0(float(spent + last > limit)):
            return False
        self._log(f"--time-limit {cfg.time_limit:g} min: stopping after epoch {s.epoch} "
                  f"({spent / 60:.1f} min of training); resume with: vaekit train --resume "
                  f"{self.run_dir} --time-limit MINUTES")
        return True

    def _replan(self, seconds: list[float], limit: float) -> bool:
        """--schedule-over time: refit the schedule to end where the time will be up; True when
        that is now."""
        s = self.state
        horizon = self._rank0(float(time_horizon(s.epoch, seconds, limit, self.config.epochs)))
        if horizon <= s.epoch:
            return True
        s.schedule[-1] = refit(s.schedule[-1], float(s.epoch), horizon, restart=False)
        return False

    def _fit_schedule(self, restart: bool) -> None:
        """At the start of `fit`: after a resume that changes --epochs, the schedule's new
        segment, the rest of it stretched over the epochs left or (`restart`) a warm restart
        from --lr (see `schedules`). Over time, the checkpoint's plan stands (it is replanned
        after each epoch), unless a lower --epochs cuts it."""
        s, cfg = self.state, self.config
        last, at = s.schedule[-1], s.epoch + s.step_in_epoch / self.steps_per_epoch()
        if cfg.schedule_over == "time":
            if restart:
                raise ConfigError("--restart-schedule restarts a schedule over added epochs; "
                                  "with --schedule-over time the schedule follows the time "
                                  "limit: resume with a larger --time-limit instead")
            if cfg.epochs < last.end:
                s.schedule[-1] = refit(last, at, float(cfg.epochs), restart=False)
            return
        schedule = LR_SCHEDULES[cfg.lr_schedule]
        s.schedule = resume_segments(s.schedule, at, float(cfg.epochs), restart)
        if not restart and cfg.epochs > last.end and has_ended(schedule, last, at):
            lr = cfg.lr * last.factor(schedule, at) * s.lr_scale
            self._log(
                f"warning: the {cfg.lr_schedule} learning-rate schedule ended at epoch {at:g}, "
                f"so the added epochs run at its final lr {lr:.3g}. To restart it from --lr "
                f"{cfg.lr:g} over the added epochs (a warm restart), resume with: vaekit "
                f"train --resume {self.run_dir} --epochs {cfg.epochs} --restart-schedule")

    def schedule_progress(self) -> float:
        """How far the learning-rate schedule has run: its progress p in [0, 1] now."""
        return self.state.schedule[-1].progress_at(float(self.state.epoch))

    def _report_schedule(self) -> None:
        """At the end of training, how much of the planned schedule the run ran."""
        cfg, s = self.config, self.state
        if cfg.lr_schedule == "constant":
            return
        p, end = self.schedule_progress(), s.schedule[-1].end
        over = (f"over --time-limit {cfg.time_limit:g} min (planned to end at epoch {end:g})"
                if cfg.schedule_over == "time" else f"over --epochs {cfg.epochs}")
        text = f"the {cfg.lr_schedule} learning-rate schedule {over}: ran {p:.1%} of it, " \
               f"to epoch {s.epoch}"
        if p < 1 and cfg.time_limit and cfg.schedule_over == "epochs" \
                and cfg.lr_schedule != "iwae":
            text += "; --schedule-over time would run all of it within the time limit"
        self._log(text)
