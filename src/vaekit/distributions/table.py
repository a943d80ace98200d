"""p(x|z) for a row of a table: one likelihood per column, missing cells left out.

The encoded row (`vaekit.data.tables`) is each column's block, then one observed-flag per
column. For the decoder's parameters split the same way, column by column,

    log p(x|z) = sum_c m_c log p_c(x_c | z),      m_c = 1 if cell c is observed, else 0

with p_c a Gaussian N(mu, sigma^2) on the standardised value for a continuous or integer
column (its log-density in the data's units: minus log sd, the standardisation's Jacobian),
for a multimodal column a categorical on its mode m times a Gaussian on alpha = (x - mean_m) /
(4 sd_m), minus log(4 sd_m) (Xu et al. 2019's mode-specific normalisation; m is the value's
most responsible mode, so this is the density of x where the model's alpha stays in that mode),
a Bernoulli on a logit for a binary column, and a categorical on K logits for a categorical
one (Nazabal et al. 2020, HI-VAE; Xu et al. 2019, TVAE). A missing cell contributes nothing and
its parameters get no gradient.

The flags of the columns that had missing cells in training (`Column.missing_flag`) are
modelled too, each a Bernoulli on one more decoder output (after the columns' parameters):

    log p(x, m|z) = sum_c m_c log p_c(x_c|z) + sum_{c flagged} log Bern(m_c; sigmoid(l_c(z)))

(l_c the decoder's output plus the log-odds of the column's training flags, a fixed offset),
so that samples miss cells at the data's rate and where the data miss them: missingness tied
to the row's values is learned through z. (Ipsen et al. 2021, not-MIWAE, decode the mask from
x, p(m|x); from z, x and m are drawn together.) Training maximises the bound on this joint.
The second sum is `side_term` ("missingness"): within `main_term_only()` `log_prob` is the
first sum alone, the values' log p(x_obs|z), which compares with a model that does not model
the flags (evaluation reports both: `vaekit.evaluate.evaluate`). The other columns' flags are
given, never modelled.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints

from vaekit.distributions.likelihoods import Likelihood

_LOG_2PI = math.log(2 * math.pi)
#: bounds of the log standard deviation of a continuous column, in standardised units
LOG_SD_RANGE = (-7.0, 3.0)


class TableLikelihood(Likelihood):
    """Per-column likelihoods of a table's encoded row (see the module's docstring)."""

    log_sd: Tensor
    flag_index: Tensor
    flag_offset: Tensor

    def __init__(self, event_shape: tuple[int, ...], table: dict[str, Any]) -> None:
        super().__init__(event_shape)
        from vaekit.data.tables import TableSchema

        self.schema = TableSchema.from_dict(table)
        if self.schema.width != event_shape[-1] or len(event_shape) != 1:
            raise ValueError(f"the table schema encodes rows of {self.schema.width} numbers, "
                             f"not {event_shape}")
        self.kinds = [c.kind for c in self.schema.columns]
        self.widths = [c.width for c in self.schema.columns]
        self.param_widths = [c.params for c in self.schema.columns]
        self.n_columns = len(self.kinds)
        #: the columns whose observed-flag is modelled, in order (one logit each)
        self.flagged = [c for c, column in enumerate(self.schema.columns) if column.missing_flag]
        self.register_buffer("flag_index", torch.tensor(self.flagged, dtype=torch.long),
                             persistent=False)
        # log((1 - r) / r) of each flagged column's training missing rate r (`flag_logits`)
        rates = torch.tensor([self.schema.columns[c].missing_rate for c in self.flagged],
                             dtype=torch.float32).clamp(1e-6, 1 - 1e-6)
        self.register_buffer("flag_offset", torch.log1p(-rates) - rates.log(), persistent=False)
        self.side_term = "missingness" if self.flagged else None
        self.side_term_of = tuple(self.schema.columns[c].name for c in self.flagged)
        self.score_flags = True  # False within main_term_only()
        log_sd = [math.log(c.sd) if c.kind in ("continuous", "integer") else 0.0
                  for c in self.schema.columns]
        self.register_buffer("log_sd", torch.tensor(log_sd), persistent=False)
        for c, column in enumerate(self.schema.columns):
            if column.kind == "multimodal":  # log(4 sd_m) of each mode: the Jacobian of alpha
                scales = torch.tensor([math.log(4 * sd) for _, _, sd in column.modes])
                self.register_buffer(f"mode_log_scale_{c}", scales, persistent=False)

    def param_shape(self) -> tuple[int, ...]:
        return (sum(self.param_widths) + len(self.flagged),)

    def _theta(self, params: Tensor) -> list[Tensor]:
        """Each column's parameters, without the flags' logits."""
        return list(params[..., :sum(self.param_widths)].split(self.param_widths, -1))

    def _blocks(self, params: Tensor, y: Tensor) -> tuple[list[Tensor], list[Tensor], Tensor]:
        flags = y[..., -self.n_columns:]
        return (self._theta(params), list(y[..., :-self.n_columns].split(self.widths, -1)),
                flags)

    def flag_logits(self, params: Tensor) -> Tensor:
        """l_c(z), the logit of p(cell c observed|z), of each flagged column: (*batch, flagged):
        the decoder's output plus the log-odds of the column's training rows' flags, a fixed
        offset so that an untrained decoder draws cells missing at the data's rate."""
        return params[..., sum(self.param_widths):] + self.flag_offset

    def flag_log_prob(self, params: Tensor, y: Tensor) -> Tensor:
        """log Bern(m_c; sigmoid(l_c)) of each flagged column's observed-flag m_c:
        (*samples, B, flagged), y (B, width) broadcasting over the samples."""
        logits = self.flag_logits(params)
        flags = y[..., -self.n_columns:].index_select(-1, self.flag_index)
        return -F.binary_cross_entropy_with_logits(logits, flags.expand_as(logits),
                                                   reduction="none")

    @contextlib.contextmanager
    def main_term_only(self) -> Iterator[None]:
        """Within it, `log_prob` is the values' log p(x_obs|z) alone, without the flags'."""
        before, self.score_flags = self.score_flags, False
        try:
            yield
        finally:
            self.score_flags = before

    def column_log_prob(self, params: Tensor, y: Tensor) -> Tensor:
        """log p_c(x_c|z) of each observed cell, 0 for a missing one: (*samples, B, columns)."""
        theta, values, flags = self._blocks(params, y)
        out = []
        for c, (kind, p, v) in enumerate(zip(self.kinds, theta, values, strict=True)):
            if kind in ("continuous", "integer"):
                lp = _gaussian(p, v[..., 0]) - self.log_sd[c]
            elif kind == "multimodal":
                onehot = v[..., 1:]
                scale = (onehot * getattr(self, f"mode_log_scale_{c}")).sum(-1)
                lp = (F.log_softmax(p[..., 2:], -1) * onehot).sum(-1) + _gaussian(p, v[..., 0]) \
                    - scale
            elif kind == "binary":
                lp = -F.binary_cross_entropy_with_logits(p[..., 0], v[..., 0].expand_as(
                    p[..., 0]), reduction="none")
            else:
                lp = (F.log_softmax(p, -1) * v).sum(-1)
            out.append(lp)
        # where, not a product: a missing cell's term (finite here) gets exactly 0 gradient
        stacked = torch.stack(out, -1)
        return torch.where(flags > 0.5, stacked, torch.zeros_like(stacked))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x, m|z): the observed cells' and the flagged columns' flags' (see the module);
        the cells' alone within `main_term_only()`."""
        values = self.column_log_prob(params, x).sum(-1)
        if not (self.flagged and self.score_flags):
            return values
        return values + self.flag_log_prob(params, x).sum(-1)

    def mean(self, params: Tensor) -> Tensor:
        """Means: the Gaussian's mean, the Bernoulli's probability, the categorical's
        probabilities; every flag 1 (a complete row, which imputes the cells a row misses;
        `flag_logits` give p(observed|z))."""
        blocks = []
        for kind, p in zip(self.kinds, self._theta(params), strict=True):
            if kind in ("continuous", "integer"):
                blocks.append(p[..., :1])
            elif kind == "multimodal":
                blocks += [p[..., :1], torch.softmax(p[..., 2:], -1)]
            elif kind == "binary":
                blocks.append(torch.sigmoid(p))
            else:
                blocks.append(torch.softmax(p, -1))
        flags = params.new_ones(*params.shape[:-1], self.n_columns)
        return torch.cat([*blocks, flags], -1)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw of every cell: Gaussian, Bernoulli, one-hot categorical; the flag of a
        flagged column drawn from its Bernoulli (0: the cell is missing), the others 1. A
        missing cell's block still holds its draw (`vaekit.data.table_missing.fill_missing`
        keeps it)."""
        blocks = []
        for kind, p in zip(self.kinds, self._theta(params), strict=True):
            if kind in ("continuous", "integer", "multimodal"):
                noise = torch.randn(p[..., :1].shape, generator=generator, device=p.device,
                                    dtype=p.dtype)
                blocks.append(p[..., :1] + p[..., 1:2].clamp(*LOG_SD_RANGE).exp() * noise)
                if kind == "multimodal":
                    blocks.append(_one_hot_draw(p[..., 2:], generator))
            elif kind == "binary":
                u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
                blocks.append((u < torch.sigmoid(p)).to(p.dtype))
            else:
                blocks.append(_one_hot_draw(p, generator))
        flags = params.new_ones(*params.shape[:-1], self.n_columns)
        if self.flagged:
            logits = self.flag_logits(params)
            u = torch.rand(logits.shape, generator=generator, device=params.device,
                           dtype=params.dtype)
            flags[..., self.flag_index] = (u < torch.sigmoid(logits)).to(params.dtype)
        return torch.cat([*blocks, flags], -1)

    def forward(self, params: Tensor) -> Distribution:
        return TableDistribution(self, params)

    def caveat(self, x: Tensor) -> str | None:
        if "integer" in self.kinds:
            return ("integer columns are modelled by a Gaussian density: their part of "
                    "'log p(x)' is a density, not a probability")
        return None


def _gaussian(p: Tensor, x: Tensor) -> Tensor:
    """log N(x; p[..., 0], exp(p[..., 1])^2), the log sd clamped to LOG_SD_RANGE."""
    mu, log_sd = p[..., 0], p[..., 1].clamp(*LOG_SD_RANGE)
    return -0.5 * (((x - mu) * (-log_sd).exp()).square() + _LOG_2PI) - log_sd


def _one_hot_draw(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """One-hot draws from categoricals on `logits` (*batch, K)."""
    flat = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
    k = torch.multinomial(flat, 1, generator=generator).reshape(logits.shape[:-1])
    return F.one_hot(k, logits.shape[-1]).to(logits.dtype)


class TableDistribution(Distribution):
    """p(x|z) of table rows as a torch Distribution: log_prob, mean and sample."""

    arg_constraints: ClassVar[dict[str, Any]] = {}
    support = constraints.real_vector

    def __init__(self, likelihood: TableLikelihood, params: Tensor) -> None:
        self.likelihood, self.params = likelihood, params
        super().__init__(params.shape[:-1], torch.Size(likelihood.event_shape),
                         validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.likelihood.log_prob(self.params, value)

    @property
    def mean(self) -> Tensor:
        return self.likelihood.mean(self.params)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        params = self.params.expand(*sample_shape, *self.params.shape)
        with torch.no_grad():
            return self.likelihood.sample(params)
