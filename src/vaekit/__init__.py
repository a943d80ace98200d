"""vaekit: variational autoencoders on PyTorch, with honest evaluation.

The package's top: `fit`, `train`, `load`, `save`, `Config` and the model contract, re-exported
from the layers below (the API layer, beside `vaekit.sklearn` and `vaekit.cli`); it may import
every layer, and only `vaekit.sklearn`, beside it, imports it (see tests/test_architecture.py).
"""

from vaekit._version import __version__
from vaekit.api import TrainResult, fit, save, train
from vaekit.config import Config
from vaekit.errors import VaekitError
from vaekit.models import VAE, HierarchicalVAE, LatentVariableModel, build_model
from vaekit.run import load

__all__ = ["VAE", "Config", "HierarchicalVAE", "LatentVariableModel", "TrainResult",
           "VaekitError", "__version__", "build_model", "fit",
           "load", "save", "train"]
