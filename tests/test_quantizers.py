"""The quantizers of a vector-quantised model, for every implementation: codes in the code space,
straight-through gradients, indices that `lookup` inverts; then each one's own promises (the
nearest code, the EMA update, k-means initialisation, restarts against collapse, FSQ's grid)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from vaekit.errors import ConfigError
from vaekit.quantizers import (
    QUANTIZERS,
    FiniteScalarQuantizer,
    Quantizer,
    VectorQuantizer,
    build_quantizer,
    code_statistics,
)

OPTIONS = {"vq": {"codebook_size": 16, "code_dim": 3}, "fsq": {"levels": (4, 3, 5)}}


@pytest.fixture(params=sorted(QUANTIZERS))
def quantizer(request: pytest.FixtureRequest) -> Quantizer:
    torch.manual_seed(0)
    return build_quantizer(request.param, **OPTIONS[request.param])


def _grid(batch: int = 4, dim: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, dim, 5, 5, generator=torch.Generator().manual_seed(seed))


def test_every_quantizer_is_specified_here() -> None:
    assert set(OPTIONS) == set(QUANTIZERS)


def test_codes_are_in_the_code_space_and_lookup_inverts_the_indices(quantizer: Quantizer) -> None:
    out = quantizer(_grid())
    assert out.codes.shape == (4, 3, 5, 5) and out.indices.shape == (4, 5, 5)
    assert out.indices.dtype == torch.int64 and out.aux_loss.shape == (4,)
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < quantizer.codebook_size
    torch.testing.assert_close(quantizer.lookup(out.indices), out.codes.detach())


def test_the_gradient_passes_through_to_the_encoder(quantizer: Quantizer) -> None:
    z = _grid().requires_grad_()
    quantizer(z).codes.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and (z.grad.abs() > 0).all()


def test_evaluation_changes_nothing(quantizer: Quantizer) -> None:
    state = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer.eval()
    quantizer(_grid())
    for k, v in quantizer.state_dict().items():
        torch.testing.assert_close(v, state[k])


# ------------------------------------------------------------------ the learned codebook


def test_each_vector_takes_its_nearest_code() -> None:
    vq = VectorQuantizer(16, 3).eval()
    z = _grid()
    out = vq(z)
    flat = z.movedim(1, -1).reshape(-1, 3)
    expected = torch.cdist(flat, vq.codebook).argmin(1)
    assert torch.equal(out.indices.reshape(-1), expected)
    # straight-through: the decoder's gradient reaches z_e unchanged
    z.requires_grad_()
    g = torch.randn(4, 3, 5, 5)
    (vq(z).codes * g).sum().backward()
    torch.testing.assert_close(z.grad, g)


def test_the_commitment_loss_is_beta_times_the_squared_error() -> None:
    vq = VectorQuantizer(16, 3, commitment=0.3).eval()
    z = _grid()
    out = vq(z)
    expected = 0.3 * (z - out.codes.detach()).pow(2).sum((1, 2, 3))
    torch.testing.assert_close(out.aux_loss, expected)


def test_the_ema_update_moves_each_code_to_its_vectors_mean() -> None:
    """With decay 0 (and no smoothing worth counting) one update sets every used code to the
    mean of the vectors assigned to it; unused codes keep their statistics' value."""
    vq = VectorQuantizer(8, 2, decay=0.0, restart_below=0.0, eps=1e-12)
    vq.initialized.fill_(True)  # keep the random codebook: the update alone is tested
    z = _grid(dim=2)
    flat = z.movedim(1, -1).reshape(-1, 2)
    assign = vq.nearest(flat)
    with torch.enable_grad():
        vq.train()(z)
    for k in assign.unique():
        torch.testing.assert_close(vq.codebook[k], flat[assign == k].mean(0))


def test_the_codebook_starts_as_k_means_of_the_first_batch() -> None:
    centers = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    g = torch.Generator().manual_seed(0)
    points = centers[torch.arange(300) % 3] + 0.1 * torch.randn(300, 2, generator=g)
    vq = VectorQuantizer(3, 2, decay=0.99).train()
    vq(points.view(300, 2, 1))
    found = torch.cdist(centers, vq.codebook).min(1).values
    assert (found < 0.1).all(), vq.codebook


def _collapsed(restart_below: float) -> VectorQuantizer:
    """A codebook with every code but one far from the data, its moving counts near 0."""
    vq = VectorQuantizer(8, 2, restart_below=restart_below).train()
    vq.initialized.fill_(True)
    vq.codebook.copy_(torch.full((8, 2), 100.0))
    vq.codebook[0] = 0.0
    vq.sums.copy_(vq.codebook)
    vq.counts.fill_(1e-4)
    return vq


def test_dead_codes_are_restarted_and_usage_rises() -> None:
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(64, 2, 1, generator=g) for _ in range(5)]
    usage = {}
    for threshold in (0.0, 1e-3):
        vq = _collapsed(threshold)
        for x in batches:
            vq(x)
        usage[threshold] = code_statistics(vq.eval()(batches[0]).indices, 8)["usage"]
    assert usage[0.0] == 1 / 8  # without restarts the collapse stays
    assert usage[1e-3] >= 6 / 8


def test_a_codebook_larger_than_the_first_batch_warns_with_the_usage() -> None:
    vq = VectorQuantizer(64, 2).train()
    with pytest.warns(UserWarning, match=r"64 codes but the first batch only 10 vectors.*16%"):
        vq(torch.randn(10, 2, 1))


def test_the_codebook_loss_trains_the_codebook_by_gradient() -> None:
    vq = VectorQuantizer(16, 3, update="loss").train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vq(_grid()).aux_loss.sum().backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    assert "codebook" not in dict(VectorQuantizer(16, 3).named_parameters())


# ------------------------------------------------------------------ finite scalar quantisation


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (2, 3), (4,)])
def test_fsq_enumerates_a_code_space_of_the_levels_product(levels: tuple[int, ...]) -> None:
    fsq = FiniteScalarQuantizer(levels)
    k = math.prod(levels)
    assert fsq.codebook_size == k and fsq.code_dim == len(levels)
    every = torch.arange(k).view(1, k)
    codes = fsq.lookup(every)  # (1, D, k): every code once
    assert len({tuple(c) for c in codes[0].T.tolist()}) == k
    assert codes.abs().max() <= 1
    # a point inside each code's rounding cell (moved 0.3 towards the grid's centre), taken
    # back through the bound, quantizes to that code
    width = torch.tensor([v // 2 for v in levels], dtype=torch.float64).view(1, -1, 1)
    offset = torch.tensor([0.5 if v % 2 == 0 else 0.0 for v in levels],
                          dtype=torch.float64).view(1, -1, 1)
    half = (torch.tensor(levels, dtype=torch.float64).view(1, -1, 1) - 1) * (1 - 1e-3) / 2
    q = codes.double() * width
    b = q - 0.3 * torch.sign(q + offset)
    shift = torch.where(offset < half, torch.atanh((offset / half).clamp(max=0.5)), 0.0)
    z = torch.atanh((b + offset) / half) - shift
    assert torch.equal(fsq(z.float()).indices, every)


@pytest.mark.parametrize("levels", [(8, 1, 5), (0,), (), (2.5, 3)])
def test_fsq_refuses_a_level_below_two_in_one_line(levels: tuple) -> None:
    with pytest.raises(ConfigError, match="--levels must be integers >= 2"):
        FiniteScalarQuantizer(levels)


def test_an_unknown_quantizer_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose from: vq, fsq"):
        build_quantizer("lfq")
