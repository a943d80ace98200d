"""How close a synthetic table is to a real one: the few metrics SDMetrics reports, written out.

- **Column shapes.** Per column, a similarity in [0, 1] (1 = the same distribution):
  - numbers (continuous, integer): the Kolmogorov–Smirnov complement, 1 − sup_t |F_real(t) −
    F_synth(t)|;
  - categories (binary, categorical): the total-variation complement,
    1 − ½ Σ_k |p_real(k) − p_synth(k)|.
- **Column pairs.** For each pair of numeric columns, 1 − |ρ_real − ρ_synth| / 2 with ρ the
  Pearson correlation (over the rows where both are present), averaged over the pairs.
- **Train on synthetic, test on real (TSTR).** A logistic regression trained to predict a
  target column from the others on the synthetic rows, scored on held-out real rows, beside
  the same classifier trained on real training rows (TRTR) and the majority class.

- **Missing cells.** Per column, the fraction of missing cells in the real rows (test and
  train) and in the synthetic ones (`vaekit.data.table_missing`): a model that learned the
  missingness gives the real rate; one that does not (a run from before, `--missing impute`)
  gives 0.

Missing cells are left out of every other metric.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from vaekit.data.table_missing import missing_rate_table
from vaekit.data.tables import NUMERIC_TYPES


def ks_complement(real: np.ndarray, synthetic: np.ndarray) -> float:
    """1 − the two-sample Kolmogorov–Smirnov statistic (NaNs dropped)."""
    from scipy.stats import ks_2samp

    real, synthetic = real[~np.isnan(real)], synthetic[~np.isnan(synthetic)]
    if len(real) == 0 or len(synthetic) == 0:
        return float("nan")
    return float(1.0 - ks_2samp(real, synthetic).statistic)


def tv_complement(real: list[Any], synthetic: list[Any]) -> float:
    """1 − the total-variation distance of the two category frequencies (None dropped)."""
    real = [v for v in real if not _missing(v)]
    synthetic = [v for v in synthetic if not _missing(v)]
    if not real or not synthetic:
        return float("nan")
    keys = set(map(str, real)) | set(map(str, synthetic))
    p = {k: 0.0 for k in keys}
    q = dict(p)
    for v in real:
        p[str(v)] += 1 / len(real)
    for v in synthetic:
        q[str(v)] += 1 / len(synthetic)
    return float(1.0 - 0.5 * sum(abs(p[k] - q[k]) for k in keys))


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def correlation_similarity(real: Any, synthetic: Any, columns: list[str]) -> float | None:
    """Mean over pairs of numeric columns of 1 − |ρ_real − ρ_synth| / 2; None for < 2."""
    scores = []
    for a, b in combinations(columns, 2):
        rho = [_pearson(frame[a], frame[b]) for frame in (real, synthetic)]
        if all(np.isfinite(rho)):
            scores.append(1.0 - abs(rho[0] - rho[1]) / 2)
    return float(np.mean(scores)) if scores else None


def _pearson(a: Any, b: Any) -> float:
    x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
    both = ~(np.isnan(x) | np.isnan(y))
    x, y = x[both], y[both]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def tstr(schema: Any, train: Any, synthetic: Any, test: Any, target: str,
         seed: int = 0) -> dict[str, Any]:
    """Accuracy on real `test` rows of a classifier of `target` trained on `synthetic` rows,
    on real `train` rows, and of the majority class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from vaekit.data.tables import TableSchema

    names = [c.name for c in schema.columns]
    column = next((c for c in schema.columns if c.name == target), None)
    if column is None or column.kind not in ("binary", "categorical"):
        raise ValueError(f"--target {target!r} must be a binary or categorical column of the "
                         f"table (its columns: {', '.join(names)})")
    features = TableSchema([c for c in schema.columns if c.name != target], [target])

    def xy(frame: Any) -> tuple[np.ndarray, np.ndarray]:
        rows = frame[frame[target].notna()]
        return (features.transform(rows, "tstr").numpy(),
                np.array([str(v) for v in rows[target]]))

    (x_train, y_train), (x_synth, y_synth), (x_test, y_test) = map(xy, (train, synthetic, test))
    out: dict[str, Any] = {"target": target, "test_rows": len(y_test)}
    for name, (x, y) in (("synthetic", (x_synth, y_synth)), ("real", (x_train, y_train))):
        if len(set(y)) < 2:
            out[f"accuracy_{name}"] = float(np.mean(y_test == y[0])) if len(y) else None
            continue
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000,
                                                                         random_state=seed))
        classifier.fit(x, y)
        out[f"accuracy_{name}"] = float(classifier.score(x_test, y_test))
    values, counts = np.unique(y_train, return_counts=True)
    out["accuracy_majority"] = float(np.mean(y_test == values[counts.argmax()]))
    return out


def table_quality(schema: Any, train: Any, test: Any, synthetic: Any,
                  target: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Every metric of the module for one synthetic table against the real `test` rows."""
    shapes: dict[str, dict[str, Any]] = {}
    for c in schema.columns:
        if c.kind in NUMERIC_TYPES:
            score = ks_complement(test[c.name].to_numpy(dtype=float),
                                  synthetic[c.name].to_numpy(dtype=float))
            shapes[c.name] = {"metric": "KS complement", "score": score}
        else:
            shapes[c.name] = {"metric": "TV complement", "score": tv_complement(
                test[c.name].tolist(), synthetic[c.name].tolist())}
    numeric = [c.name for c in schema.columns if c.kind in NUMERIC_TYPES]
    finite = [s["score"] for s in shapes.values() if np.isfinite(s["score"])]
    report: dict[str, Any] = {
        "column_shapes": shapes,
        "column_shapes_mean": float(np.mean(finite)) if finite else None,
        "correlation_similarity": correlation_similarity(test, synthetic, numeric),
        "missing_rates": missing_rate_table(schema, test, synthetic, train),
        "rows": {"synthetic": len(synthetic), "real_test": len(test), "real_train": len(train)}}
    if target is not None:
        report["tstr"] = tstr(schema, train, synthetic, test, target, seed)
    return report
