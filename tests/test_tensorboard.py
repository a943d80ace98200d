"""`--tensorboard`: the epoch's metrics as scalars, image grids, the config as text; a resumed
run continues the same stream with no step shown twice; a clear error where it is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import TINY
from vaekit.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)


def _events(run: Path) -> EventAccumulator:
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0,
                                                                       "scalars": 0})
    events.Reload()
    return events


def _steps(events: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in events.Scalars(tag)]


def test_every_epoch_is_written_with_images_and_the_config(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY, "--epochs", "3", "--tensorboard"]) == 0
    events = _events(run)
    tags = events.Tags()
    for tag in ("elbo/train", "elbo/val", "reconstruction/train", "kl/train", "lr",
                "skipped_steps"):
        assert _steps(events, tag) == [1, 2, 3], tag
    metrics = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    import json

    last = json.loads(metrics[-1])
    assert events.Scalars("elbo/train")[-1].value == pytest.approx(last["train_elbo"], rel=1e-6)
    # the first and the last epoch have grids (and every 5th)
    assert [e.step for e in events.Images("samples")] == [1, 3]
    assert [e.step for e in events.Images("reconstructions")] == [1, 3]
    assert "config/text_summary" in tags["tensors"]


def test_a_hierarchy_writes_the_kl_of_each_group(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--model", "hvae", "--hvae-latents", "4,2",
                 "--hvae-widths", "32,16", "--epochs", "1", "--batch-size", "50", "--quiet",
                 "--tensorboard"]) == 0
    scalars = _events(run).Tags()["scalars"]
    assert {"kl_group/val_1", "kl_group/val_2", "active_units/val_1"} <= set(scalars)


def test_a_conditional_run_draws_a_row_per_class(tmp_path: Path) -> None:
    from vaekit.views.plots import PER_CLASS

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY, "--epochs", "1", "--tensorboard",
                 "--condition", "label"]) == 0
    (picture,) = _events(run).Images("samples")
    plain = tmp_path / "plain"
    assert main(["train", "--out", str(plain), *TINY, "--epochs", "1", "--tensorboard"]) == 0
    (grid,) = _events(plain).Images("samples")
    # ten rows of ten, named in a margin, against the unconditional grid of 8 x 8
    assert picture.height > grid.height and picture.width > grid.width * PER_CLASS / 8


def test_a_resume_continues_the_stream_without_duplicated_steps(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY, "--tensorboard"]) == 0
    # An interrupted run had logged epoch 3 before its checkpoint: the resume must hide it.
    stale = SummaryWriter(str(run / "tensorboard"))
    stale.add_scalar("elbo/train", 999.0, 3)
    stale.close()
    assert main(["train", "--resume", str(run), "--epochs", "4", "--quiet"]) == 0
    events = _events(run)
    assert _steps(events, "elbo/train") == [1, 2, 3, 4]
    assert all(e.value != 999.0 for e in events.Scalars("elbo/train"))


def test_no_event_files_without_the_flag(tiny_run: Path) -> None:
    assert not (tiny_run / "tensorboard").exists()


def test_a_missing_tensorboard_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *TINY, "--tensorboard"]) != 0
    err = capsys.readouterr().err.strip()
    assert "pip install 'vaekit[tensorboard]'" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (run / "checkpoint.safetensors").exists()
