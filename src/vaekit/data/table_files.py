"""Reading a table file (CSV, or Parquet with pyarrow) and inferring each column's type; the
schema that the model is fitted with is `vaekit.data.tables`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from vaekit.errors import ConfigError, DataError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
COLUMN_TYPES = ("continuous", "integer", "multimodal", "binary", "categorical", "drop")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ConfigError("tables need pandas: pip install 'vaekit[tables]'") from None
    return pandas


def _listing(values: list[Any]) -> str:
    shown = ", ".join(map(repr, values[:8]))
    return shown + (f", ... ({len(values)} in all)" if len(values) > 8 else "")


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def is_table_file(name: str) -> bool:
    return Path(name).suffix.lower() in TABLE_SUFFIXES


def read_table(path: Path) -> Any:
    """The file as a DataFrame: CSV, or Parquet where pyarrow is installed."""
    pd = _pandas()
    if not path.is_file():
        raise DataError(f"{path} does not exist" if not path.exists() else
                        f"{path} is not a file")
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path)
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ConfigError(f"{path}: reading Parquet needs pyarrow: pip install "
                                  "pyarrow") from None
            frame = pd.read_parquet(path)
    except (ConfigError, DataError):
        raise
    except Exception as e:  # pandas' parser errors have no common base
        raise DataError(f"{path} could not be read as a table: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{path} holds no rows" if frame.shape[1] else f"{path} holds no columns")
    return frame


def parse_column_types(text: str) -> dict[str, str]:
    """`--columns name:type,...` as {name: type}."""
    types: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, kind = item.rpartition(":")
        if not sep or not name or kind not in COLUMN_TYPES:
            raise ConfigError(f"--columns: {item!r} must be NAME:TYPE with TYPE one of "
                              f"{', '.join(COLUMN_TYPES)}")
        types[name] = kind
    return types


def infer_kind(values: Any, name: str) -> str:
    """The type of one column (see the module's docstring)."""
    pd = _pandas()
    present = values.dropna()
    if len(present) == 0:
        raise DataError(f"column {name!r} has no values at all: drop it with --columns "
                        f"{name}:drop")
    if pd.api.types.is_bool_dtype(values.dtype) or present.nunique() == 2:
        return "binary"
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = present.to_numpy(dtype=np.float64)
        return "integer" if np.all(numbers == np.round(numbers)) else "continuous"
    if pd.api.types.is_datetime64_any_dtype(values.dtype) or _looks_like_dates(present, pd):
        raise DataError(f"column {name!r} holds dates, which are not modelled: drop it with "
                        f"--columns {name}:drop, or convert it to a number first")
    return "categorical"


def _looks_like_dates(present: Any, pd: Any) -> bool:
    sample = present.astype(str).head(200)
    if not sample.str.contains(r"\d{1,4}[-/.:]\d{1,2}", regex=True).all():
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="mixed")
    return bool(parsed.notna().mean() > 0.9)
