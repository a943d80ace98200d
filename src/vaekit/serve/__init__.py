"""`vaekit serve`: a local latent explorer in the browser (see `vaekit.serve.app`)."""

from vaekit.serve.session import ExplorerSession, RequestError

__all__ = ["ExplorerSession", "RequestError"]
