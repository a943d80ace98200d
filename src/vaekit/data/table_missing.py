"""Missing cells of a table: synthetic rows that miss cells as the data do, or complete ones.

A column with missing cells in the training rows has its observed-flag m_c (1 observed, 0
missing; the encoded row's last `len(columns)` numbers, `vaekit.data.tables`) modelled as a
Bernoulli decoded from z (`vaekit.distributions.table`). A draw x ~ p(x|z) then has each
flag drawn too, and `TableSchema.inverse` blanks the cells whose flag is 0: synthetic rows
miss cells at the data's rate, and where the data miss them (a cell missing when another
column is large is learned through z). Missing completely at random or not, the model learns
what it sees: p(m|z) is fitted to the training rows' flags.

`--missing impute` (`vaekit sample`) keeps every cell instead: `fill_missing` sets every flag
to 1, so a row's missing cells get the values drawn for them from p(x_c|z), the value the
model would have given an observed cell of that row.

    >>> x = model.sample(100, mean=False)                   # encoded rows, flags drawn
    >>> schema.inverse(x)                                   # NaN where a flag is 0
    >>> schema.inverse(fill_missing(x, len(schema.columns)))  # every cell
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def fill_missing(x: Tensor, n_columns: int) -> Tensor:
    """Encoded rows (N, width) with every observed-flag set to 1 (a copy): complete rows,
    each missing cell holding the value drawn for it."""
    out = x.clone()
    out[..., -n_columns:] = 1.0
    return out


def missing_rates(frame: Any, names: list[str]) -> dict[str, float]:
    """The fraction of missing cells of each named column of a DataFrame (0 for no rows)."""
    n = len(frame)
    return {name: float(frame[name].isna().sum()) / n if n else 0.0 for name in names}


def missing_rate_table(schema: Any, real: Any, synthetic: Any,
                       train: Any = None) -> dict[str, dict[str, Any]]:
    """Per column of the schema: its missing rate in the `real` rows, the `synthetic` rows and
    (given) the `train` rows, and whether the model draws its flag (`modelled`)."""
    names = [c.name for c in schema.columns]
    parts = {"real": missing_rates(real, names), "synthetic": missing_rates(synthetic, names)}
    if train is not None:
        parts["train"] = missing_rates(train, names)
    return {c.name: {**{key: rates[c.name] for key, rates in parts.items()},
                     "modelled": bool(c.missing_flag)} for c in schema.columns}

