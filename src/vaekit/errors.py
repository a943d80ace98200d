"""User-facing errors: a VaekitError carries a one- or two-line message for the CLI to print."""

from __future__ import annotations


class VaekitError(Exception):
    """A problem with the user's input (data, flags, files) rather than a bug in vaekit."""


class DataError(VaekitError):
    """Data that cannot be read or that does not fit the model."""


class ConfigError(VaekitError):
    """A configuration value or key that vaekit refuses."""


class RunDirError(VaekitError):
    """A run directory that is missing, incomplete, corrupted or from another format version."""


class NoLikelihoodError(VaekitError):
    """A likelihood, or samples, asked of a model that has none (a plain autoencoder before a
    density is fitted to its codes)."""
