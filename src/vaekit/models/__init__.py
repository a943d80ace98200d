"""Latent-variable models on one contract (`models.base.LatentVariableModel`), by --model name.

Layer: models, above the configuration they are built from; they may import the configuration,
the objectives, priors, posteriors, distributions, nets, flows, data and the foundation, never
the run directory, evaluation, training, the views or the interfaces (see
tests/test_architecture.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vaekit.config import ONE_LAYER_FIELDS, Config
from vaekit.distributions import build_likelihood
from vaekit.errors import ConfigError
from vaekit.models.autoencoder import Autoencoder
from vaekit.models.base import LatentVariableModel
from vaekit.models.categorical import CategoricalOptions, CategoricalVAE
from vaekit.models.hierarchical import HierarchicalOptions, HierarchicalVAE
from vaekit.models.hierarchical_conv import ConvHierarchicalOptions, ConvHierarchicalVAE
from vaekit.models.standardize import Standardize
from vaekit.models.vae import VAE, OneLayerTerms
from vaekit.models.vector_quantized import VectorQuantizedOptions, VectorQuantizedVAE
from vaekit.nets import build_decoder, build_encoder
from vaekit.objectives.terms import LogWeightTerms
from vaekit.posteriors import build_posterior
from vaekit.priors import build_prior

__all__ = ["MODELS", "ONE_LAYER_FIELDS", "VAE", "Autoencoder", "CategoricalOptions",
           "CategoricalVAE", "ConvHierarchicalOptions",
           "ConvHierarchicalVAE", "HierarchicalOptions", "HierarchicalVAE", "LatentVariableModel",
           "LogWeightTerms", "ModelSpec", "OneLayerTerms", "Standardize",
           "VectorQuantizedOptions", "VectorQuantizedVAE", "build_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A latent structure: `build(config, event_shape, options)` composes it; `options` is the
    dataclass of its own settings (flags --NAME-FIELD, config key model_options: {NAME: ...}),
    or None; `reads` names the one-layer fields (`ONE_LAYER_FIELDS`: --latent-dim, --hidden,
    --prior, ...) that apply to it; `has_likelihood` is False for a model without a KL term
    (the autoencoder), which refuses the objective's KL options."""

    build: Callable[[Config, tuple[int, ...], Any], LatentVariableModel]
    options: type | None = None
    reads: tuple[str, ...] = ()
    has_likelihood: bool = True
    help: str = ""



def _build_vae(config: Config, event_shape: tuple[int, ...], options: Any) -> VAE:
    classes = len(config.condition_classes)  # a conditional VAE: both nets also read c
    body, features = build_encoder(config.net, event_shape, config.hidden, config.channels,
                                   config.activation, classes)
    posterior = build_posterior(config.posterior, body, features, config.latent_dim, config)
    likelihood = build_likelihood(config.likelihood, event_shape, config)
    decoder = build_decoder(config.net, likelihood.param_shape(), config.latent_dim + classes,
                            config.hidden, config.channels, config.activation)
    prior = build_prior(config.prior, config.latent_dim, event_shape, config)
    return VAE(prior, posterior, decoder, likelihood, event_shape, config.latent_dim,
               _standardize(config, event_shape), config.condition_classes)


def _build_autoencoder(config: Config, event_shape: tuple[int, ...],
                       options: Any) -> Autoencoder:
    body, features = build_encoder(config.net, event_shape, config.hidden, config.channels,
                                   config.activation)
    likelihood = build_likelihood(config.likelihood, event_shape, config)
    decoder = build_decoder(config.net, likelihood.param_shape(), config.latent_dim,
                            config.hidden, config.channels, config.activation)
    return Autoencoder(body, features, decoder, likelihood, event_shape, config.latent_dim,
                       _standardize(config, event_shape))


def _build_categorical(config: Config, event_shape: tuple[int, ...],
                       options: CategoricalOptions) -> CategoricalVAE:
    if config.objective != "elbo":
        raise ConfigError("--model categorical trains on the ELBO (--objective elbo); its "
                          "importance-weighted bound is an evaluation (vaekit evaluate)")
    if options.estimator == "reinforce-loo" and config.iw_samples < 2:
        raise ConfigError("--categorical-estimator reinforce-loo needs --iw-samples >= 2: the "
                          "leave-one-out baseline of each sample is the mean of the others")
    body, features = build_encoder(config.net, event_shape, config.hidden, config.channels,
                                   config.activation)
    likelihood = build_likelihood(config.likelihood, event_shape, config)
    decoder = build_decoder(config.net, likelihood.param_shape(),
                            config.latent_dim * options.categories, config.hidden,
                            config.channels, config.activation)
    return CategoricalVAE(body, features, decoder, likelihood, event_shape, config.latent_dim,
                          options, _standardize(config, event_shape))


def _build_hierarchical(config: Config, event_shape: tuple[int, ...],
                        options: HierarchicalOptions) -> HierarchicalVAE:
    likelihood = build_likelihood(config.likelihood, event_shape, config)
    return HierarchicalVAE(likelihood, event_shape, options, config.activation,
                           _standardize(config, event_shape))


def _build_conv_hierarchical(config: Config, event_shape: tuple[int, ...],
                             options: ConvHierarchicalOptions) -> ConvHierarchicalVAE:
    likelihood = build_likelihood(config.likelihood, event_shape, config)
    return ConvHierarchicalVAE(likelihood, event_shape, options, _standardize(config, event_shape))


def _build_vector_quantized(config: Config, event_shape: tuple[int, ...],
                            options: VectorQuantizedOptions) -> VectorQuantizedVAE:
    if config.objective != "elbo":
        raise ConfigError("--model vqvae trains on its bound with --objective elbo (its q is a "
                          "point mass: importance weighting adds nothing)")
    likelihood = build_likelihood(config.likelihood, event_shape, config)
    return VectorQuantizedVAE(likelihood, event_shape, options, _standardize(config, event_shape))


def _standardize(config: Config, event_shape: tuple[int, ...]) -> Standardize | None:
    return Standardize(event_shape) if config.standardize == "on" else None


#: The latent structures, by --model name: the one list of choices (Config validates against it).
MODELS: dict[str, ModelSpec] = {
    "vae": ModelSpec(_build_vae, None, reads=ONE_LAYER_FIELDS,
                     help="one latent layer (--latent-dim, --net, --prior, --posterior)"),
    "ae": ModelSpec(_build_autoencoder, None, reads=("latent_dim", "hidden", "channels", "net"),
                    has_likelihood=False,
                    help="a plain autoencoder, the baseline: z = f(x), trained on "
                         "reconstruction (--latent-dim, --net); no likelihood"),
    "categorical": ModelSpec(_build_categorical, CategoricalOptions,
                             reads=("latent_dim", "hidden", "channels", "net"),
                             help="N categorical latents of K classes (--latent-dim N, "
                                  "--categorical-categories K, --categorical-estimator); "
                                  "evaluated as the discrete model"),
    "vqvae": ModelSpec(_build_vector_quantized, VectorQuantizedOptions,
                       help="vector-quantised codes on a grid (--vqvae-quantizer vq|fsq, "
                            "--vqvae-codebook-size, --vqvae-code-dim, --vqvae-levels); its "
                            "bound log p(x|c) + log p(c), uniform p(c) until fit-prior"),
    "hvae": ModelSpec(_build_hierarchical, HierarchicalOptions,
                      help="a top-down hierarchy of latent groups (--hvae-latents, "
                           "--hvae-widths, --hvae-depth)"),
    "hvae-conv": ModelSpec(_build_conv_hierarchical, ConvHierarchicalOptions,
                           help="a top-down hierarchy of feature-map latents for images "
                                "(--hvae-conv-widths, --hvae-conv-groups, ...)"),
}


def build_model(config: Config, event_shape: tuple[int, ...]) -> LatentVariableModel:
    """Compose the model `config.model` (a key of MODELS) for data of `event_shape`, each part
    from its registry (NETS, POSTERIORS, LIKELIHOODS, PRIORS). With `standardize="on"` the model
    standardises its inputs (its constants are fitted by the trainer); "auto" is resolved
    against the data by the trainer and counts as "off" here."""
    if config.model not in MODELS:
        raise ConfigError(f"unknown model {config.model!r}; choose from: {', '.join(MODELS)}")
    event_shape = tuple(int(s) for s in event_shape)
    model = MODELS[config.model].build(config, event_shape, config.options())
    if config.fitted_prior:  # a second stage's prior replaces the model's own (vae, ae, the
        # codes of a VQ-VAE, a hierarchy's top group)
        from vaekit.priors.fitted import build_fitted_prior

        codes = model.prior_slice
        model.prior = build_fitted_prior(config.fitted_prior, codes.stop - codes.start)
    model.config = config
    return model
