"""Quantizers: what turns an encoder's grid of vectors into discrete codes, for a vector-quantised
model. Each maps z_e (B, D, *grid) to a `Quantized`: the codes (B, D, *grid), straight-through
(their value is the code, their gradient reaches z_e), their indices (B, *grid) in a code space
of `codebook_size` entries, and the auxiliary loss the objective adds (`LogWeightTerms.aux_loss`).

- `vq`: a learned codebook, nearest-neighbour assignment (van den Oord et al. 2017), updated by
  an exponential moving average or by the codebook loss, initialised by k-means and with dead
  codes restarted (`vector`);
- `fsq`: finite scalar quantisation (Mentzer et al. 2023), a fixed grid of levels per dimension,
  nothing to learn and nothing to collapse (`scalar`).

Layer: priors, posteriors and quantizers; it may import the foundation only (see
tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vaekit.quantizers.base import Quantized, Quantizer, code_statistics
from vaekit.quantizers.scalar import FiniteScalarQuantizer
from vaekit.quantizers.vector import VectorQuantizer

#: The quantizers, by --quantizer name: the one list of choices.
QUANTIZERS: dict[str, Callable[..., Quantizer]] = {
    "vq": VectorQuantizer,
    "fsq": FiniteScalarQuantizer,
}


def build_quantizer(name: str, **options: Any) -> Quantizer:
    """The quantizer `name` (a key of QUANTIZERS) with its options."""
    from vaekit.errors import ConfigError

    if name not in QUANTIZERS:
        raise ConfigError(f"unknown quantizer {name!r}; choose from: {', '.join(QUANTIZERS)}")
    return QUANTIZERS[name](**options)


__all__ = ["QUANTIZERS", "FiniteScalarQuantizer", "Quantized", "Quantizer", "VectorQuantizer",
           "build_quantizer", "code_statistics"]
