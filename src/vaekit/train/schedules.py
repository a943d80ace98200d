"""Learning-rate schedules, and how a resumed run that changes --epochs continues them.

A schedule is a pure function of the run's *progress* p in [0, 1] and of the epochs since it
started, giving the factor that multiplies the base --lr. The run's schedule is a list of
`Segment`s, kept in the checkpoint: a fresh run has one, from epoch 0 to --epochs. Resuming with
another --epochs *stretches the remaining schedule*: from the resume point t0, where the
progress is p0, the part not yet run is spread over the remaining epochs,

    p(t) = p0 + (1 - p0) (t - t0) / (E_new - t0),

so the learning rate goes on from its current value, without a jump. `--restart-schedule`
instead starts a new segment at p = 0 over the added epochs: a warm restart (Loshchilov &
Hutter 2017, SGDR). The `iwae` schedule is defined by absolute epochs and simply continues.

With `--schedule-over time` the horizon is the time limit, not --epochs: after every epoch the
segment is refitted to end at the epoch where the time will be up (`time_horizon`), so a cosine
reaches 0 when the run stops instead of being cut off partway. The estimate reads only the
epochs' recorded seconds (metrics.jsonl's, kept in the checkpoint), so a resumed run plans from
the same record.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from vaekit.errors import ConfigError

#: (progress in [0, 1], epochs since the schedule started) -> factor of the base learning rate.
ScheduleFn = Callable[[float, float], float]


def constant(progress: float, epochs: float) -> float:
    """The base rate throughout."""
    return 1.0


def cosine(progress: float, epochs: float) -> float:
    """(1 + cos(pi p)) / 2: from 1 down to 0 at the end of the run (Loshchilov & Hutter 2017)."""
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def step(progress: float, epochs: float) -> float:
    """x0.1 at half of the run and again at three quarters."""
    return 0.1 ** ((progress >= 0.5) + (progress >= 0.75))


def iwae(progress: float, epochs: float) -> float:
    """Burda et al. 2016: stage i lasts 3^i epochs at 10^(-i/7), whatever the run's length, so
    the stages start at epochs 0, 1, 4, 13, 40, 121, ... (the sums of 3^j, j < i)."""
    stage, end = 0, 1
    while epochs >= end:
        stage += 1
        end += 3**stage
    return 10 ** (-stage / 7)


def warmup(epoch: float, epochs: float) -> float:
    """min(1, t / W): the factor of a linear learning-rate warm-up over the first W epochs
    (Goyal et al. 2017), at fractional epoch t of the run (the trainer passes the end of each
    step, so the first step already moves); 1 with W = 0. It multiplies the schedule's factor,
    as a pure function of t, so a resumed run gets the same rates."""
    return 1.0 if epochs <= 0 else min(1.0, epoch / epochs)


LR_SCHEDULES: dict[str, ScheduleFn] = {
    "constant": constant, "cosine": cosine, "step": step, "iwae": iwae}


@dataclass(frozen=True)
class Segment:
    """A stretch of the schedule: from epoch `start` (fractional: a resume point may be
    mid-epoch), where the progress is `progress`, to p = 1 at epoch `end`. `origin` is the epoch
    at which the schedule (re)started: schedules by absolute epochs count from it."""

    start: float
    end: float
    progress: float = 0.0
    origin: float = 0.0

    def progress_at(self, epoch: float) -> float:
        """p(t) = p0 + (1 - p0) (t - t0) / (E - t0), and 1 from the end on."""
        if epoch >= self.end:
            return 1.0
        return self.progress + (1.0 - self.progress) * (epoch - self.start) / (
            self.end - self.start)

    def factor(self, fn: ScheduleFn, epoch: float) -> float:
        """The schedule's factor of the base learning rate at `epoch`."""
        return fn(self.progress_at(epoch), epoch - self.origin)


def refit(segment: Segment, at: float, epochs: float, restart: bool) -> Segment:
    """The segment that takes the run from epoch `at` to a new horizon `epochs`: the rest of
    `segment` stretched (or squeezed) over the epochs left, or with `restart` a new schedule
    that starts at p = 0 at `at`."""
    if restart:
        return Segment(at, epochs, 0.0, at)
    return Segment(at, epochs, segment.progress_at(at), segment.origin)


#: the epochs whose mean length predicts the next ones' (`time_horizon`)
RECENT_EPOCHS = 3


def time_horizon(epoch: int, seconds: list[float], limit: float, max_epochs: int) -> int:
    """The epoch at which a run of `limit` seconds will end (--schedule-over time), after
    `epoch` epochs that took `seconds` (one per epoch, across resumes): as many more as the time
    left holds at the mean length of the last `RECENT_EPOCHS`,

        E = epoch + floor((limit - sum(seconds)) / mean(seconds[-3:])),

    at most `max_epochs` (--epochs). The schedule's segment is refitted to end at E after every
    epoch (`refit`: the rest of the schedule stretched, so the rate goes on without a jump), and
    the run stops when E is reached, so the schedule ends with the time."""
    recent = seconds[-RECENT_EPOCHS:]
    per_epoch = sum(recent) / len(recent) if recent else 0.0
    if per_epoch <= 0:
        return max_epochs
    more = math.floor(max(limit - sum(seconds), 0.0) / per_epoch)
    return min(max_epochs, epoch + more)


def has_ended(fn: ScheduleFn, segment: Segment, at: float) -> bool:
    """Whether the schedule reached its end (p = 1) by epoch `at` at a rate below its start's:
    extending such a run would go on at that final rate (0 for cosine)."""
    epochs = at - segment.origin
    return segment.progress_at(at) >= 1.0 and fn(1.0, epochs) < fn(0.0, epochs)


def resume_segments(segments: list[Segment], at: float, epochs: float,
                    restart: bool) -> list[Segment]:
    """The schedule of a run resumed at epoch `at` to a horizon of `epochs`: as it was where
    the horizon is unchanged, else with a segment from `at` on (`refit`), which replaces the
    last one where that began at `at` too. `restart` needs epochs added."""
    last = segments[-1]
    if restart and not (epochs > last.end and epochs > at):
        raise ConfigError(f"--restart-schedule needs --epochs above {last.end:g}, where the "
                          "run's schedule ends now; to continue the schedule as it is, resume "
                          "without --restart-schedule")
    if epochs == last.end or epochs <= at:
        return segments
    kept = segments[:-1] if last.start == at else segments
    return [*kept, refit(last, at, epochs, restart)]
