"""Tables: column types inferred or given, transforms that round-trip, one likelihood per
column summing to the total, missing cells masked out (no gradient), sampled CSVs with the
training schema, and a clear line for every bad table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaekit.cli import main
from vaekit.errors import VaekitError

pd = pytest.importorskip("pandas")
from vaekit.data.tables import TableSchema, fit_schema, infer_kind  # noqa: E402
from vaekit.distributions.table import LOG_SD_RANGE, TableLikelihood  # noqa: E402


def mixed_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "height": rng.normal(170, 10, n),
        "children": rng.integers(0, 5, n),
        "smoker": rng.choice(["yes", "no"], n),
        "city": rng.choice(["Oslo", "Lima", "Pune", "Nice"], n),
        "member": rng.random(n) < 0.4,
        "score": rng.normal(0, 1, n) * 1000,
    })
    frame.loc[rng.random(n) < 0.1, "height"] = np.nan
    frame.loc[rng.random(n) < 0.05, "city"] = None
    return frame


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    mixed_frame().to_csv(path, index=False)
    return path


def test_column_types_are_inferred_and_overridden() -> None:
    frame = mixed_frame()
    kinds = {name: infer_kind(frame[name], name) for name in frame.columns}
    assert kinds == {"height": "continuous", "children": "integer", "smoker": "binary",
                     "city": "categorical", "member": "binary", "score": "continuous"}
    schema = fit_schema(frame, {"children": "categorical", "score": "drop"}, "t")
    assert [c.kind for c in schema.columns] == ["continuous", "categorical", "binary",
                                                "categorical", "binary"]
    assert schema.dropped == ["score"]
    assert schema.columns[3].categories == ["Lima", "Nice", "Oslo", "Pune"]


def test_the_transform_round_trips_with_missing_cells() -> None:
    frame = mixed_frame()
    schema = fit_schema(frame, {}, "t")
    x = schema.transform(frame, "t")
    assert x.shape == (200, schema.width) and schema.width == 1 + 1 + 1 + 4 + 1 + 1 + 6
    back = schema.inverse(x)
    assert list(back.columns) == list(frame.columns)
    assert np.allclose(back["height"].to_numpy(dtype=float), frame["height"].to_numpy(),
                       atol=1e-3, equal_nan=True)
    assert (back["children"].to_numpy() == frame["children"].to_numpy()).all()
    for name in ("smoker", "city", "member"):
        assert back[name].isna().tolist() == frame[name].isna().tolist()
        assert back[name].dropna().tolist() == frame[name].dropna().tolist()
    # through JSON, as the run directory keeps it
    again = TableSchema.from_dict(schema.to_dict())
    assert torch.equal(again.transform(frame, "t"), x)


def _likelihood(frame: pd.DataFrame) -> tuple[TableLikelihood, torch.Tensor]:
    schema = fit_schema(frame, {}, "t")
    return TableLikelihood((schema.width,), schema.to_dict()), schema.transform(frame, "t")


def test_per_column_likelihoods_sum_to_the_total_and_are_the_right_densities() -> None:
    frame = mixed_frame(20)
    lik, x = _likelihood(frame)
    params = torch.randn(3, 20, lik.param_shape()[0])
    columns = lik.column_log_prob(params, x)
    assert columns.shape == (3, 20, 6)
    flags = lik.flag_log_prob(params, x)  # the two columns with missing cells: height, city
    assert flags.shape == (3, 20, 2) and lik.side_term_of == ("height", "city")
    assert torch.allclose(columns.sum(-1) + flags.sum(-1), lik.log_prob(params, x))
    with lik.main_term_only():
        assert torch.allclose(columns.sum(-1), lik.log_prob(params, x))
    # a flag: log sigmoid(l) where observed, log(1 - sigmoid(l)) where missing
    logit = lik.flag_logits(params)[..., 0]
    observed = torch.tensor(frame["height"].notna().to_numpy())
    assert torch.allclose(flags[..., 0], torch.where(observed, F.logsigmoid(logit),
                                                     F.logsigmoid(-logit)))
    # the continuous column: a Gaussian density of the raw value, in the data's units
    c = lik.schema.columns[0]
    mu, log_sd = params[..., 0], params[..., 1].clamp(*LOG_SD_RANGE)  # its documented bounds
    raw = torch.tensor(frame["height"].to_numpy(), dtype=torch.float32)
    expected = torch.distributions.Normal(mu * c.sd + c.mean, log_sd.exp() * c.sd).log_prob(
        raw.nan_to_num(0.0))
    observed = ~torch.isnan(raw)
    assert torch.allclose(columns[..., 0][:, observed], expected[:, observed], rtol=1e-4,
                          atol=1e-3)
    # the categorical column: log softmax at the category
    city = lik.schema.columns[3]
    start = sum(lik.param_widths[:3])
    logits = params[..., start:start + 4]
    for row in range(20):
        value = frame["city"].iloc[row]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert torch.all(columns[:, row, 3] == 0)
        else:
            k = city.categories.index(value)
            assert torch.allclose(columns[:, row, 3], torch.log_softmax(logits[:, row], -1)[:, k])


def test_a_missing_cell_gets_no_gradient_and_does_not_change_the_likelihood() -> None:
    frame = mixed_frame(20)
    lik, x = _likelihood(frame)
    params = torch.randn(20, lik.param_shape()[0], requires_grad=True)
    lik.log_prob(params, x).sum().backward()
    assert params.grad is not None
    missing = torch.tensor(frame["height"].isna().to_numpy())
    assert missing.any()
    assert torch.all(params.grad[missing][:, :2] == 0)  # the height column's mean and log sd
    assert torch.all(params.grad[~missing][:, 0] != 0)
    changed = x.clone()
    changed[missing, 0] = 123.0  # whatever the block holds for a missing cell
    assert torch.equal(lik.log_prob(params, changed), lik.log_prob(params, x))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("table")
    path = root / "people.csv"
    mixed_frame(300).to_csv(path, index=False)
    run = root / "run"
    assert main(["train", "--data", str(path), "--latent-dim", "3", "--hidden", "32",
                 "--epochs", "3", "--quiet", "--out", str(run)]) == 0
    return path, run


def test_a_sampled_csv_has_the_training_schema(table_run: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    data, run = table_run
    out = tmp_path / "synth.csv"
    assert main(["sample", str(run), "-n", "500", "-o", str(out), "--seed", "3"]) == 0
    real, synth = pd.read_csv(data), pd.read_csv(out)
    assert list(synth.columns) == list(real.columns) and len(synth) == 500
    # cells are missing in the columns that miss them in the data, and only there
    holes = synth.isna().any()
    assert holes[["height", "city"]].all() and not holes.drop(["height", "city"]).any()
    complete = tmp_path / "complete.csv"
    assert main(["sample", str(run), "-n", "500", "-o", str(complete), "--seed", "3",
                 "--missing", "impute"]) == 0
    synth = pd.read_csv(complete)
    assert synth.notna().all().all()  # imputed: every cell
    for name in ("smoker", "city", "member"):
        assert set(synth[name]) <= set(real[name].dropna())
    assert synth["children"].dtype.kind == "i"
    assert synth["height"].dtype.kind == "f" and synth["member"].dtype == bool
    again = tmp_path / "again.csv"
    assert main(["sample", str(run), "-n", "500", "-o", str(again), "--seed", "3"]) == 0
    assert again.read_text() == out.read_text()  # reproducible from the seed
    bounded = tmp_path / "bounded.csv"
    assert main(["sample", str(run), "-n", "500", "-o", str(bounded), "--bounds"]) == 0
    b = pd.read_csv(bounded)
    assert b["score"].between(real["score"].min(), real["score"].max()).all()


def test_new_rows_are_encoded_and_scored_against_the_schema(
        table_run: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, run = table_run
    frame = pd.read_csv(data).head(10)
    frame["extra"] = 1
    new = tmp_path / "new.csv"
    frame.to_csv(new, index=False)
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(new), "--k", "5",
                 "-o", str(tmp_path / "s.npy")]) == 0
    assert "'extra' not in the model's table, ignored" in capsys.readouterr().err
    assert np.load(tmp_path / "s.npy").shape == (10,)
    assert main(["encode", str(run), "--data", str(new), "-o", str(tmp_path / "c.npy")]) == 0
    assert np.load(tmp_path / "c.npy").shape == (10, 2, 3)


def _parquet_or_skip(frame: pd.DataFrame, path: Path) -> Path:
    pytest.importorskip("pyarrow")
    frame.to_parquet(path)
    return path


def test_a_parquet_table_trains(tmp_path: Path) -> None:
    path = _parquet_or_skip(mixed_frame(100), tmp_path / "t.parquet")
    assert main(["train", "--data", str(path), "--latent-dim", "2", "--hidden", "16",
                 "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]) == 0


@pytest.mark.parametrize("case, message", [
    ("unseen category", "'Rome', a value not seen in training"),
    ("missing column", "lacks the column 'city'"),
    ("text in a number column", "'tall'"),
])
def test_bad_new_rows_are_one_line(case: str, message: str, table_run: tuple[Path, Path],
                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = table_run
    frame = pd.read_csv(data).head(5)
    if case == "unseen category":
        frame.loc[2, "city"] = "Rome"
    elif case == "missing column":
        frame = frame.drop(columns="city")
    else:
        frame["height"] = frame["height"].astype(object)
        frame.loc[1, "height"] = "tall"
    new = tmp_path / "new.csv"
    frame.to_csv(new, index=False)
    capsys.readouterr()
    assert main(["score", str(run), "--data", str(new), "-o", str(tmp_path / "s.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vaekit: error:") and message in err[-1], err


@pytest.mark.parametrize("case, message", [
    ("empty", "no rows"),
    ("dates", "column 'day' holds dates"),
    ("all missing", "column 'blank' has no values"),
    ("identifier", "distinct values"),
    ("bad override", "NAME:TYPE"),
    ("unknown override", "not a column"),
    ("not a table", "could not be read as a table"),
])
def test_a_bad_table_is_one_line(case: str, message: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.csv"
    frame = mixed_frame(600)
    extra: list[str] = []
    if case == "empty":
        path.write_text("a,b\n")
    elif case == "not a table":
        path.write_bytes(bytes(range(256)) * 8)  # not text
    else:
        if case == "dates":
            frame["day"] = pd.date_range("2020-01-01", periods=600).strftime("%Y-%m-%d")
        elif case == "all missing":
            frame["blank"] = np.nan
        elif case == "identifier":
            frame["id"] = [f"user-{i}" for i in range(600)]
        elif case == "bad override":
            extra = ["--columns", "height:number"]
        elif case == "unknown override":
            extra = ["--columns", "weight:continuous"]
        frame.to_csv(path, index=False)
    capsys.readouterr()
    code = main(["train", "--data", str(path), "--epochs", "1", "--quiet", *extra,
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("vaekit: error:") and message in err[-1], err
    assert not (tmp_path / "run").exists()


def test_likelihood_table_cannot_be_given() -> None:
    from vaekit.config import Config

    with pytest.raises(VaekitError, match=r"chosen by training on a \.csv"):
        Config(likelihood="table").validate()


# ---------------------------------------------------------------------------- quality


def test_column_metrics_have_their_known_answers() -> None:
    from vaekit.quality.tables import correlation_similarity, ks_complement, tv_complement

    a = np.arange(100.0)
    assert ks_complement(a, a.copy()) == 1.0
    assert ks_complement(a, a + 1000) == 0.0
    assert ks_complement(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, np.nan])) == 0.5
    assert tv_complement(["a", "a", "b", "b"], ["a", "a", "a", "b"]) == pytest.approx(0.75)
    assert tv_complement(["a", None], ["b"]) == 0.0
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    real = pd.DataFrame({"x": x, "y": x + 0.5 * rng.normal(size=500)})
    rho = np.corrcoef(real["x"], real["y"])[0, 1]
    assert correlation_similarity(real, real, ["x", "y"]) == pytest.approx(1.0)
    flipped = real.assign(y=-real["y"])
    assert correlation_similarity(real, flipped, ["x", "y"]) == pytest.approx(1 - abs(rho))


def test_train_on_synthetic_test_on_real_has_known_answers() -> None:
    from vaekit.quality.tables import tstr

    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    frame = pd.DataFrame({"x": x, "label": np.where(x > 0, "up", "down")})
    schema = fit_schema(frame, {}, "t")
    train, test = frame.iloc[:300], frame.iloc[300:]
    scrambled = train.assign(label=rng.permutation(train["label"].to_numpy()))
    faithful = tstr(schema, train, train, test, "label")
    assert faithful["accuracy_synthetic"] > 0.95 and faithful["accuracy_real"] > 0.95
    assert tstr(schema, train, scrambled, test, "label")["accuracy_synthetic"] < 0.75
    with pytest.raises(ValueError, match="binary or categorical"):
        tstr(schema, train, train, test, "x")


def test_quality_of_a_table_run_is_reported_and_saved(
        table_run: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    _, run = table_run
    capsys.readouterr()
    assert main(["quality", str(run), "--target", "city", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["column_shapes"]) == {"height", "children", "smoker", "city", "member",
                                            "score"}
    assert 0 <= report["column_shapes_mean"] <= 1 and 0 <= report["correlation_similarity"] <= 1
    assert {"accuracy_synthetic", "accuracy_real", "accuracy_majority"} <= set(report["tstr"])
    assert json.loads((run / "quality.json").read_text()) == report
    assert main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 0
    assert "correlation similarity" in (tmp_path / "r.html").read_text()
    assert main(["quality", str(run), "--target", "height"]) == 2


# ---------------------------------------------------------------------------- multimodal


def bimodal_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = np.where(rng.random(n) < 0.6, rng.normal(10, 1, n), rng.normal(100, 5, n))
    return pd.DataFrame({"price": price, "kind": rng.choice(["x", "y"], n)})


def test_mode_specific_normalisation_finds_the_modes_and_round_trips() -> None:
    frame = bimodal_frame()
    schema = fit_schema(frame, {"price": "multimodal"}, "t")
    modes = schema.columns[0].modes
    means = sorted(m for w, m, s in modes if w > 0.05)
    assert len(means) == 2 and abs(means[0] - 10) < 1 and abs(means[1] - 100) < 3
    x = schema.transform(frame, "t")
    assert x.shape[1] == schema.width == (1 + len(modes)) + 1 + 2
    back = schema.inverse(x)
    assert np.allclose(back["price"], frame["price"], rtol=1e-5)
    assert back["price"].dtype == np.float64


def test_one_mode_is_a_gaussian_in_the_data_units() -> None:
    """With a single mode, the categorical is certain and alpha = (x - mean) / (4 sd), so the
    column's log-density is that of N(mean + 4 sd mu, (4 sd sigma)^2) at x."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"v": rng.normal(3, 2, 300)})
    schema = fit_schema(frame, {"v": "multimodal"}, "t")
    schema.columns[0].modes = [[1.0, 3.0, 2.0]]
    lik = TableLikelihood((schema.width,), schema.to_dict())
    x = schema.transform(frame, "t")
    params = torch.randn(300, lik.param_shape()[0])
    mu, log_sd = params[:, 0], params[:, 1].clamp(*LOG_SD_RANGE)
    expected = torch.distributions.Normal(3 + 8 * mu, 8 * log_sd.exp()).log_prob(
        torch.tensor(frame["v"].to_numpy(), dtype=torch.float32))
    assert torch.allclose(lik.column_log_prob(params, x)[:, 0], expected, rtol=1e-4, atol=1e-3)


def test_a_multimodal_column_trains_and_samples_both_modes(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    bimodal_frame(600).to_csv(path, index=False)
    run, out = tmp_path / "run", tmp_path / "synth.csv"
    assert main(["train", "--data", str(path), "--columns", "price:multimodal", "--hidden",
                 "32", "--latent-dim", "2", "--epochs", "40", "--quiet", "--out", str(run)]) == 0
    assert main(["sample", str(run), "-n", "400", "-o", str(out)]) == 0
    price = pd.read_csv(out)["price"]
    assert ((price - 10).abs() < 5).mean() > 0.3 and ((price - 100).abs() < 20).mean() > 0.2


def test_a_category_seen_only_in_held_out_rows_is_still_a_category(tmp_path: Path) -> None:
    from vaekit.data import load_dataset

    frame = mixed_frame(200)
    frame.loc[:, "city"] = frame["city"].fillna("Oslo")
    frame.loc[np.arange(0, 200, 7), "city"] = [f"rare{i}" for i in range(0, 200, 7)]
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    data = load_dataset(str(path))  # some rare cities fall only in val or test rows
    city = next(c for c in TableSchema.from_dict(data.table).columns if c.name == "city")
    assert {f"rare{i}" for i in range(0, 200, 7)} <= set(city.categories)


def test_a_column_with_one_value_is_a_category_and_inverts() -> None:
    frame = pd.DataFrame({"on": [True] * 30, "x": np.arange(30.0)})
    schema = fit_schema(frame, {}, "t")
    assert schema.columns[0].kind == "categorical" and schema.columns[0].categories == [True]
    x = schema.transform(frame, "t")
    assert schema.inverse(x)["on"].tolist() == [True] * 30
