"""What the model contract accepts as input: tensors or NumPy arrays of numbers, converted to
the model's dtype and device, and whole numbers as class indices; anything else is a clear
one-line DataError, never a traceback from inside torch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.errors import DataError


def is_whole(value: Any) -> bool:
    """An int, a NumPy integer or a float with no fraction (not a bool)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, np.integer)) or (isinstance(value, float)
                                                     and value.is_integer())


def as_float_tensor(x: Tensor | np.ndarray, where: str, dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    """A tensor or array as `dtype` on `device`; a clear error for anything else."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "biuf":
            raise DataError(f"{where}: expected a numeric array, got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise DataError(f"{where}: expected a tensor or a NumPy array, got {type(x).__name__}")
    if x.is_complex():
        raise DataError(f"{where}: expected real values, got {x.dtype}")
    return x.to(device=device, dtype=dtype)
