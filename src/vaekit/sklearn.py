"""A VAE as a scikit-learn transformer: `from vaekit.sklearn import VAETransformer`.

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> pipe = make_pipeline(StandardScaler(), VAETransformer(latent_dim=2, epochs=30))
    >>> codes = pipe.fit_transform(X)                 # posterior means, (n_samples, 2)
    >>> pipe[-1].score_samples(pipe[0].transform(X))  # importance-weighted log p(x)

It follows the estimator API: hyper-parameters are the constructor's arguments, stored as
given (`get_params` / `set_params`, `clone`, `GridSearchCV`); fitting sets `model_` (the
trained `vaekit` model), `n_features_in_` and `latent_dim_`; `transform` gives the posterior
means E_q[z|x], `inverse_transform` the means of p(x|z), `score_samples` the importance-weighted
estimate of log p(x) with `score_k` samples (Burda et al. 2016), `score` its mean (so that
`GridSearchCV` picks the best held-out likelihood), and `sample(n)` draws x ~ p(x|z), z ~ p(z).

X is used as given, as float32 (a Gaussian likelihood standardises each feature inside the
model, `standardize="auto"`). Training is seeded by `random_state`: the same seed gives the
same model. The latent dimension is capped at the number of features (`latent_dim_`).
Persist a fitted model with `vaekit.save(est.model_, DIR)` and `vaekit.load(DIR)`: safetensors
and JSON, never pickle.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data


class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A VAE on tabular X (n_samples, n_features); see the module's docstring.

    Parameters: `latent_dim`, `hidden` (layer widths), `likelihood` (any of vaekit's: gaussian
    for real values, bernoulli for binary ones), `epochs`, `batch_size`, `lr`, `beta` (the KL
    weight), `score_k` (importance samples of `score_samples`), `random_state` (an int, None or
    a RandomState; drawn once per fit), `progress` (print vaekit's progress)."""

    def __init__(self, latent_dim: int = 2, hidden: tuple[int, ...] = (64, 64),
                 likelihood: str = "gaussian", epochs: int = 50, batch_size: int = 100,
                 lr: float = 1e-3, beta: float = 1.0, score_k: int = 100,
                 random_state: Any = None, progress: bool = False) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.likelihood = likelihood
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.score_k = score_k
        self.random_state = random_state
        self.progress = progress

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags

    def fit(self, X: Any, y: Any = None) -> VAETransformer:
        """Train a VAE on X; y is ignored."""
        import vaekit

        x = validate_data(self, X, dtype=np.float32, reset=True)
        if len(x) < 2:
            raise ValueError(f"VAETransformer needs at least 2 samples; got n_samples = {len(x)}")
        self.latent_dim_ = min(int(self.latent_dim), x.shape[1])
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.model_ = vaekit.fit(
            x, latent_dim=self.latent_dim_, hidden=tuple(self.hidden),
            likelihood=self.likelihood, epochs=self.epochs,
            batch_size=min(self.batch_size, len(x)), lr=self.lr, beta=self.beta, seed=seed,
            val_fraction=0.0, progress=self.progress)
        self._n_features_out = self.latent_dim_
        return self

    def _input(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, dtype=np.float32, reset=False)

    def transform(self, X: Any) -> np.ndarray:
        """The posterior means E_q[z|x], (n_samples, latent_dim_)."""
        x = self._input(X)
        return _numpy(self.model_.encode(x).mean, X)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """The means of p(x|z) for codes X (n_samples, latent_dim_)."""
        check_is_fitted(self)
        z = _codes(X, self.latent_dim_)
        return _numpy(self.model_.decode_mean(z), X)

    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) of each sample, importance-weighted with `score_k` samples (nats):
        log (1/k) sum_k p(x, z_k) / q(z_k|x). Every sample uses the same k standard-normal
        draws (common random numbers), so a sample's score does not depend on the others in X
        or on their order. Computed in float64, so that it does not depend on the batch either
        (float32 rounding differs with the batch's size)."""
        import copy

        from vaekit.objectives import iwae_bound

        x = torch.from_numpy(self._input(X)).double()
        model = copy.deepcopy(self.model_).double()
        k = int(self.score_k)
        noise = model.draw_noise(k, 1, torch.Generator().manual_seed(0))  # (k, 1, d)
        scores = []
        with torch.no_grad():
            for chunk in x.split(max(1, 8192 // k)):
                terms = model.terms(chunk, k, noise=noise.expand(k, len(chunk), -1))
                scores.append(iwae_bound(terms.log_w))  # (B,)
        return torch.cat(scores).double().numpy()

    def score(self, X: Any, y: Any = None) -> float:
        """The mean of `score_samples(X)`: higher is better."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """n_samples draws x ~ p(x|z), z ~ p(z), (n_samples, n_features_in_)."""
        check_is_fitted(self)
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        seed = int(check_random_state(random_state).randint(2**31 - 1))
        g = torch.Generator().manual_seed(seed)
        return self.model_.sample(int(n_samples), generator=g, mean=False).double().numpy()


def _codes(X: Any, latent_dim: int) -> np.ndarray:
    from sklearn.utils import check_array

    z = check_array(X, dtype=np.float32)
    if z.shape[1] != latent_dim:
        raise ValueError(f"X has {z.shape[1]} features, but the codes of this VAETransformer "
                         f"have {latent_dim}")
    return z


def _numpy(t: torch.Tensor, like: Any) -> np.ndarray:
    """A result as NumPy, in float64 unless the input was float32."""
    dtype = np.float32 if getattr(like, "dtype", None) == np.float32 else np.float64
    return t.detach().cpu().numpy().astype(dtype)
