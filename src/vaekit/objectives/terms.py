"""What every latent-variable model gives the objectives: the log-weight terms of k samples.

For samples z_k ~ q(z|x) (k, B) of all of a model's latent groups z = (z_1, ..., z_G),

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),

with log p(z) = sum_g log p(z_g | z_>g) and log q(z|x) = sum_g log q(z_g | z_>g, x) summed over
the groups. The ELBO is mean_k log w_k, or, with the KL of each group in closed form given the
samples above it (Sønderby et al. 2016, eq. 12), E[log p(x|z)] - sum_g KL_g: the estimator with
less variance. The IWAE bound is logsumexp_k log w_k - log k (Burda et al. 2016).

A model returns a subclass of `LogWeightTerms` from `terms(x, k)`; `vaekit.objectives` reads
only what is defined here, so models import the objectives and never the other way round.
"""

from __future__ import annotations

from torch import Tensor


class LogWeightTerms:
    """The pieces of log w for k samples of B examples.

    Subclasses set `log_px_z` (k, B) and define `log_pz`, `log_qz`, `kl` and `kl_groups`;
    each is computed on first use where it can be (the ELBO with an analytic KL needs no log
    density, the IWAE bound no KL). Plain attributes cache them, not functools.cached_property,
    whose lock torch.compile cannot trace."""

    #: log p(x|z_k), (k, B), in the data's units
    log_px_z: Tensor
    #: an auxiliary loss the model adds to the objective (a scalar, e.g. a VQ commitment), or
    #: None
    aux_loss: Tensor | None = None
    #: the number of free-bits units (see `kl_units`)
    units: int = 1

    @property
    def log_pz(self) -> Tensor:
        """log p(z_k), (k, B), summed over the groups."""
        raise NotImplementedError

    @property
    def log_qz(self) -> Tensor:
        """log q(z_k|x), (k, B), summed over the groups."""
        raise NotImplementedError

    @property
    def kl(self) -> Tensor | None:
        """KL(q(z|x) || p(z)), (B,), in closed form where the model has one (given the samples
        of the groups above, averaged over the k samples), else None."""
        raise NotImplementedError

    @property
    def kl_groups(self) -> list[Tensor]:
        """The KL of each latent group, each (B,): closed form where there is one, else the
        Monte Carlo estimate mean_k[log q(z_g) - log p(z_g)]. They sum to `kl_estimate`."""
        raise NotImplementedError

    def kl_units(self) -> Tensor | None:
        """The KL of each free-bits unit, (B, units): each latent dimension of a one-layer model,
        each group of a hierarchical one (Kingma et al. 2016, eq. 15). None where the KL does not
        split into units in closed form; free bits then floor the total at units x lambda."""
        return None

    @property
    def kl_estimate(self) -> Tensor:
        """KL(q(z|x) || p(z)) per example, (B,): `kl` where it exists, else the Monte Carlo
        estimate mean_k[log q(z_k|x) - log p(z_k)]."""
        kl = self.kl
        return kl if kl is not None else (self.log_qz - self.log_pz).mean(0)

    @property
    def log_w(self) -> Tensor:
        return self.log_px_z + self.log_pz - self.log_qz  # (k, B)
