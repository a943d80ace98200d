"""A conditional VAE's condition taken from a table (`--condition COLUMN`): the column leaves
the modelled table and its values become class labels; samples get it back.

    group,size,count          the model: p(size, count | group), with group one of the
    red,5.2,3                 column's distinct values (sorted, numbers in numeric order)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.data.table_files import _listing, _pandas
from vaekit.errors import DataError


def split_condition_column(frame: Any, name: str, classes: tuple[str, ...],
                           where: str) -> tuple[Any, Tensor, tuple[str, ...]]:
    """(the table without column `name`, its values as class indices (N,), the class names:
    `classes` where given (a trained run's), else the column's distinct values, sorted)."""
    pd = _pandas()
    if name not in frame.columns:
        raise DataError(f"--condition {name}: {where} has no column {name!r} (its columns: "
                        f"{_listing(list(frame.columns))})")
    values = frame[name]
    missing = int(pd.isna(values).sum())
    if missing:
        raise DataError(f"--condition {name}: {missing} rows of {where} have no value in "
                        f"{name!r}; a conditional model needs a class for every row")
    text = values.map(_class_name)
    if not classes:
        classes = tuple(sorted(set(text), key=_class_order))
        if len(classes) > MAX_CONDITION_CLASSES:
            raise DataError(f"--condition {name}: {len(classes)} distinct values in {where}; "
                            f"a condition is a class (at most {MAX_CONDITION_CLASSES})")
    index = {c: i for i, c in enumerate(classes)}
    unseen = sorted(set(text) - set(index))
    if unseen:
        raise DataError(f"--condition {name}: {where} holds {_listing(unseen)}, not among the "
                        f"classes the model was trained on ({_listing(list(classes))})")
    labels = torch.tensor([index[t] for t in text], dtype=torch.int64)
    return frame.drop(columns=[name]), labels, classes


#: The most classes a condition column may have.
MAX_CONDITION_CLASSES = 1000


def _class_name(value: Any) -> str:
    """A condition value as its class name: 3.0 and 3 are "3"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def _class_order(name: str) -> tuple[int, float, str]:
    """Numbers in numeric order, before text."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def with_condition_column(frame: Any, name: str, classes: tuple[str, ...],
                          labels: Tensor) -> Any:
    """A conditional table run's rows with its condition column put back first: each row's
    class name (as numbers where every class is a whole number)."""
    pd = _pandas()
    values = [classes[int(i)] for i in labels.reshape(-1).tolist()]
    if all(_class_order(c)[0] == 0 and float(c).is_integer() for c in classes):
        column = pd.Series([int(float(v)) for v in values], dtype="int64")
    else:
        column = pd.Series(values, dtype=object)
    out = frame.copy()
    out.insert(0, name, column.to_numpy())
    return out
