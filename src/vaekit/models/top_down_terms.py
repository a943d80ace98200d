"""The log-weight terms of a top-down hierarchy: each group's draw (its prior, its posterior
relative to the prior, its noise) and their sums over the groups (`HierarchicalTerms`).

A group's KL is closed form given the samples above it,

    KL_l = 1/2 sum(dmu^2 / sigma_p^2 + exp(dlogvar) - 1 - dlogvar),

except for a top group whose N(0, I) a fitted prior replaced (`FittedTopDraw`): its KL is the
one-sample estimate log q(z_L|x) - log p(z_L), unbiased, so the ELBO stays an ELBO.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaekit.objectives.terms import LogWeightTerms

_LOG_2PI = math.log(2 * math.pi)
#: Soft bounds of the prior's log-variance and of the posterior's log-variance relative to it.
PRIOR_LOG_VAR_BOUND = 8.0
POSTERIOR_LOG_VAR_BOUND = 10.0


def soft_clamp(x: Tensor, bound: float) -> Tensor:
    """bound * tanh(x / bound): the identity near 0, smoothly bounded by +-bound."""
    return bound * torch.tanh(x / bound)


def repeat_for_samples(features: list[Tensor], k: int) -> list[Tensor]:
    """Each example's features once per sample: (B, ...) -> (k B, ...), sample-major, the row
    order of the noise (k, B, D) flattened."""
    if k == 1:
        return features
    return [f.expand(k, *f.shape).reshape(k * f.shape[0], *f.shape[1:]) for f in features]


class GroupDraw:
    """One group's draw for N = k B rows: the prior (mu_p, log_var_p; None for N(0, I)), the
    posterior relative to it (dmu, dlog_var) and the noise eps, each (N, size)."""

    __slots__ = ("dlog_var", "dmu", "eps", "log_var_p")

    def __init__(self, log_var_p: Tensor | None, dmu: Tensor, dlog_var: Tensor,
                 eps: Tensor) -> None:
        self.log_var_p, self.dmu, self.dlog_var, self.eps = log_var_p, dmu, dlog_var, eps

    @classmethod
    def of_prior(cls, z: Tensor, mu_p: Tensor | None, log_var_p: Tensor | None) -> GroupDraw:
        """A given z_l (N, size) as a draw whose posterior is the prior itself (dmu = dlogvar
        = 0, eps = (z_l - mu_p) / sigma_p), so that `log_p` is log p(z_l | z_>l) at it."""
        eps = z if mu_p is None or log_var_p is None else (z - mu_p) * torch.exp(-0.5 * log_var_p)
        zero = eps.new_zeros(())
        return cls(log_var_p, zero, zero, eps)

    def kl(self) -> Tensor:
        """KL(q(z_l | z_>l, x) || p(z_l | z_>l)), (N,)."""
        dmu2 = self.dmu * self.dmu
        if self.log_var_p is not None:
            dmu2 = dmu2 * torch.exp(-self.log_var_p)
        return 0.5 * (dmu2 + torch.exp(self.dlog_var) - 1 - self.dlog_var).sum(-1)

    def log_var_q(self) -> Tensor:
        """log sigma_q^2 = log sigma_p^2 + dlogvar, (N, size)."""
        return self.dlog_var if self.log_var_p is None else self.log_var_p + self.dlog_var

    def log_q(self) -> Tensor:
        """log q(z_l | z_>l, x) at z_l = mu_q + sigma_q eps, (N,)."""
        return -0.5 * (self.eps * self.eps + self.log_var_q() + _LOG_2PI).sum(-1)

    def log_p(self) -> Tensor:
        """log p(z_l | z_>l) at the same z_l, (N,): (z_l - mu_p) / sigma_p =
        dmu / sigma_p + (sigma_q / sigma_p) eps, and sigma_q / sigma_p = exp(dlogvar / 2)."""
        standardized = torch.exp(0.5 * self.dlog_var) * self.eps
        if self.log_var_p is None:
            standardized = standardized + self.dmu
            return -0.5 * (standardized * standardized + _LOG_2PI).sum(-1)
        standardized = standardized + self.dmu * torch.exp(-0.5 * self.log_var_p)
        return -0.5 * (standardized * standardized + self.log_var_p + _LOG_2PI).sum(-1)


class FittedTopDraw:
    """The top group's draw under a fitted prior p(z_L) (`vaekit fit-prior` on a hierarchy) in
    place of its N(0, I): log q as the draw's, log p(z_L) the fitted prior's at z_L, and the KL
    estimated by one sample, log q(z_L|x) - log p(z_L), (N,) each."""

    __slots__ = ("draw", "log_p_top")

    def __init__(self, draw: GroupDraw, log_p_top: Tensor) -> None:
        self.draw, self.log_p_top = draw, log_p_top

    def kl(self) -> Tensor:
        return self.draw.log_q() - self.log_p_top

    def log_var_q(self) -> Tensor:
        return self.draw.log_var_q()

    def log_q(self) -> Tensor:
        return self.draw.log_q()

    def log_p(self) -> Tensor:
        return self.log_p_top


class HierarchicalTerms(LogWeightTerms):
    """The log-weight terms of a top-down hierarchy: sums over the groups of log p(z_l | z_>l)
    and log q(z_l | z_>l, x), each (k, B), and the closed-form KL of each group."""

    def __init__(self, log_px_z: Tensor, draws: list[GroupDraw | FittedTopDraw],
                 zs: list[Tensor] | None = None) -> None:
        self.log_px_z = log_px_z
        self.draws = draws
        self._zs = zs
        self.units = len(draws)
        self._shape = log_px_z.shape  # (k, B)
        self._kls: list[Tensor] | None = None
        self._log_pz: Tensor | None = None
        self._log_qz: Tensor | None = None

    @property
    def z(self) -> Tensor:
        """The samples of every group concatenated, (k, B, latent_dim)."""
        if self._zs is None:
            raise ValueError("these terms were built without their samples")
        return torch.cat(self._zs, -1).view(*self._shape, -1)

    def _group_kls(self) -> list[Tensor]:
        if self._kls is None:
            self._kls = [d.kl().view(self._shape) for d in self.draws]  # each (k, B)
        return self._kls

    @property
    def log_pz(self) -> Tensor:
        if self._log_pz is None:
            self._log_pz = torch.stack([d.log_p() for d in self.draws]).sum(0).view(self._shape)
        return self._log_pz

    @property
    def log_qz(self) -> Tensor:
        if self._log_qz is None:
            self._log_qz = torch.stack([d.log_q() for d in self.draws]).sum(0).view(self._shape)
        return self._log_qz

    @property
    def kl(self) -> Tensor:
        return torch.stack(self._group_kls()).sum(0).mean(0)  # (B,)

    @property
    def kl_groups(self) -> list[Tensor]:
        return [kl.mean(0) for kl in self._group_kls()]

    def kl_units(self) -> Tensor | None:
        """Each group's closed-form KL, (B, groups); None where a fitted top prior made the
        top group's an estimate."""
        if any(isinstance(d, FittedTopDraw) for d in self.draws):
            return None
        return torch.stack(self.kl_groups, dim=-1)  # (B, groups)
