"""The Dataset: splits of one dataset as float tensors, with the labels of their examples where
the source has them, cut by a fixed permutation that does not depend on the run's seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vaekit.errors import DataError

SPLITS = ("train", "val", "test", "all")
#: Fixed seed of the train/val/test permutation: splits never depend on the run's --seed.
SPLIT_SEED = 20140101
#: Fraction held out as the test split for data that has no official test set.
TEST_FRACTION = 0.1


@dataclass
class Dataset:
    """Splits of one dataset as float32 tensors (N, *event_shape); `images` marks pixel data in
    [0, 1] (N, C, H, W) that binarization applies to; `bin_width` is the quantization step of
    data on a grid of levels (1/256 for 8-bit images); `labels` maps a split's name to the
    integer class of each of its examples (N,), where the source has classes."""

    name: str
    train: Tensor
    val: Tensor
    test: Tensor
    images: bool
    bin_width: float | None = None
    full: Tensor | None = None  # every example in the source's own order (split "all")
    labels: dict[str, Tensor] | None = None  # "train", "val", "test", "all" -> (N,) int64
    #: a table's fitted schema (vaekit.data.tables.TableSchema.to_dict()), or None
    table: dict[str, Any] | None = None
    #: the names of the classes, in label order, where the source names them (a folder's
    #: subfolders); () otherwise
    class_names: tuple[str, ...] = ()

    @property
    def event_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    def split(self, name: str) -> Tensor:
        if name == "all":  # in the order of the source (file rows), not the split permutation
            return self.full if self.full is not None else torch.cat(
                [self.train, self.val, self.test])
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose from: {', '.join(SPLITS)}")
        return getattr(self, name)

    def classes(self) -> tuple[str, ...]:
        """The names of the classes in label order: the source's, else "0", "1", ... up to the
        largest label. A clear error for data without labels (what --condition label needs)."""
        if self.labels is None:
            raise DataError(f"--condition label: {self.name} has no class labels (mnist, "
                            "fashion-mnist, digits, a folder of class subfolders and an .npz "
                            "with train_labels/test_labels have them)")
        if self.class_names:
            return self.class_names
        every = self.labels["all"]
        if len(every) and int(every.min()) < 0:
            raise DataError(f"--condition label: {self.name} has a negative label "
                            f"({int(every.min())}); classes are numbered 0, 1, ...")
        return tuple(str(i) for i in range(int(every.max()) + 1 if len(every) else 0))

    def split_labels(self, name: str) -> Tensor | None:
        """The labels of split `name`, in the order of `split(name)`; None without labels."""
        self.split(name)  # the same check of the name
        return None if self.labels is None else self.labels[name]


def _split(name: str, x: Tensor, test: Tensor | None, val_fraction: float, *, images: bool,
           bin_width: float | None = None, labels: Tensor | None = None,
           test_labels: Tensor | None = None) -> Dataset:
    """Fixed-seed split: the official test set if given, else 10% of x; then val from the rest.
    `labels` (of x) and `test_labels` (of test) follow their examples through the permutation;
    labels are kept only where every example has one."""
    full = x if test is None else torch.cat([x, test])
    all_labels = labels if test is None or labels is None or test_labels is None else \
        torch.cat([labels, test_labels])
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    if test is None:
        n_test = round(TEST_FRACTION * len(x)) if len(x) >= 10 else 0
        test_index, perm = perm[:n_test], perm[n_test:]
        test = x[test_index]
        test_labels = labels[test_index] if labels is not None else None
    n_val = round(val_fraction * len(perm))
    val_index, train_index = perm[:n_val], perm[n_val:]
    val, train = x[val_index], x[train_index]
    if len(train) == 0:
        raise DataError(f"{name}: no training examples left after holding out val/test "
                        f"(only {len(x)} examples)")
    split_labels = None
    if labels is not None and test_labels is not None and all_labels is not None:
        split_labels = {"train": labels[train_index], "val": labels[val_index],
                        "test": test_labels, "all": all_labels}
    return Dataset(name, train.contiguous(), val.contiguous(), test.contiguous(), images, bin_width,
                   full, split_labels)
