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
    # the latest report stays in the run directory, for `vaekit report`
    assert json.loads((tiny_run / "evaluation.json").read_text()) == report


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
    assert main(["evaluate", "work/run", "--split", "val", "--k", "2"]) == 0


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
    ae_run = tmp / "ae"
    assert main(["train", "--model", "ae", "--out", str(ae_run), *TINY]) == 0
    out_of_range = tmp / "range.npy"
    np.save(out_of_range, np.full((10, 1, 8, 8), 2.0, dtype=np.float32))
    nan_images = tmp / "nan_images.npy"
    np.save(nan_images, np.full((10, 1, 8, 8), np.nan, dtype=np.float32))
    junk = tmp / "junk.npy"
    junk.write_bytes(b"\x93NUMPY garbage" * 3)
    empty_dir = tmp / "empty_dir"
    empty_dir.mkdir()
    wrong_shape = tmp / "wrong_shape.npy"
    np.save(wrong_shape, np.random.rand(10, 7).astype(np.float32))
    yaml_bad = tmp / "typo.yaml"
    yaml_bad.write_text("latnet_dim: 3\n")
    model_typo = tmp / "model_typo.yaml"
    model_typo.write_text("model: hvae\nmodel_options: {hvae: {latnets: [8, 4]}}\n")
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
        # the model contract's options
        ("unknown model", ["train", "--model", "ladder"], "unknown model"),
        ("a group without a width", ["train", "--model", "hvae", "--hvae-latents", "8,4",
                                     "--hvae-widths", "64"], "one width per latent group"),
        ("zero group size", ["train", "--model", "hvae", "--hvae-latents", "8,0",
                             "--hvae-widths", "64,32"], "positive integers"),
        ("text as a group size", ["train", "--model", "hvae", "--hvae-latents", "eight"],
         "not a valid"),
        ("a one-layer flag on a hierarchy", ["train", "--model", "hvae", "--latent-dim", "16"],
         "--latent-dim is an option of the one-layer model"),
        ("a one-layer prior on a hierarchy", ["train", "--model", "hvae", "--prior", "vamp"],
         "--prior is an option of the one-layer model"),
        ("a hierarchy's option on the one-layer model", ["train", "--hvae-latents", "8,4"],
         "apply to --model hvae"),
        ("unknown model option in a file", ["train", "--config", str(model_typo)],
         "did you mean 'latents'"),
        ("a conv hierarchy on vectors", ["train", "--model", "hvae-conv", "--data",
                                         str(wrong_shape)], "needs images"),
        ("a conv hierarchy too deep for 8x8", ["train", "--model", "hvae-conv",
                                               "--hvae-conv-widths", "8,8,8,8,8",
                                               "--hvae-conv-groups", "1,1,1,1,1"],
         "divisible by 16"),
        ("a resolution without a group count", ["train", "--model", "hvae-conv",
                                                "--hvae-conv-groups", "1,1"],
         "one count per resolution"),
        ("EMA decay of 1", ["train", "--ema", "1"], "--ema must be a decay in [0, 1)"),
        ("negative skip threshold", ["train", "--skip-threshold", "-1"], "--skip-threshold"),
        ("negative temperature", ["sample", str(run), "--temperature", "-1", "-o",
                                  str(tmp / "t.png")], "--temperature"),
        ("evaluate on an autoencoder", ["evaluate", str(ae_run)], "has no likelihood, so no "
         "ELBO"),
        ("score with an autoencoder", ["score", str(ae_run), "-o", str(tmp / "s.npy")],
         "no likelihood to score"),
        ("sample an autoencoder", ["sample", str(ae_run), "-o", str(tmp / "s.png")],
         "vaekit fit-prior"),
        ("quality of an autoencoder", ["quality", str(ae_run)], "vaekit fit-prior"),
        ("a prior for an autoencoder", ["train", "--model", "ae", "--prior", "mog"],
         "--prior is an option of the one-layer model"),
        ("free bits for an autoencoder", ["train", "--model", "ae", "--free-bits", "0.5"],
         "--free-bits does not apply to --model ae"),
        ("the IWAE bound for an autoencoder", ["train", "--model", "ae", "--objective", "iwae"],
         "no KL term and no likelihood"),
        ("AIS with zero steps", ["evaluate", str(run), "--ais-steps", "0"], "--ais-steps"),
        ("AIS with negative chains", ["evaluate", str(run), "--ais-steps", "2", "--ais-chains",
                                      "-3"], "--ais-chains"),
        ("AIS with zero leapfrog steps", ["evaluate", str(run), "--ais-steps", "2",
                                          "--ais-leapfrog", "0"], "--ais-leapfrog"),
        ("BDMC with zero examples", ["evaluate", str(run), "--bdmc", "0"], "--bdmc"),
        ("BDMC on a model without a sampler", ["evaluate", str(ae_run), "--bdmc", "5"],
         "no prior to sample from"),
        ("AIS on a model without a density over continuous latents",
         ["evaluate", str(ae_run), "--ais-steps", "5"], "need a density over continuous latents"),
        ("quality with neither run nor samples", ["quality"], "either a run directory or"),
        ("quality: samples of the wrong shape", ["quality", "--samples", str(big), "--data",
                                                 "digits"], "samples of shape (20, 4)"),
        ("quality: samples out of range", ["quality", "--samples", str(out_of_range),
                                           "--data", "digits"], "pixels lie in [0, 1]"),
        ("quality: samples with NaN", ["quality", "--samples", str(nan_images), "--data",
                                       "digits"], "NaN"),
        ("quality: samples not .npy", ["quality", "--samples", str(tmp / "s.csv"), "--data",
                                       "digits"], "expected a .npy file"),
        ("quality: missing samples file", ["quality", "--samples", str(tmp / "none.npy"),
                                           "--data", "digits"], "does not exist"),
        ("quality: pickled samples", ["quality", "--samples", str(objects), "--data",
                                      "digits"], "not a readable .npy array"),
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


# ---------------------------------------------------------------- help texts

@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "reconstruct", "encode",
                                     "interpolate", "score", "quality", "fit-prior",
                                     "info"])
def test_help_states_each_default_once_and_never_none(command: str) -> None:
    from vaekit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]  # type: ignore[union-attr]
    text = sub.format_help()
    assert "None" not in text and "==SUPPRESS==" not in text
    entries, current = [], ""
    for line in text.splitlines():
        if line.startswith("  -"):  # a new option's entry
            entries.append(current)
            current = ""
        current += line + " "
    entries.append(current)
    twice = [e.split()[0] for e in entries if " ".join(e.split()).count("(default") > 1]
    assert not twice, f"options whose help gives a default twice: {twice}"


def test_help_defaults_are_the_defaults_used() -> None:
    from vaekit.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["train"]).flush_denormal is True
    assert parser.parse_args(["evaluate", "RUN"]).k == 1000
    train_help = next(a for a in parser._actions if a.dest == "command").choices[  # type: ignore[union-attr]
        "train"].format_help()
    assert "(default: on)" in " ".join(train_help.split())


# ---------------------------------------------------------------- evaluate's labels

def test_evaluate_defaults_to_an_importance_weighted_estimate_and_labels_it(
        tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tiny_run), "--n", "20", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["k"] == 1000 and report["estimate"].startswith("importance-weighted")
    assert "log p(x), importance-weighted (k=1000)" in out and "NLL (k=1000)" in out


def test_a_single_sample_evaluation_says_it_is_no_likelihood_estimate(
        tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tiny_run), "--k", "1", "--n", "20", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["k"] == 1 and "not a likelihood estimate" in report["estimate"]
    rows = out.strip().splitlines()[1:-1]
    assert any("single-sample estimate (k=1)" in r for r in rows)
    assert any("not a likelihood estimate" in r for r in rows)
    assert not any(r.split()[0] in ("NLL", "log") for r in rows), rows  # no row names it NLL


def test_evaluate_adds_ais_and_bdmc_with_their_documented_keys(
        tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(tiny_run), "--n", "4", "--k", "10", "--ais-steps", "3",
                 "--ais-chains", "2", "--ais-leapfrog", "2", "--bdmc", "3", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    for key in ("ais_log_likelihood", "ais_nll", "ais_nll_stderr", "ais_acceptance",
                "ais_steps", "ais_chains", "ais_leapfrog", "ais_start", "ais_seconds",
                "bdmc_n", "bdmc_steps", "bdmc_lower", "bdmc_upper", "bdmc_gap",
                "bdmc_gap_stderr", "bdmc_acceptance_forward", "bdmc_acceptance_reverse",
                "bdmc_seconds"):
        assert key in report, key
        assert f"`{key}`" in (Path(__file__).parents[1] / "docs" / "ais.md").read_text(), key
    assert report["ais_steps"] == 3 and report["ais_chains"] == 2 and report["bdmc_n"] == 3
    assert report["bdmc_gap"] == pytest.approx(report["bdmc_upper"] - report["bdmc_lower"])
    assert "NLL, AIS (T=3, M=2)" in out and "BDMC on 3 simulated examples" in out


# ---------------------------------------------------------------- -o and the files a command reads

def _binary_rows(n: int = 12) -> np.ndarray:
    from vaekit.data import binarize_fixed, load_dataset

    return binarize_fixed(load_dataset("digits").test[:n]).numpy()


#: argv of each command that writes -o, given the run, a data file and the output.
OUTPUT_COMMANDS = {
    "sample": lambda run, data, out: ["sample", run, "-n", "4", "-o", out],
    "reconstruct": lambda run, data, out: ["reconstruct", run, "--data", data, "-o", out],
    "encode": lambda run, data, out: ["encode", run, "--data", data, "-o", out],
    "interpolate": lambda run, data, out: ["interpolate", run, "--data", data, "--steps", "3",
                                           "-o", out],
    "score": lambda run, data, out: ["score", run, "--data", data, "--k", "2", "-o", out],
}


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_no_command_writes_over_a_file_it_reads(
        command: str, tiny_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    data = tmp_path / "p2.npy"
    np.save(data, _binary_rows())
    (tmp_path / "alias.npy").symlink_to(data)
    before = {p: p.read_bytes() for p in [data, *run.iterdir()]}
    argv = OUTPUT_COMMANDS[command]
    outputs = [run / "model.safetensors", run / "config.json", run / "new.npy"]
    if command != "sample":
        outputs += [data, tmp_path / "alias.npy"]
    for out in outputs:
        for force in ([], ["--force"]):
            code, err = _run_in_process(argv(str(run), str(data), str(out)) + force, capsys)
            assert code == 2 and err.startswith("vaekit: error: -o "), (out, err)
            assert "reads" in err and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(run.iterdir()) == sorted(p for p in before if p.parent == run)


@pytest.mark.parametrize("command", sorted(OUTPUT_COMMANDS))
def test_an_existing_output_is_replaced_only_with_force(
        command: str, tiny_run: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.npy"
    np.save(data, _binary_rows())
    out = tmp_path / "out.npy"
    out.write_bytes(b"yesterday's results")
    argv = OUTPUT_COMMANDS[command](str(tiny_run), str(data), str(out))
    code, err = _run_in_process(argv, capsys)
    assert code == 2 and "already exists; pass --force" in err
    assert out.read_bytes() == b"yesterday's results"
    assert main([*argv, "--force"]) == 0
    assert np.load(out).shape[0] > 0


def test_the_runs_own_data_file_is_protected_without_data_flag(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "x.npy"
    np.save(data, _binary_rows(200))
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--hidden", "8",
                 "--latent-dim", "2", "--epochs", "1", "--quiet"]) == 0
    before = data.read_bytes()
    code, err = _run_in_process(["score", str(run), "--k", "2", "-o", str(data), "--force"],
                                capsys)
    assert code == 2 and "which this command reads" in err
    assert data.read_bytes() == before


# ---------------------------------------------------------------- what the outputs hold

def test_interpolate_decodes_the_straight_line_between_the_two_posterior_means(
        tiny_run: Path, tmp_path: Path) -> None:
    import torch

    import vaekit

    rows = _binary_rows()
    np.save(tmp_path / "d.npy", rows)
    assert main(["interpolate", str(tiny_run), "--data", str(tmp_path / "d.npy"),
                 "--pair", "3", "7", "--steps", "5", "-o", str(tmp_path / "line.npy")]) == 0
    frames = torch.from_numpy(np.load(tmp_path / "line.npy"))
    model = vaekit.load(tiny_run)
    with torch.no_grad():
        mu = model.encode(torch.from_numpy(rows[[3, 7]])).mean  # (2, L)

        def decode(z: torch.Tensor) -> torch.Tensor:
            return model.likelihood.mean(model.decoder(z))
        t = torch.tensor([0.25, 0.5, 0.75])[:, None]
        line = decode((1 - t) * mu[0] + t * mu[1])
        ends = decode(mu)
    assert frames.shape == (5, *rows.shape[1:])
    torch.testing.assert_close(frames[0], ends[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(frames[-1], ends[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(frames[1:-1], line, rtol=0, atol=1e-6)


def test_reconstruct_writes_each_input_beside_its_reconstruction(
        tiny_run: Path, tmp_path: Path) -> None:
    import torch

    import vaekit

    rows = _binary_rows()
    np.save(tmp_path / "d.npy", rows)
    assert main(["reconstruct", str(tiny_run), "--data", str(tmp_path / "d.npy"), "--n", "5",
                 "-o", str(tmp_path / "r.npy")]) == 0
    pairs = np.load(tmp_path / "r.npy")
    assert pairs.shape == (5, 2, *rows.shape[1:])
    np.testing.assert_array_equal(pairs[:, 0], rows[:5])
    with torch.no_grad():
        expected = vaekit.load(tiny_run).reconstruct(torch.from_numpy(rows[:5])).numpy()
    np.testing.assert_allclose(pairs[:, 1], expected, rtol=0, atol=1e-6)


def test_the_reconstruction_picture_marks_input_and_reconstruction_rows(
        tmp_path: Path) -> None:
    import matplotlib.pyplot as plt
    import torch

    from vaekit.views import plots

    x = torch.rand(16, 1, 8, 8)
    plots.save_reconstructions(x, x.clone(), tmp_path / "labelled.png")  # perfect reconstruction
    plots.save_grid(torch.cat([x[:8], x[:8], x[8:], x[8:]]), tmp_path / "bare.png")
    labelled = plt.imread(tmp_path / "labelled.png")[..., :3]
    bare = plt.imread(tmp_path / "bare.png")[..., :3]
    margin = labelled.shape[1] - bare.shape[1]
    assert margin >= 30 and labelled.shape[0] == bare.shape[0]
    np.testing.assert_allclose(labelled[:, margin:], bare, atol=1 / 255)  # the images unchanged
    scale = plots.display_scale(8)  # rows of 8-pixel images under 1 pixel of padding
    tops = [scale + r * 9 * scale for r in range(4)]
    bands = [labelled[top:top + 8 * scale, :margin] for top in tops]
    for band in bands:
        assert (band < 0.5).any(), "every row has its label in the margin"
    assert not np.allclose(bands[0], bands[1]), "input and reconstruction rows look different"
    np.testing.assert_allclose(bands[0], bands[2], atol=1 / 255)  # the same mark on each pair
    np.testing.assert_allclose(bands[1], bands[3], atol=1 / 255)
