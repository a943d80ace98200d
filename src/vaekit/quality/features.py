"""The fixed feature networks that sample quality is measured in.

Inception weights cannot be downloaded here, and MNIST has no standard feature network: what the
literature does is train a small classifier on the data and take its penultimate layer. vaekit
does the same, with a fixed seed and a fixed recipe (`RECIPE`), so that every run on one dataset
is scored in the same feature space:

- data with labels: `FeatureNet` trained as a classifier on the training split; its features
  are the 128 units before the class logits. It is cached (safetensors, never pickle) under
  `cache_dir()`, keyed by a hash of the training data, the labels and the recipe, with a
  SHA-256 of its weights; a cache file that does not load or whose weights do not match the
  checksum is rebuilt.
- data without labels: the same network with seeded random weights, untrained, and reports say
  so. Numbers are comparable only within one feature network: `FeatureNetwork.name` names it,
  with its weights' checksum.

Images (C, H, W) go through two conv layers; any other shape through an MLP.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vaekit.errors import RunDirError
from vaekit.io import load_tensors, save_tensors

FEATURE_DIM = 128
#: How the classifier is trained: change it and every cached network is rebuilt (its key).
RECIPE: dict[str, Any] = {"version": 1, "seed": 0, "steps": 2000, "batch_size": 128,
                          "lr": 1e-3, "optimizer": "adam", "features": FEATURE_DIM}
RANDOM_SEED = 0


class FeatureNet(nn.Module):
    """Conv(32)-pool-Conv(64)-pool-pool to 4x4-Linear(128) for images (C, H, W); an MLP
    (256, 128) for anything else; then a linear layer to the class logits."""

    def __init__(self, event_shape: tuple[int, ...], classes: int) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        if len(self.event_shape) == 3:
            channels = self.event_shape[0]
            self.body: nn.Module = nn.Sequential(
                nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, FEATURE_DIM),
                nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(self.event_shape), 256),
                                      nn.ReLU(), nn.Linear(256, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, max(classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))  # (B, classes)


@dataclass
class FeatureNetwork:
    """A fixed feature network and what a report says about it."""

    net: FeatureNet
    kind: str  # "classifier" or "random"
    checksum: str  # SHA-256 of the weights
    test_accuracy: float | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.checksum[:12]}"

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "sha256": self.checksum,
                             "feature_dim": FEATURE_DIM}
        if self.kind == "classifier":
            d.update(recipe=RECIPE, test_accuracy=self.test_accuracy)
        else:
            d.update(seed=RANDOM_SEED, note="untrained, seeded random weights: the data have "
                                            "no labels")
        return d

    @torch.no_grad()
    def features(self, x: Tensor, batch: int = 1000) -> Tensor:
        """Features (N, 128) of examples x (N, *event_shape), in float32 on the CPU."""
        self.net.eval()
        return torch.cat([self.net.body(x[i:i + batch].float()) for i in range(0, len(x), batch)])


def cache_dir() -> Path:
    """$VAEKIT_CACHE, else $XDG_CACHE_HOME/vaekit, else ~/.cache/vaekit."""
    if os.environ.get("VAEKIT_CACHE"):
        return Path(os.environ["VAEKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vaekit"


def weights_checksum(net: nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def data_key(name: str, x: Tensor, labels: Tensor | None) -> str:
    """A hash of the data (values and shape), labels and recipe: the cache file's name."""
    h = hashlib.sha256(json.dumps({"name": name, "shape": list(x.shape), "recipe": RECIPE},
                                  sort_keys=True).encode())
    h.update(x.float().contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.long().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def seeded_net(event_shape: tuple[int, ...], classes: int, seed: int) -> FeatureNet:
    """A FeatureNet whose initial weights depend on `seed` only (the global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return FeatureNet(event_shape, classes)


def cache_path(name: str, train: Tensor, labels: Tensor, cache: Path | None = None) -> Path:
    """Where the classifier of this training set is cached."""
    return (cache or cache_dir()) / "feature-nets" / f"{data_key(name, train, labels)}.safetensors"


def random_features(event_shape: tuple[int, ...]) -> FeatureNetwork:
    """The seeded random network for data without labels."""
    net = seeded_net(event_shape, 1, RANDOM_SEED)
    return FeatureNetwork(net.eval(), "random", weights_checksum(net))


def classifier_features(name: str, train: Tensor, train_labels: Tensor, test: Tensor,
                        test_labels: Tensor, cache: Path | None = None,
                        progress: bool = True) -> FeatureNetwork:
    """The classifier for this training set: from the cache, else trained by `RECIPE` (and
    cached). `test` and its labels give the accuracy that reports print."""
    classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    path = cache_path(name, train, train_labels, cache)
    cached = _load_cached(path, FeatureNet(tuple(train.shape[1:]), classes))
    if cached is not None:
        return cached
    net = seeded_net(tuple(train.shape[1:]), classes, RECIPE["seed"])  # not a damaged cache's
    if progress:
        print(f"training the feature classifier for {name} ({RECIPE['steps']} steps, seed "
              f"{RECIPE['seed']}); cached in {path.parent}", file=sys.stderr)
    train_classifier(net, train, train_labels)
    accuracy = classification_accuracy(net, test, test_labels)
    checksum = weights_checksum(net)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, dict(net.state_dict()), {
        "sha256": checksum, "test_accuracy": accuracy, "recipe": RECIPE, "data": name})
    return FeatureNetwork(net.eval(), "classifier", checksum, accuracy)


def _load_cached(path: Path, net: FeatureNet) -> FeatureNetwork | None:
    """The cached network, or None (missing, unreadable or not matching its checksum: it is
    then rebuilt; safetensors holds only tensors, so a tampered file is never executed)."""
    if not path.exists():
        return None
    try:
        tensors, meta = load_tensors(path)
        net.load_state_dict(tensors)
        if meta is None or weights_checksum(net) != meta.get("sha256"):
            raise RunDirError("checksum mismatch")
        accuracy = float(meta["test_accuracy"])
    except (RunDirError, RuntimeError, KeyError, TypeError, ValueError) as e:
        print(f"note: the cached feature network {path} is corrupted ({e}); rebuilding it",
              file=sys.stderr)
        return None
    return FeatureNetwork(net.eval(), "classifier", meta["sha256"], accuracy)


def train_classifier(net: FeatureNet, x: Tensor, labels: Tensor) -> None:
    """RECIPE: Adam, fixed steps, minibatches drawn from a seeded generator (start from
    `seeded_net` for the recipe's initial weights)."""
    g = torch.Generator().manual_seed(RECIPE["seed"])
    optimizer = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"])
    net.train()
    for _ in range(RECIPE["steps"]):
        idx = torch.randint(len(x), (RECIPE["batch_size"],), generator=g)
        loss = nn.functional.cross_entropy(net(x[idx].float()), labels[idx].long())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    net.eval()


@torch.no_grad()
def classification_accuracy(net: FeatureNet, x: Tensor, labels: Tensor) -> float:
    net.eval()
    correct = sum(int((net(x[i:i + 1000].float()).argmax(1) == labels[i:i + 1000]).sum())
                  for i in range(0, len(x), 1000))
    return correct / max(len(x), 1)
