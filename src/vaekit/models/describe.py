"""A run's model in a few words, for the command line, the report and the explorer."""

from __future__ import annotations

from dataclasses import fields

from vaekit.config import Config


def describe_model(config: Config) -> str:
    """The model in a few words: its structure, latent sizes and any fitted prior."""
    words = _structure(config)
    if config.condition_classes:
        words += (f", conditioned on {len(config.condition_classes)} class labels (a "
                  "conditional VAE)")
    if config.fitted_prior:
        kind = config.fitted_prior["kind"]
        codes = "its top group's codes" if config.model in ("hvae", "hvae-conv") else "its codes"
        words += (f", with {'an' if kind[0] in 'aeiou' else 'a'} {kind} prior fitted to {codes} "
                  f"(vaekit fit-prior from {config.fitted_prior.get('source', '?')})")
    return words


def _structure(config: Config) -> str:
    options = config.options()
    if config.model == "ae":
        return f"{config.net} autoencoder (no likelihood), latent {config.latent_dim}"
    if options is None:
        return f"{config.net} VAE, latent {config.latent_dim}"
    shown = {f.name: getattr(options, f.name) for f in fields(options)
             if not _not_applicable(options, f.metadata.get("only"))}
    sizes = ", ".join(f"{k} {','.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
                      for k, v in shown.items())
    return f"{config.model} ({sizes})"


def _not_applicable(options: object, only: tuple[str, object] | None) -> bool:
    """An option that applies only where another has a value (metadata "only": (name, value),
    e.g. a codebook's size only with --vqvae-quantizer vq), and that other differs."""
    return only is not None and getattr(options, only[0]) != only[1]
