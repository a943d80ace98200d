"""The ELBO of a dataset, in chunks, with noise from a fixed generator so that numbers compare
from epoch to epoch and from run to run."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from vaekit.models import LatentVariableModel
from vaekit.objectives import elbo


@torch.no_grad()
def dataset_elbo(model: LatentVariableModel, x: Tensor, batch_size: int = 1000, seed: int = 0,
                 k: int = 1, units: bool = False, condition: Any = None) -> dict[str, Tensor]:
    """Per-example ELBO, reconstruction and KL (each (N,), nats) over a whole tensor, and the KL
    of each latent group, `kl_groups` (N, groups). With `units`, also `kl_units` (N, units),
    the KL of each free-bits unit (`LogWeightTerms.kl_units`), where the model has them. A
    conditional model takes each example's class labels, `condition` (N,)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    model.reseed(seed)  # noise drawn inside log p(z), if any, follows the seed too
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()  # page-locked: the copies below overlap with the GPU's work
    parts: dict[str, list[Tensor]] = {"elbo": [], "reconstruction": [], "kl": [],
                                      "kl_groups": []}
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        noise = model.draw_noise(k, len(xb), generator=generator, device=device)
        c = model.as_condition(condition_rows(condition, start, batch_size), len(xb),
                               "evaluate")
        t = model.terms(xb, noise=noise, cache=model.inference_cache(xb, c), condition=c)
        out = elbo(t)
        out["kl_groups"] = torch.stack(t.kl_groups, dim=-1)  # (B, groups)
        kl_units = t.kl_units() if units else None
        if kl_units is not None:
            out["kl_units"] = kl_units  # (B, units)
            parts.setdefault("kl_units", [])
        for key in parts:
            parts[key].append(out[key].float().cpu())
    return {key: torch.cat(v) if v else torch.empty(0) for key, v in parts.items()}


def condition_rows(condition: Any, start: int, size: int) -> Any:
    """The labels of rows [start, start + size) of a dataset's `condition` (N,) (None stays
    None; one class for all stays as it is)."""
    if condition is None or isinstance(condition, (int, str)):
        return condition
    return condition[start:start + size]
