"""The importance-weighted estimate of log p(x) (Burda et al. 2016, eq. 8 with z_k ~ q(z|x)):

    log p(x) ~= logsumexp_k [log p(x, z_k) - log q(z_k|x)] - log k,

computed in chunks over examples and over k, so peak memory is set by `chunk_rows` (rows of
(sample, example) pairs decoded at once), never by k. The estimate is a lower bound in
expectation that tightens as k grows; k = 5000 is the standard for published MNIST numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vaekit.compiling import CompiledOrEager
from vaekit.evaluate.elbo import condition_rows
from vaekit.models import LatentVariableModel

#: About 1,000 (sample, example) rows per decoder call keeps activations in cache on a CPU;
#: far larger chunks ran about twice as slowly in Pythae's comparison (issue #4).
DEFAULT_CHUNK_ROWS = 1024

#: With `compile=None`, a CPU evaluation of at least this many (sample, example) rows is run
#: through torch.compile: its fused kernels pay back the 3-8 s compilation from about here on,
#: by machine (benchmarks/eval_throughput.py, 1000 x 5000 rows: 32.1 s compiled against 35.1 s
#: eager on an AVX2 EPYC; about even, 18.0 against 16.9, on an AVX-512 Xeon, where 10,000 x
#: 5000 rows took 147.5 s compiled against 207.0).
COMPILE_MIN_ROWS = 5_000_000

ChunkFn = Callable[[LatentVariableModel, Tensor, Tensor, Any, "Tensor | None"], Tensor]


@dataclass
class LogLikelihood:
    """Per-example estimates and the dataset mean with its standard error (nats)."""

    per_example: Tensor  # (N,)
    k: int

    @property
    def mean(self) -> float:
        return float(self.per_example.double().mean())

    @property
    def stderr(self) -> float:
        n = len(self.per_example)
        return float(self.per_example.double().std() / math.sqrt(n)) if n > 1 else float("nan")


def _chunking(k: int, n: int, chunk_rows: int) -> tuple[int, int]:
    """(examples per batch, samples per chunk) with their product at most chunk_rows. Chunks
    of k are made as equal as possible (5000 = 5 x 1000, not 4 x 1024 + 904): fewer distinct
    shapes for a compiled chunk."""
    chunk_rows = max(1, chunk_rows)
    if k >= chunk_rows:
        pieces = -(-k // chunk_rows)
        return 1, -(-k // pieces)
    return max(1, min(n, chunk_rows // k)), k


def _chunk_logsumexp(model: LatentVariableModel, x: Tensor, noise: Tensor, cache: Any,
                     condition: Tensor | None = None) -> Tensor:
    """logsumexp over one chunk of samples of the log-weights, in float64, shape (B,)."""
    t = model.terms(x, noise=noise, cache=cache, condition=condition)
    return torch.logsumexp(t.log_w.double(), dim=0)


@torch.no_grad()
def log_likelihood(model: LatentVariableModel, x: Tensor, k: int = 5000,
                   chunk_rows: int = DEFAULT_CHUNK_ROWS,
                   seed: int = 0, progress: bool = False,
                   compile: bool | None = None, condition: Any = None) -> LogLikelihood:
    """Importance-sampled log p(x) for every example of x (N, *event_shape), in nats (for a
    conditional model, log p(x|c) given the examples' class labels `condition` (N,)).

    `compile`: decode through torch.compile (True), eagerly (False), or decide by size (None:
    compiled on a CPU from COMPILE_MIN_ROWS rows, where it was measured to win). The noise is
    drawn outside the compiled part, so both give the same estimate up to float rounding."""
    from tqdm import tqdm

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    device = next(model.parameters()).device
    if compile is None:
        compile = device.type == "cpu" and len(x) * k >= COMPILE_MIN_ROWS
    chunk_fn: ChunkFn = CompiledOrEager(_chunk_logsumexp, "evaluating", dynamic=False) \
        if compile else _chunk_logsumexp
    generator = torch.Generator(device=device).manual_seed(seed)
    model.reseed(seed)  # noise drawn inside log p(z), if any, follows the seed too
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()  # page-locked: the copies below overlap with the GPU's work
    batch, k_chunk = _chunking(k, len(x), chunk_rows)
    out = torch.empty(len(x), dtype=torch.float64)
    starts = range(0, len(x), batch)
    for start in tqdm(starts, disable=None if progress else True, desc=f"log p(x), k={k}",
                      leave=False):
        xb = x[start:start + batch].to(device, non_blocking=True)
        c = model.as_condition(condition_rows(condition, start, batch), len(xb), "log p(x)")
        cache = model.inference_cache(xb, c)  # one encoder pass serves every chunk of samples
        total = torch.full((len(xb),), -math.inf, dtype=torch.float64, device=device)
        for done in range(0, k, k_chunk):
            kc = min(k_chunk, k - done)
            noise = model.draw_noise(kc, len(xb), generator=generator, device=device)
            total = torch.logaddexp(total, chunk_fn(model, xb, noise, cache, c))
        out[start:start + len(xb)] = (total - math.log(k)).cpu()
    return LogLikelihood(out, k)


@torch.no_grad()
def marginal_log_likelihood(model: LatentVariableModel, x: Tensor, k: int = 5000,
                            class_prior: Tensor | None = None, **options: Any) -> LogLikelihood:
    """A conditional model's log p(x) = log sum_c p(c) p(x|c), each log p(x|c) the
    importance-weighted estimate with k samples (`log_likelihood`'s `options`), p(c) the
    `class_prior` (C,) (default: uniform). The sum of unbiased estimates of p(x|c) is one of
    p(x), so this is the same kind of estimate as an unconditional model's, and compares with
    it; it costs C evaluations."""
    classes = model.condition_dim
    if not classes:
        raise ValueError("marginal_log_likelihood is for a conditional model (condition_dim > 0)")
    prior = torch.full((classes,), 1.0 / classes, dtype=torch.float64) if class_prior is None \
        else class_prior.double() / class_prior.double().sum()
    per_class = torch.stack([log_likelihood(model, x, k=k, condition=c, **options).per_example
                             for c in range(classes)])  # (C, N)
    return LogLikelihood(torch.logsumexp(per_class + prior.log()[:, None], dim=0), k)
