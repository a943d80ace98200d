"""Adam for the training loop: torch's fused kernel, called without torch.optim's per-call
Python bookkeeping, which at small batches is a measurable part of a step."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def make_adam(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with its fused kernel (one pass over all parameters; on CPU, torch's default is a
    Python loop per tensor that cost a third of a small model's step time), else foreach."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr, foreach=True)


class AdamStep:
    """`optimizer.step()` for a fused `torch.optim.Adam` with one parameter group: the kernels
    torch runs (`_foreach_add_` on the step counts, `_fused_adam_`, and undoing the count where
    `found_inf` is set), without torch.optim's Python around them (step hooks, profiler ranges,
    regrouping the tensors by device at every call). That saves about 0.1 ms a step, 3% of a
    784-200-200-50 step at batch 20 on a CPU. The optimizer, its state and its checkpoints are
    torch's own; the first step (which creates the state), and any optimizer this does not fit,
    go through `optimizer.step()`."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    @staticmethod
    def _fits(optimizer: torch.optim.Optimizer, params: list[Tensor]) -> bool:
        """Whether torch's fused Adam would make exactly one kernel call for `params` (checked
        at every call: a checkpoint's load_state_dict replaces the group's flags)."""
        groups = optimizer.param_groups
        group = groups[0]
        return (isinstance(optimizer, torch.optim.Adam) and len(groups) == 1
                and bool(group.get("fused")) and hasattr(torch, "_fused_adam_")
                and not any(group.get(flag) for flag in (
                    "amsgrad", "maximize", "differentiable", "capturable",
                    "decoupled_weight_decay"))
                and all(isinstance(group[key], float) for key in ("lr", "eps"))
                and all(isinstance(b, float) for b in group["betas"])
                and len({(p.device, p.dtype) for p in params}) == 1)

    @torch.no_grad()
    def __call__(self) -> None:
        opt = self.optimizer
        group = opt.param_groups[0]
        params = [p for p in group["params"] if p.grad is not None]  # as torch.optim skips
        if not params:
            return
        states = [opt.state.get(p) for p in params]
        if not all(states) or not self._fits(opt, params):
            opt.step()
            return
        steps = [st["step"] for st in states]  # type: ignore[index]
        found_inf: Tensor | None = getattr(opt, "found_inf", None)
        beta1, beta2 = group["betas"]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params, [p.grad for p in params],
            [st["exp_avg"] for st in states],  # type: ignore[index]
            [st["exp_avg_sq"] for st in states],  # type: ignore[index]
            [], steps, amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
            weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
            grad_scale=getattr(opt, "grad_scale", None), found_inf=found_inf)
        if found_inf is not None:
            torch._foreach_sub_(steps, [found_inf] * len(steps))
