"""Sample quality: Fréchet distance and k-NN precision/recall in a fixed feature network.

Layer: evaluation and sample quality; it may import data and the foundation, never a model's
training, the views or the interfaces (see tests/test_architecture.py).
"""

from vaekit.quality.features import FeatureNetwork, classifier_features, random_features
from vaekit.quality.frechet import GaussianStatistics, frechet_distance, frechet_distance_of
from vaekit.quality.manifold import precision_recall
from vaekit.quality.report import check_samples, feature_network, sample_quality

__all__ = ["FeatureNetwork", "GaussianStatistics", "check_samples", "classifier_features",
           "feature_network", "frechet_distance", "frechet_distance_of", "precision_recall",
           "random_features", "sample_quality"]
