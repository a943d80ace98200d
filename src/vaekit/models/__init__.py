"""Models composed from a prior, a posterior, a decoder and a likelihood."""

from __future__ import annotations

from vaekit.config import Config
from vaekit.distributions import build_likelihood
from vaekit.models.standardize import Standardize
from vaekit.models.vae import VAE, LogWeightTerms
from vaekit.nets import build_decoder, build_encoder
from vaekit.posteriors import build_posterior
from vaekit.priors import build_prior

__all__ = ["VAE", "LogWeightTerms", "Standardize", "build_model"]


def build_model(config: Config, event_shape: tuple[int, ...]) -> VAE:
    """Compose a VAE from the architecture fields of `config` for data of `event_shape`, each
    part from its registry (NETS, POSTERIORS, LIKELIHOODS, PRIORS). With `standardize="on"`
    the model standardises its inputs (its constants are fitted by the trainer); "auto" is
    resolved against the data by the trainer and counts as "off" here."""
    event_shape = tuple(int(s) for s in event_shape)
    body, features = build_encoder(config.net, event_shape, config.hidden, config.channels,
                                   config.activation)
    posterior = build_posterior(config.posterior, body, features, config.latent_dim, config)
    likelihood = build_likelihood(config.likelihood, event_shape, config)
    decoder = build_decoder(config.net, likelihood.param_shape(), config.latent_dim,
                            config.hidden, config.channels, config.activation)
    prior = build_prior(config.prior, config.latent_dim, event_shape, config)
    standardize = Standardize(event_shape) if config.standardize == "on" else None
    model = VAE(prior, posterior, decoder, likelihood, event_shape, config.latent_dim,
                standardize)
    model.config = config
    return model
