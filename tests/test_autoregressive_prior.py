"""The autoregressive prior over code grids (`vaekit.priors.autoregressive`): a normalised,
causal p(c) whose samples follow its probabilities, which fits codes by maximum likelihood and
refuses what is not a code grid."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vaekit.errors import ConfigError, DataError
from vaekit.priors.autoregressive import CodeTransformer


def _prior(positions: int = 3, categories: int = 3, seed: int = 0) -> CodeTransformer:
    torch.manual_seed(seed)
    prior = CodeTransformer(positions, categories, width=16, depth=2, heads=2)
    with torch.no_grad():  # conditionals far from uniform, so that every check can fail
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return prior


def _every_grid(positions: int, categories: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(categories), repeat=positions)))


def test_the_probabilities_of_every_grid_sum_to_one() -> None:
    prior = _prior()
    with torch.no_grad():
        logp = prior(None).log_prob(_every_grid(3, 3).float())  # (27,)
    assert logp.shape == (27,)
    assert abs(float(torch.logsumexp(logp.double(), 0))) < 1e-5
    assert float(logp.std()) > 0.1  # not the uniform distribution


def test_each_conditional_sees_only_the_codes_before_it() -> None:
    """Changing code j changes p(c_i | c_<i) for no i <= j (and does change a later one)."""
    prior = _prior(positions=4)
    c = torch.tensor([[0, 1, 2, 1]])
    with torch.no_grad():
        base = prior.logits(c)
        for j in range(4):
            changed = c.clone()
            changed[0, j] = (changed[0, j] + 1) % 3
            after = prior.logits(changed)
            torch.testing.assert_close(after[:, :j + 1], base[:, :j + 1])
            if j < 3:
                assert not torch.allclose(after[:, j + 1:], base[:, j + 1:])


def test_ancestral_samples_follow_the_probabilities() -> None:
    prior = _prior(positions=2)
    grids = _every_grid(2, 3)
    with torch.no_grad():
        probs = prior.log_prob(grids).exp()  # (9,)
        draws = prior.sample(20_000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws[:, 0] * 3 + draws[:, 1], minlength=9).double() / 20_000
    stderr = (probs * (1 - probs) / 20_000).sqrt()
    assert bool(((counts - probs).abs() < 5 * stderr + 1e-3).all()), (counts, probs)


def test_temperature_zero_takes_the_most_probable_code_at_each_step() -> None:
    prior = _prior()
    a = prior.sample(5, generator=torch.Generator().manual_seed(0), temperature=0.0)
    b = prior.sample(5, generator=torch.Generator().manual_seed(1), temperature=0.0)
    assert torch.equal(a, b) and (a == a[0]).all()
    first = int(prior.logits(torch.zeros(1, 0, dtype=torch.long))[0, 0].argmax())
    assert int(a[0, 0]) == first


def test_maximum_likelihood_learns_a_dependence_between_codes() -> None:
    """c_1 uniform over 3 classes and c_2 = c_1: the entropy is log 3, which an independent
    model (2 log 3) cannot reach."""
    torch.manual_seed(0)
    first = torch.randint(0, 3, (600,))
    codes = torch.stack([first, first], 1).float()
    prior = CodeTransformer(2, 3, width=32, depth=1, heads=2)
    prior.init_from_codes(codes)
    start = float(prior.training_loss(codes).detach())
    optimizer = torch.optim.Adam(prior.parameters(), lr=3e-3)
    for _ in range(300):
        loss = prior.training_loss(codes)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert start > 1.9 * math.log(3)  # the marginal start: about 2 log 3
    assert float(prior.training_loss(codes).detach()) < math.log(3) + 0.05


@pytest.mark.parametrize(("value", "message"), [
    (torch.tensor([[0.0, 1.0]]), "code grids of 3 indices"),
    (torch.tensor([[0.0, 1.5, 2.0]]), "integers in [0, 3)"),
    (torch.tensor([[0.0, 3.0, 2.0]]), "integers in [0, 3)"),
    (torch.tensor([[-1, 0, 0]]), "integers in [0, 3)"),
])
def test_what_is_not_a_code_grid_is_refused(value: torch.Tensor, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace(")", r"\)")):
        _prior().log_prob(value)


@pytest.mark.parametrize(("options", "message"), [
    ({"categories": 1}, "categories must be an integer >= 2"),
    ({"width": 15, "heads": 2}, "divisible by its heads"),
    ({"depth": 0}, "depth must be an integer >= 1"),
])
def test_bad_sizes_are_refused_in_one_line(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CodeTransformer(**{"positions": 3, "categories": 3, **options})
