"""The device a command runs on, from its --device value: every layer may import this."""

from __future__ import annotations

import torch

from vaekit.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` is CUDA where it is available, else the CPU; `cuda` or `cuda:N` where CUDA is
    missing is a one-line ConfigError, not a traceback from torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)
