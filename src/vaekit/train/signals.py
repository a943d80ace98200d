"""SIGINT and SIGTERM during training: a flag the loop reads after each step, then a checkpoint
and a one-line message saying how to resume."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from vaekit.errors import VaekitError


class TrainingInterrupted(VaekitError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint."""


@contextmanager
def stop_on_signals() -> Iterator[dict[str, int]]:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step."""
    flag = {"signal": 0}
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        flag["signal"] = int(signum)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield flag
    finally:
        for signum, h in previous.items():
            signal.signal(signum, h)
