"""The training loop: reproducible from a seed, resumable exactly, and saved runs reload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit
from vaekit import Config
from vaekit.data import load_dataset
from vaekit.io import load_tensors

SMALL = Config(hidden=(32,), latent_dim=2, epochs=3, batch_size=50)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run / "checkpoint.safetensors")[0]


def test_the_same_seed_gives_identical_runs(tmp_path: Path) -> None:
    a = vaekit.train(SMALL, out=tmp_path / "a", progress=False, pictures=False)
    b = vaekit.train(SMALL, out=tmp_path / "b", progress=False, pictures=False)
    vaekit.train(SMALL.replace(seed=1), out=tmp_path / "c", progress=False, pictures=False)
    wa, wb, wc = _weights(tmp_path / "a"), _weights(tmp_path / "b"), _weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa if k.startswith("model."))
    assert [r["train_elbo"] for r in a.history] == [r["train_elbo"] for r in b.history]


def test_resuming_continues_exactly_where_the_run_stopped(tmp_path: Path) -> None:
    whole = vaekit.train(SMALL.replace(epochs=4), out=tmp_path / "whole", progress=False,
                         pictures=False)
    vaekit.train(SMALL.replace(epochs=2), out=tmp_path / "part", progress=False, pictures=False)
    resumed = vaekit.train(resume=tmp_path / "part", epochs=4, progress=False, pictures=False)
    w1, w2 = _weights(tmp_path / "whole"), _weights(tmp_path / "part")
    assert all(torch.equal(w1[k], w2[k]) for k in w1 if not k.startswith("rng"))
    assert [r["val_elbo"] for r in whole.history] == [r["val_elbo"] for r in resumed.history]
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_resume_refuses_to_change_the_model(tmp_path: Path) -> None:
    vaekit.train(SMALL.replace(epochs=1), out=tmp_path / "r", progress=False, pictures=False)
    with pytest.raises(vaekit.VaekitError, match="cannot change --latent-dim"):
        vaekit.train(resume=tmp_path / "r", latent_dim=5)


def test_save_then_load_gives_identical_outputs(tmp_path: Path) -> None:
    result = vaekit.train(SMALL.replace(epochs=1), out=tmp_path / "r", progress=False)
    loaded = vaekit.load(tmp_path / "r")
    x = load_dataset("digits").test[:10]
    torch.manual_seed(3)
    a = result.model.elbo(x)["elbo"]
    torch.manual_seed(3)
    b = loaded.elbo(x)["elbo"]
    assert torch.equal(a, b)
    assert torch.equal(result.model.reconstruct(x), loaded.reconstruct(x))
    for name in ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
                 "samples.png", "reconstructions.png", "curves.png"):
        assert (tmp_path / "r" / name).is_file(), name


def test_fit_an_array_in_a_few_lines(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    model = vaekit.fit(x, likelihood="gaussian", latent_dim=2, hidden=(16,), epochs=3,
                       out=tmp_path / "fit")
    assert model.sample(4).shape == (4, 6)
    assert model.encode(torch.from_numpy(x[:5])).mean.shape == (5, 2)
    again = vaekit.load(tmp_path / "fit")
    assert torch.equal(again.reconstruct(torch.from_numpy(x[:5])),
                       model.reconstruct(torch.from_numpy(x[:5])))
    vaekit.save(model, tmp_path / "copy")
    assert torch.equal(vaekit.load(tmp_path / "copy").decoder[0][0].weight,
                       model.decoder[0][0].weight)


def test_kl_warmup_and_schedules_train(tmp_path: Path) -> None:
    for schedule in ("cosine", "step"):
        r = vaekit.train(SMALL.replace(kl_warmup=2, lr_schedule=schedule), out=tmp_path / schedule,
                         progress=False, pictures=False)
        assert r.history[-1]["lr"] < SMALL.lr
        assert r.history[-1]["train_elbo"] > r.history[0]["train_elbo"] - 5


def test_beta_weights_the_kl(tmp_path: Path) -> None:
    plain = vaekit.train(SMALL, out=tmp_path / "b1", progress=False, pictures=False)
    heavy = vaekit.train(SMALL.replace(beta=4.0), out=tmp_path / "b4", progress=False,
                         pictures=False)
    assert heavy.history[-1]["train_kl"] < 0.8 * plain.history[-1]["train_kl"]


def test_fit_without_out_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    vaekit.fit(np.random.default_rng(0).random((100, 4)).astype(np.float32), epochs=1,
               hidden=(8,), latent_dim=2)
    assert list(tmp_path.iterdir()) == []


def test_static_binarization_fixes_the_training_images(tmp_path: Path) -> None:
    r = vaekit.train(SMALL.replace(binarize="static", epochs=1), out=tmp_path / "s",
                     progress=False, pictures=False)
    assert np.isfinite(r.history[0]["val_elbo"])


@pytest.mark.parametrize("skip_at", [None, 3])
def test_the_lean_adam_step_is_torchs_adam_step(skip_at: int | None) -> None:
    """AdamStep calls torch's fused kernel directly: the parameters and the optimizer state
    are bit-identical to optimizer.step()'s, with learning-rate changes, a parameter that gets
    no gradient, and a step skipped through found_inf."""
    from vaekit.train.adam import AdamStep

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3),
                                  torch.nn.Linear(2, 2))  # the last layer gets no gradient
        opt = torch.optim.Adam(net.parameters(), lr=1e-2, fused=True)
        opt.found_inf = torch.zeros(())  # type: ignore[attr-defined]
        return net, opt

    (net_a, opt_a), (net_b, opt_b) = make(), make()
    lean = AdamStep(opt_b)
    torch_steps = {"n": 0}
    real_step = opt_b.step

    def counted_step() -> None:
        torch_steps["n"] += 1
        real_step()

    opt_b.step = counted_step  # type: ignore[method-assign]
    x = torch.randn(6, 5)
    for i in range(6):
        for net, opt, step in ((net_a, opt_a, opt_a.step), (net_b, opt_b, lean)):
            opt.param_groups[0]["lr"] = 1e-2 / (i + 1)
            opt.found_inf.fill_(float(i == skip_at))  # type: ignore[attr-defined]
            opt.zero_grad(set_to_none=True)
            net[:3](x).square().sum().backward()
            step()
    assert torch_steps["n"] == 1  # only the first, which creates the state
    for a, b in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(opt_a.state.values(), opt_b.state.values(), strict=True):
        assert all(torch.equal(a[key], b[key]) for key in ("step", "exp_avg", "exp_avg_sq"))


def test_compiled_training_is_one_graph_and_trains_the_same_model(tmp_path: Path) -> None:
    """--compile traces the whole loss as one graph (a graph break would cost a second call and
    its overhead at every step) and trains the same model as eager execution, up to the float
    rounding of fused kernels."""
    import warnings

    from vaekit.train.loop import LossModule

    config = SMALL.replace(epochs=1)
    model = vaekit.build_model(config, (64,))
    x = torch.bernoulli(torch.rand(5, 64))
    loss_module = LossModule(model)
    loss_module(x, torch.zeros(1, 5, 2), 1.0)  # the trainer's warm-up: torch's KL table
    explained = torch._dynamo.explain(loss_module)(x, torch.randn(1, 5, 2), torch.tensor(1.0))
    assert explained.graph_break_count == 0, explained.break_reasons

    eager = vaekit.train(config, save=False, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback to eager
        compiled = vaekit.train(config.replace(compile=True), save=False, progress=False)
    for a, b in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-3)


@pytest.mark.parametrize("flag", ["--flush-denormal", "--no-flush-denormal"])
def test_a_training_process_flushes_subnormals_on_every_thread(tmp_path: Path, flag: str) -> None:
    """Adam's moments of always-zero inputs decay into subnormal floats, which are slow. The
    flush is a per-thread flag, so it must be set before torch starts its threads: a large
    product, which torch splits across threads, shows whether every thread has it."""
    import subprocess
    import sys

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormal floats")
    torch.set_flush_denormal(False)
    script = ("import sys, torch; from vaekit.cli import entry; torch.set_num_threads(2); "
              "code = entry(); "
              "print(int((torch.full((1 << 20,), 1e-40) * 1.0).count_nonzero()), code)")
    r = subprocess.run([sys.executable, "-c", script, "train", "--out", str(tmp_path / "r"),
                        "--hidden", "16", "--latent-dim", "2", "--epochs", "1", "--quiet",
                        flag], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    nonzero, code = map(int, r.stdout.split()[-2:])
    assert code == 0
    assert (nonzero == 0) == (flag == "--flush-denormal")


def test_a_call_from_python_leaves_the_callers_float_arithmetic_alone(tmp_path: Path) -> None:
    from vaekit.cli import main

    assert main(["train", "--out", str(tmp_path / "r"), "--hidden", "16", "--latent-dim", "2",
                 "--epochs", "1", "--quiet"]) == 0
    vaekit.train(SMALL.replace(epochs=1), progress=False, save=False)
    assert int((torch.full((1 << 20,), 1e-40) * 1.0).count_nonzero()) == 1 << 20
