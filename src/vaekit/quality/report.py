"""Sample quality on one scale: the Fréchet distance and k-NN precision/recall of n samples
against n held-out examples, in a fixed feature network, beside the reference floor, the same
metrics between n training examples and the same held-out ones (what a perfect model of the
data would score with n samples)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.data import Dataset
from vaekit.errors import DataError
from vaekit.quality.features import FeatureNetwork, classifier_features, random_features
from vaekit.quality.frechet import frechet_distance_of
from vaekit.quality.manifold import DEFAULT_K, precision_recall

#: The seed of the choice of training examples for the reference floor.
FLOOR_SEED = 0


def feature_network(data: Dataset, progress: bool = True) -> FeatureNetwork:
    """The dataset's classifier where it has labels, else the seeded random network."""
    train_labels, test_labels = data.split_labels("train"), data.split_labels("test")
    if train_labels is None or test_labels is None or len(data.test) == 0:
        return random_features(data.event_shape)
    return classifier_features(data.name, data.train, train_labels, data.test, test_labels,
                               progress=progress, images=data.images)


def check_samples(samples: Tensor | np.ndarray, data: Dataset, where: str) -> Tensor:
    """Samples as float32 (N, *event_shape): the data's shape (or its flattening), finite,
    and for images inside [0, 1] (uint8 arrays are read as levels / 255)."""
    if isinstance(samples, np.ndarray):
        if samples.dtype.kind not in "biuf":
            raise DataError(f"{where}: expected a numeric array, got dtype {samples.dtype}")
        scale = 255.0 if samples.dtype == np.uint8 and data.images else 1.0
        samples = torch.from_numpy(np.ascontiguousarray(samples)).float() / scale
    x = samples.detach().float().cpu()
    shape = data.event_shape
    if x.dim() == 2 and x.shape[1] == int(np.prod(shape)) and len(shape) > 1:
        x = x.reshape(len(x), *shape)
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise DataError(f"{where}: samples of shape {tuple(x.shape)}, but {data.name} has "
                        f"examples of shape {shape} (expected (N, {', '.join(map(str, shape))}))")
    if len(x) < DEFAULT_K + 2:
        raise DataError(f"{where}: {len(x)} samples; the metrics need at least {DEFAULT_K + 2}")
    if not torch.isfinite(x).all():
        raise DataError(f"{where}: the samples hold NaN or infinite values")
    if data.images and (x.min() < -1e-4 or x.max() > 1 + 1e-4):
        raise DataError(f"{where}: samples range over [{float(x.min()):.3g}, "
                        f"{float(x.max()):.3g}], but {data.name}'s pixels lie in [0, 1]")
    return x


def metrics(features_real: Tensor, features_other: Tensor) -> dict[str, float]:
    precision, recall = precision_recall(features_real, features_other)
    return {"fd": frechet_distance_of(features_other, features_real), "precision": precision,
            "recall": recall}


def sample_quality(samples: Tensor, data: Dataset, net: FeatureNetwork,
                   split: str = "test") -> dict[str, Any]:
    """FD, precision and recall of samples (N, *event_shape) against the first N examples of
    `split`, and the reference floor: N training examples (a seeded choice) against the same."""
    start = time.perf_counter()
    real = data.split(split)
    n = min(len(samples), len(real), len(data.train))
    if n < DEFAULT_K + 2:
        raise DataError(f"sample quality needs at least {DEFAULT_K + 2} examples in the {split} "
                        f"and training splits of {data.name}, which have {len(real)} and "
                        f"{len(data.train)}")
    g = torch.Generator().manual_seed(FLOOR_SEED)
    train = data.train[torch.randperm(len(data.train), generator=g)[:n]]
    f_real, f_samples, f_train = (net.features(t) for t in (real[:n], samples[:n], train))
    report: dict[str, Any] = {"n": n, "split": split, "data": data.name,
                              "feature_network": net.describe()}
    report.update(metrics(f_real, f_samples))
    report["floor"] = metrics(f_real, f_train)
    report["seconds"] = time.perf_counter() - start
    return report
