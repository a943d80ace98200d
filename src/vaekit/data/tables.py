"""Tables (`--data file.csv`, `.parquet` with pyarrow): columns of mixed types as one tensor.

Each column gets a type, inferred or given (`--columns name:type,...`):

    continuous   numbers: standardised (x - mean) / sd, a Gaussian in the model
    multimodal   numbers with several modes (never inferred: ask for it): mode-specific
                 normalisation (Xu et al. 2019, TVAE): a Bayesian Gaussian mixture fitted to
                 the column; a value is its mode m (the most responsible component, one-hot)
                 and alpha = (x - mean_m) / (4 sd_m); a categorical on m and a Gaussian on alpha
    integer      whole numbers: as continuous, rounded when sampled
    binary       two values (0/1, yes/no, True/False): a Bernoulli
    categorical  text or codes with more than two values: a one-hot block, a categorical
    drop         left out

Dates are not modelled: a column of dates is refused with an error that names it and says how
to drop it. The encoded row is the columns' blocks in order, then one observed-flag per column
(1 observed, 0 missing): a missing cell is 0 in its block and 0 in its flag, so the encoder
sees what is missing and the likelihood (`vaekit.distributions.table`) leaves it out. No row
is dropped; the count of missing cells is printed.

A column with missing cells in the training rows also has its flag modelled, a Bernoulli
decoded from z (`vaekit.data.table_missing`), so that samples have missing cells too.

The fitted transform (`TableSchema`: the columns, their types, means and sds, ranges, category
lists) is plain JSON, saved in the run's config.json; `inverse` turns encoded rows (samples,
reconstructions) back into a DataFrame with the training columns, in order, with their types.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaekit.data.splits import Dataset, _split
from vaekit.data.table_condition import split_condition_column
from vaekit.data.table_files import (
    COLUMN_TYPES,
    TABLE_SUFFIXES,
    _listing,
    _note,
    _pandas,
    infer_kind,
    is_table_file,
    parse_column_types,
    read_table,
)
from vaekit.errors import ConfigError, DataError

#: the types whose values are numbers
NUMERIC_TYPES = ("continuous", "integer", "multimodal")
#: components of a multimodal column's mixture before pruning, and the weight kept
MAX_MODES, MIN_MODE_WEIGHT = 10, 0.005
#: a text column with more distinct values than this is refused (an identifier, free text)
MAX_CATEGORIES = 500


@dataclass
class Column:
    """One column's type and fitted transform."""

    name: str
    kind: str
    mean: float = 0.0
    sd: float = 1.0
    low: float = 0.0  # the training range (continuous, integer)
    high: float = 0.0
    categories: list[Any] = field(default_factory=list)  # binary: [value for 0, value for 1]
    modes: list[list[float]] = field(default_factory=list)  # multimodal: [weight, mean, sd]
    dtype: str = ""  # the pandas dtype to write back
    missing_rate: float = 0.0  # of the training rows; above 0 its flag is modelled

    @property
    def width(self) -> int:
        """Numbers in the encoded row."""
        if self.kind == "multimodal":
            return 1 + len(self.modes)  # alpha, then the mode one-hot
        return len(self.categories) if self.kind == "categorical" else 1

    @property
    def params(self) -> int:
        """Decoder outputs of its likelihood."""
        if self.kind == "multimodal":
            return 2 + len(self.modes)  # alpha's mean and log sd, the modes' logits
        return {"continuous": 2, "integer": 2, "binary": 1}.get(self.kind, self.width)

    @property
    def missing_flag(self) -> bool:
        """Whether p(observed|z) is modelled (`vaekit.data.table_missing`)."""
        return self.missing_rate > 0

    def mode_of(self, numbers: np.ndarray) -> np.ndarray:
        """The most responsible mode of each value (multimodal)."""
        w, mu, sd = (np.array(v) for v in zip(*self.modes, strict=True))
        log_r = np.log(w) - np.log(sd) - 0.5 * ((numbers[:, None] - mu) / sd) ** 2
        return log_r.argmax(1)


@dataclass
class TableSchema:
    """The columns of a table, in order, with their fitted transforms (see the module)."""

    columns: list[Column]
    dropped: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        """The encoded row: every column's block, then one observed-flag per column."""
        return sum(c.width for c in self.columns) + len(self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns], "dropped": list(self.dropped)}

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> TableSchema:
        try:
            return TableSchema([Column(**c) for c in raw["columns"]],
                               list(raw.get("dropped", [])))
        except (KeyError, TypeError) as e:
            raise DataError(f"the run's table schema is damaged ({e})") from None

    # ------------------------------------------------------------------ rows <-> tensor

    def transform(self, frame: Any, where: str) -> Tensor:
        """Encoded rows (N, width) of a DataFrame with (at least) the schema's columns."""
        pd = _pandas()
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise DataError(f"{where} lacks the column{'s' * (len(missing) > 1)} "
                            f"{', '.join(map(repr, missing))} that the model was trained on")
        extra = [c for c in frame.columns if c not in {col.name for col in self.columns}
                 and c not in self.dropped]
        if extra:
            _note(f"{where}: column{'s' * (len(extra) > 1)} {', '.join(map(repr, extra))} "
                  "not in the model's table, ignored")
        n = len(frame)
        blocks, flags = [], []
        for c in self.columns:
            values = frame[c.name]
            observed = ~pd.isna(values).to_numpy()
            block = np.zeros((n, c.width), dtype=np.float32)
            if c.kind in NUMERIC_TYPES:
                numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
                bad = observed & ~np.isfinite(numbers)
                if bad.any():
                    raise DataError(f"{where}: column {c.name!r} holds a value that is not a "
                                    f"finite number: {values[bad].iloc[0]!r}")
                if c.kind == "multimodal":
                    seen = numbers[observed]
                    m = c.mode_of(seen)
                    _, mu, sd = (np.array(v) for v in zip(*c.modes, strict=True))
                    block[observed, 0] = (seen - mu[m]) / (4 * sd[m])
                    block[np.flatnonzero(observed), 1 + m] = 1.0
                else:
                    block[observed, 0] = (numbers[observed] - c.mean) / c.sd
            else:
                index = {_key(v): i for i, v in enumerate(c.categories)}
                codes = np.array([index.get(_key(v), -1) if o else 0
                                  for v, o in zip(values.tolist(), observed, strict=True)])
                unseen = observed & (codes < 0)
                if unseen.any():
                    raise DataError(f"{where}: column {c.name!r} holds "
                                    f"{values[unseen].iloc[0]!r}, a value not seen in training "
                                    f"(known: {_listing(c.categories)})")
                if c.kind == "binary":
                    block[observed, 0] = codes[observed]
                else:
                    block[np.flatnonzero(observed), codes[observed]] = 1.0
            blocks.append(block)
            flags.append(observed.astype(np.float32))
        return torch.from_numpy(np.concatenate([*blocks, np.stack(flags, 1)], axis=1))

    def inverse(self, x: Tensor, bounds: bool = False) -> Any:
        """A DataFrame of encoded rows (N, width): means of continuous blocks (or draws),
        integers rounded, the most likely category of a block of probabilities; a cell whose
        observed-flag is below 1/2 is missing. `bounds`: clip numbers to the training range."""
        pd = _pandas()
        rows = x.detach().double().cpu().numpy()
        flags = rows[:, -len(self.columns):] >= 0.5
        data: dict[str, Any] = {}
        at = 0
        for i, c in enumerate(self.columns):
            block = rows[:, at:at + c.width]
            at += c.width
            if c.kind in NUMERIC_TYPES:
                if c.kind == "multimodal":
                    _, mu, sd = (np.array(v) for v in zip(*c.modes, strict=True))
                    m = block[:, 1:].argmax(1)
                    numbers = block[:, 0] * 4 * sd[m] + mu[m]
                else:
                    numbers = block[:, 0] * c.sd + c.mean
                if bounds:
                    numbers = np.clip(numbers, c.low, c.high)
                if c.kind == "integer":
                    numbers = np.round(numbers)
                column = pd.Series(numbers)
            else:
                codes = (block[:, 0] >= 0.5).astype(int) if c.kind == "binary" else \
                    block.argmax(1)
                column = pd.Series([c.categories[k] for k in codes], dtype=object)
            column[~flags[:, i]] = None
            data[c.name] = _restore_dtype(column, c, pd)
        return pd.DataFrame(data)


def fit_modes(numbers: np.ndarray) -> list[list[float]]:
    """[weight, mean, sd] of the modes of a column: a Bayesian Gaussian mixture of up to
    MAX_MODES components with a Dirichlet-process prior (as TVAE fits one), the components of
    weight above MIN_MODE_WEIGHT kept and renormalised."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import BayesianGaussianMixture

    x = numbers.reshape(-1, 1)
    k = max(1, min(MAX_MODES, len(np.unique(x))))
    with warnings.catch_warnings():  # an unconverged fit still gives usable modes
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm = BayesianGaussianMixture(n_components=k, weight_concentration_prior_type=
                                      "dirichlet_process", weight_concentration_prior=0.001,
                                      max_iter=200, random_state=0).fit(x)
    keep = gmm.weights_ > MIN_MODE_WEIGHT
    weights = gmm.weights_[keep] / gmm.weights_[keep].sum()
    sds = np.sqrt(gmm.covariances_.reshape(-1)[keep]).clip(min=1e-6 * (x.std() or 1.0))
    return [[float(w), float(m), float(s)]
            for w, m, s in zip(weights, gmm.means_.reshape(-1)[keep], sds, strict=True)]


def _restore_dtype(column: Any, c: Column, pd: Any) -> Any:
    if c.kind == "integer" or (c.kind in ("binary", "categorical") and c.dtype.startswith("int")):
        return column.astype("Int64")
    if c.kind in ("continuous", "multimodal"):
        return column.astype("float64")
    if c.dtype == "bool":
        return column.astype("boolean")
    return column


def _key(value: Any) -> Any:
    """A category's identity across CSV reads: numbers by value (1 == 1.0), the rest as text."""
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return ("num", float(value))
    return ("text", str(value))


def fit_schema(frame: Any, overrides: dict[str, str], where: str,
               every_row: Any = None) -> TableSchema:
    """Infer (or take from `overrides`) each column's type and fit its transform: the means,
    sds, ranges and modes on `frame` (the training rows); the types and the category lists on
    `every_row` (the whole table, default `frame`), so that a category seen only in held-out
    rows is still a category of the model (nothing about x's distribution leaks: only that
    the value exists)."""
    pd = _pandas()
    whole = frame if every_row is None else every_row
    unknown = [name for name in overrides if name not in frame.columns]
    if unknown:
        raise ConfigError(f"--columns names {', '.join(map(repr, unknown))}, not a column of "
                          f"{where} (its columns: {_listing(list(frame.columns))})")
    columns, dropped = [], []
    for name in frame.columns:
        values = whole[name]
        kind = overrides.get(name) or infer_kind(values, str(name))
        if kind == "drop":
            dropped.append(str(name))
            continue
        present = values.dropna()
        if kind == "binary" and present.nunique() < 2:  # one value: a category of its own
            kind = "categorical"
        c = Column(str(name), kind, dtype=str(values.dtype),
                   missing_rate=float(frame[name].isna().mean()))
        if kind in NUMERIC_TYPES:
            numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64)
            if len(numbers) == 0 or not np.isfinite(numbers).all():
                raise DataError(f"{where}: column {name!r} is {kind} but holds values that are "
                                "not numbers; give it another type with --columns")
            numbers = pd.to_numeric(frame[name].dropna(), errors="coerce").to_numpy(
                dtype=np.float64)  # the statistics: training rows only
            if len(numbers) == 0:
                raise DataError(f"{where}: column {name!r} has no value in the training rows; "
                                f"drop it with --columns {name}:drop")
            c.mean, c.sd = float(numbers.mean()), float(numbers.std()) or 1.0
            c.low, c.high = float(numbers.min()), float(numbers.max())
            if kind == "multimodal":
                c.modes = fit_modes(numbers)
        else:
            categories = sorted(set(present.tolist()), key=lambda v: (str(type(v)), v))
            if kind == "binary" and len(categories) > 2:
                raise DataError(f"{where}: column {name!r} has {len(categories)} values, so it "
                                "cannot be binary; make it categorical")
            if len(categories) > MAX_CATEGORIES or (
                    kind == "categorical" and len(present) > 50
                    and len(categories) == len(present)):
                raise DataError(f"{where}: column {name!r} has {len(categories)} distinct "
                                f"values in {len(present)} rows: an identifier or free text? "
                                f"Drop it with --columns {name}:drop")
            c.categories = [v.item() if isinstance(v, np.generic) else v for v in categories]
        columns.append(c)
    if not columns:
        raise DataError(f"{where}: every column is dropped")
    return TableSchema(columns, dropped)


def load_table_dataset(path: Path, val_fraction: float, schema: dict[str, Any] | None = None,
                       columns: str = "", condition: str = "",
                       classes: tuple[str, ...] = ()) -> Dataset:
    """A Dataset of the table's encoded rows (not images), split by the fixed permutation; the
    schema is fitted on the training rows, or given (a trained run's, for new data). A
    `condition` column (a conditional VAE's) is taken out of the table: its values are the
    rows' class labels, its distinct values (or the run's `classes`) the class names."""
    frame = read_table(path)
    where = str(path)
    labels = None
    if condition and condition != "label":

        frame, labels, classes = split_condition_column(frame, condition, classes, where)
    index = torch.arange(len(frame), dtype=torch.float64)[:, None]  # exact to 2^53 rows
    parts = _split(path.name, index, None, val_fraction, images=False)
    rows = {name: parts.split(name)[:, 0].long().numpy() for name in ("train", "val", "test")}
    if schema is None:
        fitted = fit_schema(frame.iloc[rows["train"]], parse_column_types(columns), where,
                            every_row=frame)
    else:
        fitted = TableSchema.from_dict(schema)
    x = fitted.transform(frame, where)
    observed = x[:, -len(fitted.columns):]
    missing = int((observed == 0).sum())
    if missing:
        holes = int((observed == 0).any(0).sum())
        _note(f"{where}: {missing} missing values in {holes} column"
              f"{'s' * (holes > 1)}, left out of the values' likelihood (no row is dropped)"
              + ("; where they fall is modelled" * any(c.missing_flag for c in fitted.columns)))
    data = Dataset(path.name, x[rows["train"]], x[rows["val"]], x[rows["test"]], images=False,
                   full=x, table=fitted.to_dict())
    if labels is not None:
        data.labels = {name: labels[rows[name]] for name in ("train", "val", "test")}
        data.labels["all"] = labels
        data.class_names = classes
    return data


__all__ = ["COLUMN_TYPES", "NUMERIC_TYPES", "TABLE_SUFFIXES", "Column", "TableSchema", "fit_modes",
           "fit_schema", "infer_kind", "is_table_file", "load_table_dataset",
           "parse_column_types", "read_table"]
