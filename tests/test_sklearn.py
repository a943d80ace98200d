"""`vaekit.sklearn.VAETransformer`: scikit-learn's own estimator checks, a Pipeline, a
GridSearchCV that picks the true latent dimension by held-out likelihood, and the methods'
shapes.

scikit-learn's checks run in full; the one they skip themselves is check_array_api_input
(it runs only with SCIPY_ARRAY_API=1 set, and vaekit computes in torch, not the array API)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ppca_draw

pytest.importorskip("sklearn")
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from vaekit.sklearn import VAETransformer


@pytest.mark.slow
def test_scikit_learns_estimator_checks_pass() -> None:
    results = check_estimator(VAETransformer(epochs=2, random_state=0), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert not failed
    assert skipped <= {"check_array_api_input"}
    assert len(results) > 40


def test_the_methods_give_the_expected_shapes_and_are_seeded() -> None:
    x = ppca_draw(0)[:600]
    est = VAETransformer(latent_dim=3, epochs=5, random_state=1).fit(x)
    codes = est.transform(x[:10])
    assert codes.shape == (10, 3) and est.latent_dim_ == 3 and est.n_features_in_ == 12
    assert est.inverse_transform(codes).shape == (10, 12)
    assert est.sample(7, random_state=0).shape == (7, 12)
    assert np.array_equal(est.sample(7, random_state=0), est.sample(7, random_state=0))
    scores = est.score_samples(x[:50])
    assert scores.shape == (50,) and np.isfinite(scores).all()
    assert est.score(x[:50]) == pytest.approx(scores.mean())
    same = VAETransformer(latent_dim=3, epochs=5, random_state=1).fit(x)
    assert np.array_equal(same.transform(x[:10]), codes)
    assert list(est.get_feature_names_out()) == [f"vaetransformer{i}" for i in range(3)]
    other = clone(est).set_params(latent_dim=1)
    assert other.get_params()["latent_dim"] == 1 and not hasattr(other, "model_")
    with pytest.raises(ValueError, match="codes of this VAETransformer have 3"):
        est.inverse_transform(np.zeros((2, 5)))


def test_a_pipeline_and_a_grid_search_find_the_true_latent_dimension() -> None:
    x = ppca_draw(0)[:1500]  # 3 latent factors in 12 dimensions
    pipe = make_pipeline(StandardScaler(), VAETransformer(epochs=50, random_state=0))
    search = GridSearchCV(pipe, {"vaetransformer__latent_dim": [1, 3]}, cv=2)
    search.fit(x)
    assert search.best_params_ == {"vaetransformer__latent_dim": 3}
    means = search.cv_results_["mean_test_score"]
    assert np.isfinite(means).all() and means[1] > means[0]
    assert search.best_estimator_.transform(x[:4]).shape == (4, 3)
