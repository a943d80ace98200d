"""User arrays as images (issue #16, item 13): which arrays are images, how they are brought to
(N, C, H, W) in [0, 1], their bin width; and a run on such an array that draws pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.cli import main
from vaekit.data import load_dataset

N = 40
_rng = np.random.default_rng(0)
UNIT = _rng.random((N, 1, 6, 5)).astype(np.float32)
LEVELS = _rng.integers(0, 256, (N, 1, 6, 5)).astype(np.uint8)
BINARY = (UNIT > 0.5).astype(np.float32)


# name -> (array, expected images, expected event shape, expected bin width,
#          the same examples as (N, C, H, W) in [0, 1] for images, else as given)
CASES: dict[str, tuple[np.ndarray, bool, tuple[int, ...], float | None, np.ndarray]] = {
    "(N,1,H,W) in [0,1]": (UNIT, True, (1, 6, 5), None, UNIT),
    "(N,3,H,W) in [0,1]": (UNIT.repeat(3, 1), True, (3, 6, 5), None, UNIT.repeat(3, 1)),
    "(N,H,W) in [0,1]": (UNIT[:, 0], True, (1, 6, 5), None, UNIT),
    "(N,H,W,3) channels-last": (UNIT.repeat(3, 1).transpose(0, 2, 3, 1), True, (3, 6, 5), None,
                                UNIT.repeat(3, 1)),
    "(N,H,W,1) channels-last": (UNIT.transpose(0, 2, 3, 1), True, (1, 6, 5), None, UNIT),
    "(N,1,H,W) uint8": (LEVELS, True, (1, 6, 5), 1 / 256, LEVELS / 255),
    "(N,H,W) uint8": (LEVELS[:, 0], True, (1, 6, 5), 1 / 256, LEVELS / 255),
    "(N,1,H,W) floats on the k/255 grid": ((LEVELS / 255).astype(np.float32), True, (1, 6, 5),
                                           1 / 256, LEVELS / 255),
    "(N,1,H,W) binary floats": (BINARY, True, (1, 6, 5), 1 / 2, BINARY),
    "(N,1,H,W) binary uint8": (BINARY.astype(np.uint8), True, (1, 6, 5), 1 / 2, BINARY),
    "(N,2,H,W) in [0,1]: 2 channels": (UNIT.repeat(2, 1), False, (2, 6, 5), None,
                                       UNIT.repeat(2, 1)),
    "(N,1,H,W) outside [0,1]": (UNIT * 2, False, (1, 6, 5), None, UNIT * 2),
    "(N,1,H,W) int64 levels": (LEVELS.astype(np.int64), False, (1, 6, 5), None, LEVELS),
    "(N,D) uint8: a vector": (LEVELS.reshape(N, -1), False, (30,), None, LEVELS.reshape(N, -1)),
    "(N,D) in [0,1]: a vector": (UNIT.reshape(N, -1), False, (30,), None, UNIT.reshape(N, -1)),
    "(N,A,B,C,D): 4-D examples": (UNIT.reshape(N, 1, 3, 2, 5), False, (1, 3, 2, 5), None,
                                  UNIT.reshape(N, 1, 3, 2, 5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_which_arrays_are_images_and_how_they_are_read(case: str, tmp_path: Path) -> None:
    array, images, shape, bin_width, expected = CASES[case]
    np.save(tmp_path / "x.npy", array)
    d = load_dataset(str(tmp_path / "x.npy"))
    assert (d.images, d.event_shape) == (images, shape)
    assert d.bin_width == (pytest.approx(bin_width) if bin_width else None)
    assert torch.allclose(d.split("all"), torch.from_numpy(expected).float(), atol=1e-6)


def test_the_splits_of_an_npz_are_judged_together(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", train=LEVELS[:30], test=LEVELS[30:])
    d = load_dataset(str(tmp_path / "d.npz"))
    assert d.images and d.bin_width == 1 / 256 and float(d.test.max()) <= 1
    np.savez(tmp_path / "mixed.npz", train=UNIT[:30], test=UNIT[30:] * 2)
    mixed = load_dataset(str(tmp_path / "mixed.npz"))
    assert not mixed.images and float(mixed.test.max()) > 1  # as given, every split


def test_a_run_on_an_image_array_draws_pictures_and_dequantizes_uint8(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    levels = np.random.default_rng(1).integers(0, 256, (120, 1, 8, 8)).astype(np.uint8)
    np.save(tmp_path / "x.npy", levels)
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--likelihood", "gaussian",
                 "--dequantize", "--hidden", "16", "--latent-dim", "2", "--epochs", "1",
                 "--quiet", "--out", str(run)]) == 0, capsys.readouterr().err
    for picture in ("samples.png", "reconstructions.png", "latent.png"):
        assert (run / picture).is_file(), picture
    data = json.loads((run / "config.json").read_text())["data"]
    assert data["images"] is True and data["dequantize"] == 1 / 256
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "r.png")]) == 0


def test_runs_recorded_as_not_images_keep_reading_their_arrays_as_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run made before the image rule recorded images=False: resuming and evaluating it read
    its array as it was trained on, (N, H, W) unscaled, not as (N, 1, H, W) images."""
    import vaekit
    from vaekit.config import Config

    path = tmp_path / "x.npy"
    np.save(path, UNIT[:, 0])
    config = Config(data=str(path), hidden=(8,), latent_dim=2, epochs=1)
    old = vaekit.train(config, data=load_dataset(str(path), images=False), out=tmp_path / "run",
                       progress=False, pictures=False)
    assert old.model.event_shape == (6, 5)
    resumed = vaekit.train(resume=tmp_path / "run", epochs=2, progress=False, pictures=False)
    assert resumed.model.event_shape == (6, 5) and len(resumed.history) == 2
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(path)]) == 0, \
        capsys.readouterr().err
