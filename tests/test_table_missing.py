"""Missing cells of a table, modelled: synthetic rows miss cells at the data's rate and where
the data miss them (cells of b missing exactly when a is large), `--missing impute` gives
complete rows, evaluation reports the values' log-likelihood as the main number (equal to that
of the same model without the flags) and the missingness's apart, quality compares the missing
rates, and a run written before the flags were modelled still loads, samples and evaluates."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from vaekit.cli import main

pd = pytest.importorskip("pandas")
from vaekit.data.table_missing import fill_missing, missing_rate_table  # noqa: E402
from vaekit.data.tables import TableSchema, fit_schema  # noqa: E402

#: b is missing exactly where a > A_LARGE: about 31% of the rows
A_LARGE = 0.5


def tied_frame(n: int = 1000, seed: int = 0) -> pd.DataFrame:
    """a ~ N(0, 1), b = a + noise missing exactly when a > A_LARGE, a category c."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, n)
    frame = pd.DataFrame({"a": a, "b": a + rng.normal(0, 0.5, n),
                          "c": rng.choice(["x", "y", "z"], n)})
    frame.loc[a > A_LARGE, "b"] = np.nan
    return frame


def _train(path: Path, run: Path, epochs: int) -> None:
    assert main(["train", "--data", str(path), "--latent-dim", "2", "--hidden", "32",
                 "--epochs", str(epochs), "--lr", "3e-3", "--threads", "1", "--quiet",
                 "--out", str(run)]) == 0


@pytest.fixture(scope="module")
def tied_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("missing")
    path = root / "tied.csv"
    tied_frame().to_csv(path, index=False)
    _train(path, root / "run", epochs=40)
    return path, root / "run"


def _sample(run: Path, out: Path, *flags: str) -> pd.DataFrame:
    assert main(["sample", str(run), "-n", "2000", "-o", str(out), "--seed", "1",
                 *flags]) == 0
    return pd.read_csv(out)


def test_synthetic_rows_miss_cells_at_the_rate_and_where_the_data_do(
        tied_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = tied_run
    real, synth = pd.read_csv(data), _sample(run, tmp_path / "s.csv")
    rate = real["b"].isna().mean()
    assert 0.25 < rate < 0.35
    assert abs(synth["b"].isna().mean() - rate) < 0.06
    assert synth[["a", "c"]].notna().all().all()  # columns with no missing cell stay complete
    # the relation: b is missing where a is large, present where it is small
    assert synth["b"][synth["a"] > A_LARGE].isna().mean() > 0.6
    assert synth["b"][synth["a"] < 0].isna().mean() < 0.15


def test_missing_impute_gives_complete_rows(tied_run: tuple[Path, Path],
                                            tmp_path: Path) -> None:
    _, run = tied_run
    drawn = _sample(run, tmp_path / "drawn.csv")
    imputed = _sample(run, tmp_path / "imputed.csv", "--missing", "impute")
    assert drawn["b"].isna().any() and imputed.notna().all().all()
    # the same draws, the missing cells filled with the values drawn for them
    seen = drawn["b"].notna()
    assert np.allclose(drawn["b"][seen], imputed["b"][seen])
    assert imputed["b"][~seen].std() > 0
    x = torch.tensor([[0.5, 1.0, 0.0, 1.0, 0.0]])  # a block of 3 numbers, 2 flags
    assert torch.equal(fill_missing(x, 2), torch.tensor([[0.5, 1.0, 0.0, 1.0, 1.0]]))


def _evaluate(run: Path, k: int, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["evaluate", str(run), "--k", str(k), "--split", "test", "--json"]) == 0
    out = capsys.readouterr().out
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    report["printed"] = out
    return report


def test_evaluate_reports_the_missingness_apart(tied_run: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _, run = tied_run
    report = _evaluate(run, 20, capsys)
    assert report["side_term"] == "missingness" and report["side_term_of"] == ["b"]
    assert report["missingness_log_likelihood"] < 0
    assert math.isclose(report["joint_log_likelihood"], report["log_likelihood"]
                        + report["missingness_log_likelihood"], rel_tol=1e-9, abs_tol=1e-9)
    assert "log p(missingness | x), k=20" in report["printed"]
    saved = json.loads((run / "evaluation.json").read_text())
    assert saved["missingness_log_likelihood"] == report["missingness_log_likelihood"]


def _decoder_out(model: nn.Module) -> nn.Linear:
    """The decoder's last layer (its outputs are the likelihood's parameters, flags last)."""
    return [m for m in model.decoder.modules() if isinstance(m, nn.Linear)][-1]


def _without_flags(table: dict[str, Any]) -> dict[str, Any]:
    """A table schema in the layout written before missing cells were modelled."""
    return {**table, "columns": [{k: v for k, v in c.items() if k != "missing_rate"}
                                 for c in table["columns"]]}


def test_the_main_log_likelihood_is_that_of_the_model_without_the_flags(
        tied_run: tuple[Path, Path]) -> None:
    """The same weights without the flags' head (an old-layout model) give the same ELBO and
    log p(x) as the main numbers; a constant p(m|z) makes log p(m|x) exactly log p(m)."""
    from vaekit.evaluate import evaluate
    from vaekit.models import build_model
    from vaekit.run import load_run

    data, run = tied_run
    model, info = load_run(run)
    frame = pd.read_csv(data).head(200)
    x = TableSchema.from_dict(info.config.table).transform(frame, "t")
    old = build_model(info.config.replace(table=_without_flags(info.config.table)),
                      info.event_shape).eval()
    state = model.state_dict()
    last = [name for name in state if name.startswith("decoder.")][-2:]  # weight, bias
    for name in last:
        state[name] = state[name][:-1]  # one flagged column
    old.load_state_dict(state)
    new_report, old_report = evaluate(model, x, k=10), evaluate(old, x, k=10)
    assert "side_term" not in old_report
    for key in ("elbo", "log_likelihood"):
        assert math.isclose(new_report[key], old_report[key], rel_tol=1e-6), key
    with torch.no_grad():  # p(observed|z) = 1 - r whatever z: log p(m|x) = log p(m)
        _decoder_out(model).weight[-1] = 0
        _decoder_out(model).bias[-1] = 0
    r = info.config.table["columns"][1]["missing_rate"]
    m = frame["b"].isna().to_numpy()
    exact = float(np.mean(np.where(m, math.log(r), math.log(1 - r))))
    assert math.isclose(evaluate(model, x, k=10)["missingness_log_likelihood"], exact,
                        rel_tol=1e-5)


def test_quality_reports_the_missing_rates(tied_run: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _, run = tied_run
    capsys.readouterr()
    assert main(["quality", str(run), "--target", "c", "--json"]) == 0
    out = capsys.readouterr().out
    rates = json.loads(out.strip().splitlines()[-1])["missing_rates"]
    assert set(rates) == {"a", "b", "c"} and rates["b"]["modelled"]
    assert rates["a"] == {"real": 0.0, "synthetic": 0.0, "train": 0.0, "modelled": False}
    assert abs(rates["b"]["synthetic"] - rates["b"]["train"]) < 0.07
    assert 0.2 < rates["b"]["real"] < 0.4
    assert "missing rate" in out and " b " in out
    assert main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 0
    assert "b: missing rate, real test / synthetic" in (tmp_path / "r.html").read_text()
    # known answers
    frame = tied_frame(20)
    schema = fit_schema(frame, {}, "t")
    complete = frame.assign(b=frame["b"].fillna(0.0))
    table = missing_rate_table(schema, frame, complete)
    assert table["b"] == {"real": frame["b"].isna().mean(), "synthetic": 0.0, "modelled": True}


def test_a_run_from_before_the_flags_loads_samples_and_evaluates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "tied.csv"
    tied_frame(300).to_csv(path, index=False)
    run = tmp_path / "old"
    with monkeypatch.context() as patch:  # training writes the old layout of the schema
        to_dict = TableSchema.to_dict
        patch.setattr(TableSchema, "to_dict", lambda self: _without_flags(to_dict(self)))
        _train(path, run, epochs=2)
    config = json.loads((run / "config.json").read_text())
    assert all("missing_rate" not in c for c in config["config"]["table"]["columns"])
    synth = _sample(run, tmp_path / "s.csv")  # the old behaviour: every cell
    assert synth.notna().all().all()
    report = _evaluate(run, 5, capsys)
    assert "side_term" not in report and math.isfinite(report["log_likelihood"])
    assert main(["quality", str(run), "--json"]) == 0
    rates = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["missing_rates"]
    assert rates["b"]["synthetic"] == 0.0 and not rates["b"]["modelled"]
