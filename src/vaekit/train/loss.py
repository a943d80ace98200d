"""The model's objective as a module: the call that DDP and torch.compile wrap."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaekit.models import LatentVariableModel
from vaekit.objectives import training_loss
from vaekit.train.distributed import DistInfo, all_reduce_sum


class LossModule(nn.Module):
    """Wraps the model's objective as a `forward`, the call DDP and torch.compile act on."""

    def __init__(self, model: LatentVariableModel, objective: str = "elbo", free_bits: float = 0.0,
                 dist: DistInfo | None = None) -> None:
        super().__init__()
        self.model = model
        self.objective, self.free_bits = objective, free_bits
        self.dist = dist or DistInfo()

    def _global_mean(self, local_mean: Tensor) -> Tensor:
        """The mean over the global batch of per-process means (equal shards)."""
        return all_reduce_sum(local_mean.clone(), self.dist) / self.dist.world_size

    def forward(self, x: Tensor, noise: Tensor, beta: float | Tensor,
                condition: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(loss, [sum of reconstruction, sum of KL, examples] over the batch, detached); a
        conditional model's one-hot `condition` (B, C) beside x."""
        t = self.model.terms(x, noise=noise, condition=condition)
        loss = training_loss(t, self.objective, beta, self.free_bits,
                             self._global_mean if self.dist.enabled else None)
        log_px_z = t.log_px_z.detach()  # (k, B)
        k, batch = log_px_z.shape
        rec = log_px_z.sum() if k == 1 else log_px_z.sum() / k
        stats = torch.stack([rec, t.kl_estimate.detach().sum(), rec.new_full((), batch)])
        return loss, stats
