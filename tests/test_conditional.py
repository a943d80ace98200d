"""The conditional VAE (Sohn et al. 2015): `--condition label` trains on the data's class labels;
the encoder reads [x, c], the decoder [z, c]; sampling, evaluation and every command take the
class."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from tests.conftest import run_cli
from vaekit import Config, build_model
from vaekit.data import load_dataset
from vaekit.errors import ConfigError, DataError
from vaekit.evaluate import dataset_elbo, log_likelihood
from vaekit.train import loop
from vaekit.train.prepare import prepare_eval_data

CVAE = Config(data="digits", condition="label", hidden=(64,), latent_dim=4, epochs=40,
              batch_size=50, threads=1)
CLASSES = tuple(str(i) for i in range(10))


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cvae") / "run"
    vaekit.train(CVAE, out=out, progress=False)
    return out


def _model(**changes: object) -> vaekit.models.LatentVariableModel:
    torch.manual_seed(0)
    config = Config(latent_dim=3, hidden=(16,), condition="label",
                    condition_classes=("a", "b", "c")).replace(**changes)
    return build_model(config, (12,))


@pytest.mark.parametrize("net, shape", [("mlp", (12,)), ("linear", (12,)),
                                        ("conv", (1, 8, 8))])
def test_the_encoder_and_the_decoder_both_read_the_class(net: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    config = Config(latent_dim=3, hidden=(16,), channels=(4,), net=net, condition="label",
                    condition_classes=("a", "b", "c"))
    model = build_model(config, shape)
    x, z = torch.rand(5, *shape), torch.randn(5, 3)
    assert not torch.allclose(model.encode(x, condition=0).mean, model.encode(x, condition=1).mean)
    assert not torch.allclose(model.decode_mean(z, condition="a"),
                              model.decode_mean(z, condition="c"))
    # a class by name, by index, one for all rows or one per row: the same answer
    per_row = model.decode_mean(z, condition=torch.tensor([2, 2, 2, 2, 2]))
    assert torch.equal(per_row, model.decode_mean(z, condition="c"))
    assert torch.equal(per_row, model.decode_mean(z, condition=np.full(5, 2)))


def test_every_verb_takes_the_class_and_keeps_its_shapes() -> None:
    model, x = _model(), torch.rand(4, 12)
    labels = [0, 1, 2, 1]
    assert model.condition_dim == 3 and model.condition_classes == ("a", "b", "c")
    assert model.encode(x, condition=labels).mean.shape == (4, 3)
    assert model.elbo(x, condition=labels)["elbo"].shape == (4,)
    assert model.reconstruct(x, condition=labels).shape == (4, 12)
    assert model.sample(7, condition="b").shape == (7, 12)
    assert model.decode(torch.randn(2, 4, 3), condition=labels).batch_shape == (2, 4)
    assert model.decode_mean(torch.randn(3), condition=1).shape == (12,)  # one latent vector
    # the ELBO of a row depends on its own class only (the same noise in every call)
    def elbo(condition: object) -> torch.Tensor:
        torch.manual_seed(1)
        return model.elbo(x, condition=condition)["elbo"]

    each = torch.stack([elbo(c) for c in range(3)])  # (3, 4)
    assert torch.allclose(elbo(labels), each[labels, range(4)])


def test_the_class_is_required_and_checked_with_one_line_errors() -> None:
    model, x = _model(), torch.rand(4, 12)
    with pytest.raises(DataError, match=r"conditioned on class labels \(3 classes: a, b, c\)"):
        model.sample(2)
    with pytest.raises(DataError, match="unknown class 'd'"):
        model.encode(x, condition="d")
    with pytest.raises(DataError, match=r"integer in \[0, 2\]"):
        model.elbo(x, condition=3)
    with pytest.raises(DataError, match=r"integer in \[0, 2\]"):
        model.elbo(x, condition=torch.tensor([0, 1, 5, 0]))
    with pytest.raises(DataError, match=r"one per row \(4\)"):
        model.elbo(x, condition=[0, 1])
    with pytest.raises(DataError, match="not conditional"):
        build_model(Config(latent_dim=3, hidden=(16,)), (12,)).sample(2, condition=0)


@pytest.mark.parametrize("changes, message", [
    ({"condition": "colour"}, "--condition must be 'label'"),
    ({"model": "hvae"}, "one-layer model"),
    ({"prior": "vamp"}, "--prior vamp"),
    ({"condition": "", "condition_classes": ("a",)}, "written by training"),
    ({"condition_classes": ("a", "a")}, "distinct"),
])
def test_unsupported_combinations_are_refused(changes: dict[str, object], message: str) -> None:
    base = {"condition": "label", "condition_classes": ("a", "b")}
    with pytest.raises(ConfigError, match=message):
        Config(**{**base, **changes}).validate()  # type: ignore[arg-type]


def test_data_without_labels_are_refused_before_training(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((50, 6)).astype(np.float32))
    r = run_cli("train", "--data", str(tmp_path / "x.npy"), "--condition", "label",
                "--latent-dim", "2", "--epochs", "1", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "x.npy has no class labels" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "r").exists()


def test_training_learns_to_draw_the_class_it_is_given(cvae_run: Path) -> None:
    """The mean of 200 samples of each class is nearest to that class's mean image, and the
    true labels explain the test images better than wrong ones."""
    model, data = vaekit.load(cvae_run), load_dataset("digits")
    assert model.condition_classes == CLASSES
    labels = data.labels["train"]
    class_means = torch.stack([data.train[labels == c].mean(0) for c in range(10)])
    g = torch.Generator().manual_seed(0)
    drawn = torch.stack([model.sample(200, generator=g, condition=c).mean(0) for c in range(10)])
    nearest = torch.cdist(drawn.flatten(1), class_means.flatten(1)).argmin(1)
    assert nearest.tolist() == list(range(10))
    x, y = data.test, data.labels["test"]
    true = dataset_elbo(model, x, condition=y)["elbo"].mean()
    wrong = dataset_elbo(model, x, condition=(y + 1) % 10)["elbo"].mean()
    assert true > wrong + 5, (float(true), float(wrong))


def test_evaluate_conditions_on_the_true_label_and_says_so(cvae_run: Path) -> None:
    r = run_cli("evaluate", str(cvae_run), "--k", "20", "--n", "60", "--json")
    assert r.returncode == 0, r.stderr
    assert "given each example's true class label" in r.stdout
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert "log p(x|c)" in report["conditioned_on"]
    model, data = vaekit.load(cvae_run), load_dataset("digits")
    mode = json.loads((cvae_run / "config.json").read_text())["data"]["binarize"]
    x, y = prepare_eval_data(data.test[:60], mode, None), data.labels["test"][:60]
    expected = log_likelihood(model, x, k=20, condition=y)
    assert report["log_likelihood"] == pytest.approx(expected.mean, abs=1e-4)
    wrong = log_likelihood(model, x, k=20, condition=(y + 3) % 10)
    assert report["log_likelihood"] != pytest.approx(wrong.mean, abs=1e-2)


def test_sample_draws_one_class_or_every_class_in_turn(cvae_run: Path, tmp_path: Path) -> None:
    r = run_cli("sample", str(cvae_run), "--condition", "3", "-n", "64", "-o",
                str(tmp_path / "three.npy"))
    assert r.returncode == 0, r.stderr
    three = np.load(tmp_path / "three.npy")
    model = vaekit.load(cvae_run)
    expected = model.sample(64, generator=torch.Generator().manual_seed(0), condition=3)
    assert three.shape == (64, 1, 8, 8) and np.allclose(three, expected.numpy(), atol=1e-6)
    r = run_cli("sample", str(cvae_run), "-n", "20", "-o", str(tmp_path / "all.npy"))
    assert r.returncode == 0 and "classes in turn" in r.stderr
    expected = model.sample(20, generator=torch.Generator().manual_seed(0),
                            condition=torch.arange(20) % 10)
    assert np.allclose(np.load(tmp_path / "all.npy"), expected.numpy(), atol=1e-6)
    for bad, message in (("12", r"integer in \[0, 9\]"), ("cat", "unknown class 'cat'")):
        r = run_cli("sample", str(cvae_run), "--condition", bad, "-o", str(tmp_path / "x.png"))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
        assert re.search(message, r.stderr), r.stderr
        assert not (tmp_path / "x.png").exists()


def test_the_other_commands_use_each_examples_class(cvae_run: Path, tmp_path: Path) -> None:
    model, data = vaekit.load(cvae_run), load_dataset("digits")
    mode = json.loads((cvae_run / "config.json").read_text())["data"]["binarize"]
    x, y = prepare_eval_data(data.test, mode, None), data.labels["test"]
    r = run_cli("encode", str(cvae_run), "-o", str(tmp_path / "codes.npz"))
    assert r.returncode == 0, r.stderr
    assert np.allclose(np.load(tmp_path / "codes.npz")["mean"],
                       model.encode(x, condition=y).mean.numpy(), atol=1e-5)
    for command, out in (("reconstruct", "r.png"), ("interpolate", "i.png"),
                         ("score", "s.npy")):
        extra = ["--pair", "0", "1"] if command == "interpolate" else []
        r = run_cli(command, str(cvae_run), *extra, "-o", str(tmp_path / out))
        assert r.returncode == 0, (command, r.stderr)
    assert "-log p(x|c)" in run_cli("score", str(cvae_run), "-o", str(tmp_path / "t.npy"),
                                    "--k", "5").stdout


def test_a_conditional_run_resumes_mid_epoch_bit_for_bit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CVAE.replace(epochs=3)
    whole = vaekit.train(config, out=tmp_path / "whole", progress=False, pictures=False)
    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "_agree_to_stop", lambda self, stop:
                  (self.state.epoch, self.state.step_in_epoch) == (1, 7))
        with pytest.raises(loop.TrainingInterrupted):
            vaekit.train(config, out=tmp_path / "part", progress=False, pictures=False)
    resumed = vaekit.train(resume=tmp_path / "part", progress=False, pictures=False)
    w1, w2 = (vaekit.io.load_tensors(tmp_path / r / "checkpoint.safetensors")[0]
              for r in ("whole", "part"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert [r["val_elbo"] for r in whole.history] == [r["val_elbo"] for r in resumed.history]


def test_the_picture_of_samples_has_a_row_per_class(cvae_run: Path) -> None:
    from PIL import Image

    from vaekit.views.plots import PER_CLASS, draw_samples

    model = vaekit.load(cvae_run)
    images, rows = draw_samples(model, torch.Generator().manual_seed(0))
    assert rows == list(CLASSES) and images.shape == (10 * PER_CLASS, 1, 8, 8)
    width, height = Image.open(cvae_run / "samples.png").size
    assert height > 10 * 8 and width > PER_CLASS * 8  # ten rows, named in a margin


# ---------------------------------------------------------------------- a table's column


def _groups_frame(n: int = 600, seed: int = 0) -> object:
    """`size` is 5, -5 or 0 (+ noise) by `group`, which the model is conditioned on."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    group = rng.choice(["red", "green", "blue"], n)
    size = np.select([group == "red", group == "green"], [5.0, -5.0], 0.0) + rng.normal(size=n)
    return pd.DataFrame({"size": size, "group": group, "count": rng.integers(0, 5, n)})


@pytest.fixture(scope="module")
def table_cvae(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("table-cvae")
    _groups_frame().to_csv(root / "groups.csv", index=False)  # type: ignore[attr-defined]
    r = run_cli("train", "--data", str(root / "groups.csv"), "--condition", "group",
                "--latent-dim", "2", "--epochs", "30", "--threads", "1", "--quiet", "--out",
                str(root / "run"))
    assert r.returncode == 0, r.stderr
    return root / "run", root / "groups.csv"


def test_a_tables_column_is_the_condition_and_comes_back_in_the_samples(
        table_cvae: tuple[Path, Path], tmp_path: Path) -> None:
    import pandas as pd

    run, _ = table_cvae
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["condition_classes"] == ["blue", "green", "red"]  # sorted values
    assert "group" not in [c["name"] for c in config["table"]["columns"]]  # not modelled
    for group, centre in (("red", 5.0), ("green", -5.0), ("blue", 0.0)):
        r = run_cli("sample", str(run), "--condition", group, "-n", "300", "-o",
                    str(tmp_path / f"{group}.csv"))
        assert r.returncode == 0, r.stderr
        rows = pd.read_csv(tmp_path / f"{group}.csv")
        assert list(rows.columns) == ["group", "size", "count"]  # the condition first
        assert set(rows["group"]) == {group}
        assert abs(rows["size"].mean() - centre) < 1.0, (group, rows["size"].mean())
    r = run_cli("sample", str(run), "-n", "6", "-o", str(tmp_path / "all.csv"))
    assert r.returncode == 0 and "classes in turn" in r.stderr
    assert list(pd.read_csv(tmp_path / "all.csv")["group"]) == ["blue", "green", "red"] * 2


def test_new_rows_are_scored_given_their_group(table_cvae: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    run, csv = table_cvae
    r = run_cli("evaluate", str(run), "--data", str(csv), "--k", "10", "--json")
    assert r.returncode == 0, r.stderr
    assert "log p(x|c)" in json.loads(r.stdout.strip().splitlines()[-1])["conditioned_on"]
    frame = _groups_frame(20, seed=1)
    frame.loc[3, "group"] = "purple"  # type: ignore[attr-defined,index]
    frame.to_csv(tmp_path / "new.csv", index=False)  # type: ignore[attr-defined]
    r = run_cli("score", str(run), "--data", str(tmp_path / "new.csv"), "-o",
                str(tmp_path / "s.npy"))
    assert r.returncode == 2 and "'purple', not among the classes" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize("case, message", [
    ("no-column", "has no column 'colour'"),
    ("missing", "2 rows of .* have no value in 'group'"),
    ("label", "a table has no labels"),
    ("array", "or a column of a .csv/.parquet table"),
])
def test_a_bad_condition_column_is_one_line(case: str, message: str, tmp_path: Path) -> None:
    frame = _groups_frame(60)
    if case == "missing":
        frame.loc[[4, 9], "group"] = None  # type: ignore[attr-defined,index]
    frame.to_csv(tmp_path / "t.csv", index=False)  # type: ignore[attr-defined]
    np.save(tmp_path / "a.npy", np.zeros((20, 4), np.float32))
    data = str(tmp_path / ("a.npy" if case == "array" else "t.csv"))
    column = {"no-column": "colour", "label": "label"}.get(case, "group")
    r = run_cli("train", "--data", data, "--condition", column, "--latent-dim", "2",
                "--epochs", "1", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and re.search(message, r.stderr), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_what_needs_an_unconditional_model_refuses_a_conditional_one(cvae_run: Path,
                                                                      tmp_path: Path) -> None:
    for args, message in (
            (["fit-prior", str(cvae_run), "--kind", "gaussian", "--out", str(tmp_path / "p")],
             "is a conditional VAE"),
            (["evaluate", str(cvae_run), "--k", "2", "--n", "20", "--amortization-gap", "5"],
             "unconditional one-layer model"),
            (["sample", str(tmp_path / "plain"), "--condition", "3", "-o",
              str(tmp_path / "s.png")], "is not a conditional model")):
        if args[0] == "sample":
            assert run_cli("train", "--epochs", "1", "--latent-dim", "2", "--quiet", "--out",
                           str(tmp_path / "plain")).returncode == 0
        r = run_cli(*args)
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists() and not (tmp_path / "s.png").exists()


def test_the_marginal_likelihood_sums_the_classes_under_their_prior() -> None:
    """log p(x) = log sum_c p(c) p(x|c): each class's importance-weighted estimate with the
    same noise, summed under p(c)."""
    from vaekit.evaluate import marginal_log_likelihood

    model, x = _model(), torch.rand(5, 12)
    per_class = torch.stack([log_likelihood(model, x, k=30, condition=c).per_example
                             for c in range(3)])  # (3, 5)
    prior = torch.tensor([1.0, 2.0, 5.0])
    expected = torch.logsumexp(per_class + (prior / prior.sum()).log()[:, None].double(), 0)
    got = marginal_log_likelihood(model, x, k=30, class_prior=prior).per_example
    assert torch.allclose(got, expected)
    uniform = marginal_log_likelihood(model, x, k=30).per_example
    assert torch.allclose(uniform, torch.logsumexp(per_class, 0) - np.log(3))


def test_evaluate_marginal_reports_a_log_p_x_that_compares_with_an_unconditional_one(
        cvae_run: Path, tiny_run: Path) -> None:
    config = json.loads((cvae_run / "config.json").read_text())
    counts = config["data"]["class_counts"]
    assert len(counts) == 10 and sum(counts) == config["data"]["train_size"]
    r = run_cli("evaluate", str(cvae_run), "--k", "10", "--n", "60", "--marginal", "--json")
    assert r.returncode == 0, r.stderr
    assert "this one compares with an unconditional NLL" in r.stdout
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["class_prior"] == "the training set's class frequencies"
    # p(x) >= p(c_true) p(x|c_true) for each example, with the same noise: the marginal NLL
    # is at most the conditional one plus -log p(c) of the rarest class
    worst = -np.log(min(counts) / sum(counts))
    assert report["marginal_nll"] <= report["nll"] + worst + 1e-6
    assert report["marginal_nll"] > report["nll"]  # the label's information is not given
    r = run_cli("evaluate", str(tiny_run), "--marginal")
    assert r.returncode == 2 and "--marginal is for a conditional run" in r.stderr
