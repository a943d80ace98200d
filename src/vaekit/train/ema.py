"""An exponential moving average of the weights (Polyak & Juditsky 1992; used by VDVAE and NVAE
for evaluation and sampling):

    theta_ema <- decay * theta_ema + (1 - decay) * theta,   after every update.

The average is what validation scores, what the run saves as its model and what evaluation and
sampling then use; the checkpoint keeps it beside the raw weights (`ema.*`), so a resumed run
continues it bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from vaekit.errors import RunDirError


class WeightAverage:
    """The EMA of `model`'s trainable parameters."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.decay = decay
        self.names = [n for n, _ in named]
        self._live = [p.detach() for _, p in named]  # views: they follow the updates
        self.shadow = [p.detach().clone() for _, p in named]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, self._live, 1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The model holds the average inside the block, its own weights again after it."""
        backup = [p.clone() for p in self._live]
        with torch.no_grad():
            torch._foreach_copy_(self._live, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self._live, backup)

    def tensors(self) -> dict[str, Tensor]:
        """The average as checkpoint tensors ema.NAME."""
        return {f"ema.{n}": t for n, t in zip(self.names, self.shadow, strict=True)}

    def copy(self) -> list[Tensor]:
        return [t.clone() for t in self.shadow]

    @torch.no_grad()
    def load(self, shadow: list[Tensor]) -> None:
        torch._foreach_copy_(self.shadow, shadow)

    def load_tensors(self, tensors: dict[str, Tensor], source: str) -> None:
        """Take the average back from checkpoint tensors; a checkpoint written without one
        (the run had no --ema) cannot continue an average it never kept."""
        missing = [n for n in self.names if f"ema.{n}" not in tensors]
        if missing:
            raise RunDirError(f"{source} holds no weight average (ema.{missing[0]}); it was "
                              "written by a run without --ema")
        self.load([tensors[f"ema.{n}"] for n in self.names])
