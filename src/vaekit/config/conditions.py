"""The checks of --condition (a conditional VAE on class labels) on a Config."""

from __future__ import annotations

from typing import Any

from vaekit.errors import ConfigError


def check_condition(config: Any) -> None:
    """A `Config`'s --condition: the class labels, on the one-layer model, with an
    unconditional prior (a VampPrior's pseudo-inputs would need classes of their own)."""
    from vaekit.data.tables import is_table_file  # late: it imports torch

    table = is_table_file(config.data)
    if config.condition not in ("", "label") and not table:
        raise ConfigError(f"--condition must be 'label' (the data's class labels), or a "
                          f"column of a .csv/.parquet table; got {config.condition!r} for "
                          f"data {config.data}")
    if config.condition == "label" and table:
        raise ConfigError("--condition label: a table has no labels; name the column to "
                          "condition on (--condition COLUMN)")
    if not config.condition:
        if config.condition_classes:
            raise ConfigError("condition_classes is written by training with --condition")
        return
    if config.model != "vae":
        raise ConfigError(f"--condition applies to the one-layer model (--model vae), not "
                          f"--model {config.model}")
    if config.prior == "vamp":
        raise ConfigError("--condition with --prior vamp is not supported: the pseudo-inputs "
                          "have no class; use --prior normal, mog or flow")
    if config.fitted_prior:
        raise ConfigError("a fitted prior is unconditional; this run is conditioned on its "
                          "labels (--condition)")
    if len(set(config.condition_classes)) != len(config.condition_classes):
        raise ConfigError(f"condition_classes must be distinct, got "
                          f"{list(config.condition_classes)}")
