"""The Fréchet distance between two sets of features, each summarised by a Gaussian.

    FD = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})

is the squared 2-Wasserstein distance between N(mu_1, S_1) and N(mu_2, S_2) (Dowson & Landau
1982); computed on Inception features it is the FID of Heusel et al. (2017). vaekit computes it
on the features of its own fixed network (`vaekit.quality.features`), so a number is comparable
only with numbers from the same network.

The trace of the matrix square root uses the symmetric form: (S_1 S_2)^{1/2} is similar to
(S_1^{1/2} S_2 S_1^{1/2})^{1/2}, a symmetric positive semi-definite matrix, so

    Tr (S_1 S_2)^{1/2} = sum_i sqrt(lambda_i),  lambda_i the eigenvalues of S_1^{1/2} S_2 S_1^{1/2},

with S_1^{1/2} = V diag(sqrt(w)) V^T from the symmetric eigendecomposition (`scipy.linalg.eigh`).
That avoids the complex parts and the ill-conditioning of `scipy.linalg.sqrtm(S_1 S_2)` on a
non-symmetric product, and stays exact where a feature is constant (a dead ReLU unit makes the
covariance singular, where sqrtm warns and loses accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
from torch import Tensor


@dataclass(frozen=True)
class GaussianStatistics:
    """The mean (D,) and covariance (D, D) of a set of features, in float64."""

    mean: np.ndarray
    cov: np.ndarray
    n: int

    @classmethod
    def of(cls, features: Tensor | np.ndarray) -> GaussianStatistics:
        """The sample mean and unbiased covariance of features (N, D), N >= 2."""
        f = features.double().cpu().numpy() if isinstance(features, Tensor) else \
            np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or len(f) < 2:
            raise ValueError(f"expected features (N >= 2, D), got shape {f.shape}")
        return cls(f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1]), len(f))


def frechet_distance(a: GaussianStatistics, b: GaussianStatistics) -> float:
    """FD between N(a.mean, a.cov) and N(b.mean, b.cov) (see the module's docstring)."""
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape[0]} and {b.mean.shape[0]}")
    root_a = psd_sqrt(a.cov)
    middle = root_a @ b.cov @ root_a
    eigenvalues = scipy.linalg.eigh((middle + middle.T) / 2, eigvals_only=True)
    trace_root = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    mean_term = float(((a.mean - b.mean) ** 2).sum())
    value = mean_term + float(np.trace(a.cov) + np.trace(b.cov)) - 2 * trace_root
    return max(value, 0.0)  # rounding can leave -1e-12 for identical sets


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (negative rounding in its
    eigenvalues clipped to 0)."""
    w, v = scipy.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance_of(x: Tensor, y: Tensor) -> float:
    """FD between the Gaussians fitted to features x (N, D) and y (M, D)."""
    return frechet_distance(GaussianStatistics.of(x), GaussianStatistics.of(y))


__all__ = ["GaussianStatistics", "frechet_distance", "frechet_distance_of"]
