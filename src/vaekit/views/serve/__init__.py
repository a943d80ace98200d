"""`vaekit serve`: a local latent explorer in the browser (see `vaekit.views.serve.app`).

Part of the views layer: it may import the run directory, models, evaluation, data and the
foundation, never training or the interfaces (see tests/test_architecture.py).
"""

from vaekit.views.serve.session import ExplorerSession, RequestError

__all__ = ["ExplorerSession", "RequestError"]
