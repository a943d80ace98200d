"""The command line: every command on a trained run, and a clear error for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import MNIST_DIR, TINY, run_cli
from vaekit.cli import main


def test_module_and_help_work() -> None:
    r = run_cli("--help")
    assert r.returncode == 0 and "train" in r.stdout and "evaluate" in r.stdout
    r = run_cli("train", "--help")
    for flag in ("--data", "--data-dir", "--net", "--hidden", "--activation", "--latent-dim",
                 "--likelihood", "--variance", "--binarize", "--epochs", "--batch-size", "--lr",
                 "--lr-schedule", "--seed", "--config", "--out", "--resume"):
        assert flag in r.stdout, flag


def test_every_command_works_on_a_run_directory_alone(tiny_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sample", str(tiny_run), "-n", "16", "-o", str(tmp_path / "s.png")]) == 0
    assert main(["sample", str(tiny_run), "-n", "5", "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 1, 8, 8)
    assert main(["reconstruct", str(tiny_run), "-o", str(tmp_path / "r.png")]) == 0
    assert main(["encode", str(tiny_run), "--split", "val", "-o", str(tmp_path / "c.npy")]) == 0
    codes = np.load(tmp_path / "c.npy")
    assert codes.shape[1:] == (2, 2) and np.isfinite(codes).all()
    assert main(["interpolate", str(tiny_run), "-o", str(tmp_path / "i.png")]) == 0
    assert main(["score", str(tiny_run), "--k", "10", "-o", str(tmp_path / "a.npy")]) == 0
    assert (np.load(tmp_path / "a.npy") > 0).all()
    assert main(["info", str(tiny_run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tiny_run), "--k", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("elbo", "log_likelihood", "nll", "nll_stderr", "bits_per_dim", "kl",
                "reconstruction", "active_units", "k", "n", "seconds"):
        assert key in report, key
    assert report["elbo"] == pytest.approx(report["reconstruction"] - report["kl"], abs=1e-4)


def test_new_data_is_scored_and_encoded_row_by_row_in_file_order(
        tiny_run: Path, tmp_path: Path) -> None:
    import torch

    import vaekit
    from vaekit.data import binarize_fixed, load_dataset

    rows = binarize_fixed(load_dataset("digits").test[:23])
    np.save(tmp_path / "new.npy", rows.numpy())
    assert main(["score", str(tiny_run), "--data", str(tmp_path / "new.npy"), "--k", "5",
                 "-o", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (23,)
    assert main(["encode", str(tiny_run), "--data", str(tmp_path / "new.npy"),
                 "-o", str(tmp_path / "c.npz")]) == 0
    model = vaekit.load(tiny_run)
    expected = model.encode(binarize_fixed(rows)).mean.detach()
    assert torch.allclose(torch.from_numpy(np.load(tmp_path / "c.npz")["mean"]), expected)


def test_a_run_trained_on_a_relative_path_is_evaluated_from_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.json records where the data was as an absolute path."""
    from vaekit.data import binarize_fixed, load_dataset

    (tmp_path / "work").mkdir()
    np.save(tmp_path / "work" / "x.npy", binarize_fixed(load_dataset("digits").train).numpy())
    monkeypatch.chdir(tmp_path / "work")
    assert main(["train", "--data", "x.npy", "--out", "run", "--epochs", "1", "--quiet"]) == 0
    config = json.loads((tmp_path / "work" / "run" / "config.json").read_text())["config"]
    assert config["data"] == str(tmp_path / "work" / "x.npy")
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "work/run", "--split", "val"]) == 0


def test_config_file_values_are_used_and_flags_override_them(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("latent-dim: 3\nhidden: [16]\nepochs: 5\n")
    assert main(["train", "--config", str(tmp_path / "c.yaml"), "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "r")]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert saved["latent_dim"] == 3 and saved["hidden"] == [16] and saved["epochs"] == 1


def _bad_inputs(tmp: Path, run: Path) -> list[tuple[str, list[str], str]]:
    """(case, argv, text the one-line message must contain)."""
    nan = tmp / "nan.npy"
    np.save(nan, np.array([[0.1, np.nan], [0.2, 0.3]]))
    big = tmp / "big.npy"
    np.save(big, np.full((20, 4), 3.0))
    strings = tmp / "str.npy"
    np.save(strings, np.array([["a", "b"], ["c", "d"]]))
    empty = tmp / "empty.npy"
    np.save(empty, np.zeros((0, 4)))
    objects = tmp / "obj.npy"
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    junk = tmp / "junk.npy"
    junk.write_bytes(b"\x93NUMPY garbage" * 3)
    empty_dir = tmp / "empty_dir"
    empty_dir.mkdir()
    wrong_shape = tmp / "wrong_shape.npy"
    np.save(wrong_shape, np.random.rand(10, 7).astype(np.float32))
    yaml_bad = tmp / "typo.yaml"
    yaml_bad.write_text("latnet_dim: 3\n")
    return [
        ("unknown dataset", ["train", "--data", "cifar"], "unknown dataset"),
        ("missing data directory", ["train", "--data", "mnist", "--data-dir", str(tmp / "no")],
         "does not exist"),
        ("empty data directory", ["train", "--data", "mnist", "--data-dir", str(empty_dir)],
         "is empty"),
        ("missing array file", ["train", "--data", str(tmp / "none.npy")], "does not exist"),
        ("NaN in the array", ["train", "--data", str(nan), "--likelihood", "gaussian"], "NaN"),
        ("values outside [0,1] for bernoulli", ["train", "--data", str(big)], "[0, 1]"),
        ("string dtype", ["train", "--data", str(strings)], "numeric"),
        ("object dtype", ["train", "--data", str(objects)], "refuses"),
        ("empty array", ["train", "--data", str(empty)], "empty"),
        ("random bytes as .npy", ["train", "--data", str(junk)], "not a valid NumPy file"),
        ("wrong shape for the conv net", ["train", "--net", "conv", "--channels", "8,8,8,8"],
         "divisible by 16"),
        ("wrong shape for the model", ["evaluate", str(run), "--data", str(wrong_shape)],
         "shape"),
        ("unknown flag", ["train", "--latnet-dim", "3"], "unrecognized arguments"),
        ("misspelt config key", ["train", "--config", str(yaml_bad)], "did you mean"),
        ("zero latent size", ["train", "--latent-dim", "0"], "positive integer"),
        ("negative batch size", ["train", "--batch-size", "-5"], "positive integer"),
        ("zero hidden width", ["train", "--hidden", "0,10"], "positive integers"),
        ("non-finite learning rate", ["train", "--lr", "nan"], "finite"),
        ("negative learning rate", ["train", "--lr", "-1"], "> 0"),
        ("text as a size", ["train", "--epochs", "ten"], "not a valid int"),
        ("unknown activation", ["train", "--activation", "relu6"], "unknown activation"),
        ("unknown likelihood", ["train", "--likelihood", "poisson"], "unknown likelihood"),
        ("missing run directory", ["sample", str(tmp / "nope"), "-o", str(tmp / "x.png")],
         "does not exist"),
        ("zero samples", ["sample", str(run), "-n", "0", "-o", str(tmp / "x.png")],
         "positive integer"),
        ("bad output suffix", ["sample", str(run), "-o", str(tmp / "x.jpg")], ".png or .npy"),
        ("unknown device", ["sample", str(run), "--device", "gpu", "-o", str(tmp / "x.png")],
         "--device"),
        ("negative amortization-gap size", ["evaluate", str(run), "--amortization-gap", "-5"],
         "positive integer"),
        ("--out with --resume", ["train", "--resume", str(run), "--out", str(tmp / "o")],
         "cannot be combined"),
        ("unwritable output", ["sample", str(run), "-o", "/proc/x/s.png"], "could not write"),
        ("dequantize with bernoulli", ["train", "--dequantize"], "--dequantize"),
    ]


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own exit
        code = int(e.code or 0)
    return code, capsys.readouterr().err


def test_bad_input_gets_a_short_clear_error_and_no_traceback(
        tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failures = []
    for case, argv, expected in _bad_inputs(tmp_path, tiny_run):
        code, err = _run_in_process(argv, capsys)  # an uncaught exception fails the test
        lines = err.strip().splitlines()
        if not (code == 2 and expected in err and 1 <= len(lines) <= 2
                and lines[0].startswith("vaekit: error:")):
            failures.append(f"{case}: exit {code}: {err[-400:]}")
    assert not failures, "\n".join(failures)


def test_errors_reach_the_shell_as_one_line_without_traceback(tmp_path: Path) -> None:
    r = run_cli("train", "--data", "cifar")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("vaekit: error: unknown dataset 'cifar'")


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="needs ../shared/data/mnist")
def test_mnist_trains_from_its_idx_files(tmp_path: Path) -> None:
    r = run_cli("train", "--data", "mnist", "--data-dir", str(MNIST_DIR), "--out",
                str(tmp_path / "m"), *TINY[:-3], "--epochs", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["event_shape"] == [1, 28, 28] and cfg["data"]["binarize"] == "dynamic"
