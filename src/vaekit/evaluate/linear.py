"""Linear Gaussian models, where log p(x) has a closed form: the bridge between the VAE and EM.

A linear decoder x = W z + b + noise, noise ~ N(0, Psi), z ~ N(0, I) has the marginal
p(x) = N(b, W W^T + Psi). With Psi = sigma^2 I it is probabilistic PCA, whose maximum
likelihood solution is known in closed form (Tipping & Bishop 1999); with a diagonal Psi it is
factor analysis. A linear-Gaussian VAE whose ELBO reaches these optima shows that training
finds the same answer EM does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal

from vaekit.distributions import GaussianLikelihood
from vaekit.models import VAE


def linear_gaussian_marginal(model: VAE) -> MultivariateNormal:
    """The exact p(x) of a VAE with a linear decoder and a Gaussian likelihood (in the data's
    units, where the model standardises them)."""
    linears = [m for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or not isinstance(model.likelihood, GaussianLikelihood) or \
            len(model.event_shape) != 1:
        raise ValueError("the exact marginal needs --net linear, --likelihood gaussian and "
                         "vector data")
    w, b = linears[0].weight.double(), linears[0].bias.double()  # (D, L), (D,)
    psi = torch.exp(model.likelihood.log_var.double()).expand(b.shape)
    cov = w @ w.T + torch.diag(psi)  # of y, the data as the model sees them
    if model.standardize is None:
        return MultivariateNormal(b, covariance_matrix=cov)
    # x = m + s * y: mean m + s b, covariance S cov S with S = diag(s)
    shift, scale = model.standardize.shift.double(), model.standardize.scale.double()
    return MultivariateNormal(shift + scale * b,
                              covariance_matrix=scale[:, None] * cov * scale[None, :])


@torch.no_grad()
def exact_log_likelihood(model: VAE, x: Tensor) -> Tensor:
    """log p(x) per example (nats) for a linear Gaussian VAE."""
    device = next(model.parameters()).device
    return linear_gaussian_marginal(model).log_prob(x.to(device).double()).cpu()


def ppca_log_likelihood(x: Tensor, latent_dim: int) -> float:
    """Mean log-likelihood per example of the maximum-likelihood pPCA model of x with
    `latent_dim` components (Tipping & Bishop 1999, eqs. 7, 15, 16), in nats.

    The eigenvalues of the sample covariance S give sigma^2 = the mean of the D - q smallest and
    C = W W^T + sigma^2 I; at the optimum tr(C^-1 S) = D, so
    L = -1/2 [D log 2 pi + sum_{j<=q} log lambda_j + (D - q) log sigma^2 + D].
    """
    x = x.double()
    n, d = x.shape
    if not 0 < latent_dim < d:
        raise ValueError(f"latent_dim must be in 1..{d - 1}, got {latent_dim}")
    centred = x - x.mean(0)
    eig = torch.linalg.eigvalsh(centred.T @ centred / n).flip(0)  # descending
    sigma2 = eig[latent_dim:].mean()
    log_det = eig[:latent_dim].log().sum() + (d - latent_dim) * sigma2.log()
    return float(-0.5 * (d * math.log(2 * math.pi) + log_det + d))
