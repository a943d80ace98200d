"""Precision and recall of generated samples by k-nearest-neighbour manifolds (Kynkäänniemi et
al. 2019, "Improved precision and recall metric for assessing generative models").

The manifold of a set of features is the union of balls around each of its points, each ball's
radius the distance to that point's k-th nearest neighbour in the same set (k = 3 in the paper).

    precision = the fraction of generated points inside the manifold of the real ones
                (how many samples look real),
    recall    = the fraction of real points inside the manifold of the generated ones
                (how much of the data the model covers).

Both are 1 for identical sets; dropping modes from the samples lowers recall, and samples off
the data (noise, blur) lower precision.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: The paper's neighbourhood size.
DEFAULT_K = 3


def knn_radii(features: Tensor, k: int = DEFAULT_K, chunk: int = 2048) -> Tensor:
    """The distance from each point (N, D) to its k-th nearest other point, (N,)."""
    if len(features) <= k:
        raise ValueError(f"k-nearest-neighbour radii need more than k={k} points, got "
                         f"{len(features)}")
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start:start + chunk], features)  # (chunk, N)
        # the k+1 smallest include the point itself at distance 0
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def coverage_fraction(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 2048) -> float:
    """The fraction of points (M, D) inside at least one ball (centres (N, D), radii (N,))."""
    inside = 0
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start:start + chunk], centres)  # (chunk, N)
        inside += int((d <= radii).any(dim=1).sum())
    return inside / len(points)


def precision_recall(real: Tensor, generated: Tensor, k: int = DEFAULT_K) -> tuple[float, float]:
    """(precision, recall) of generated features (M, D) against real features (N, D)."""
    real, generated = real.double(), generated.double()
    precision = coverage_fraction(generated, real, knn_radii(real, k))
    recall = coverage_fraction(real, generated, knn_radii(generated, k))
    return precision, recall
