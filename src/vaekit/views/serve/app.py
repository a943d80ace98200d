"""`vaekit serve RUN`: a local web app to look inside a trained model.

Built on FastAPI (Starlette underneath, served by uvicorn): its typed request models validate
every JSON body and answer a malformed one with a 422 that names the field, its test client
drives the API in-process for the tests, and it is the most used Python web framework with an
async server, so nothing here is hand-written plumbing. The interactive /docs pages are off
(they fetch scripts from a CDN); /openapi.json describes the API.

    GET  /                 the page: latent sliders, latent map (2-D), interpolation, upload,
                           samples
    GET  /api/info         the model, its latent sizes and the sliders (range, order, start)
    POST /api/decode       {"z": [...]}                 -> {"x": image data URI | values}
    POST /api/encode       {"index": i} | {"upload": s} -> input, reconstruction, posterior
                                                           mean and sd, anomaly score
    POST /api/sample       {"n", "temperature", "seed"} -> {"samples": [...]}
    POST /api/interpolate  {"a", "b", "steps"} (held-out indices) or {"a_upload", "b_upload"}
                                                        -> {"frames": [...]}
    GET  /api/latent_map   2-D latents: held-out posterior means and labels

Security: the server binds to 127.0.0.1 unless told otherwise and answers only requests
addressed to this machine's names (the Host header: no DNS rebinding); request bodies are capped
(`max_body` bytes, 413 above it) and uploads are checked by content (PNG or JPEG magic bytes,
then decoded by Pillow with a pixel cap); no value from a request names a file; every error is
a 4xx with a one-line message, and an unexpected one a 500 with no traceback.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which
# name request models local to create_app.

import importlib.resources
from typing import Any

from vaekit.errors import ConfigError, VaekitError
from vaekit.views.serve.session import ExplorerSession, RequestError

#: the default cap on a request body (an uploaded image is sent base64-encoded in JSON)
MAX_BODY = 2 * 1024 * 1024


def _fastapi() -> Any:
    try:
        import fastapi
    except ImportError:
        raise ConfigError("vaekit serve needs FastAPI and uvicorn: pip install "
                          "'vaekit[serve]'") from None
    return fastapi


class BodyLimit:
    """ASGI middleware: a request whose body is (or claims to be) over `limit` bytes gets a
    413 before the app reads it whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from fastapi import HTTPException
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = JSONResponse({"detail": f"the request body is over the limit of "
                                  f"{self.limit} bytes"}, status_code=413)
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"the request body is over the limit of {self.limit} "
                                    "bytes")
            return message

        await self.app(scope, limited, send)


#: Host headers answered by default: this machine's own names (a page on another site that
#: rebinds its DNS name to 127.0.0.1 sends its own name, and is refused)
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "testserver")


def create_app(session: ExplorerSession, max_body: int = MAX_BODY,
               allowed_hosts: tuple[str, ...] = LOCAL_HOSTS) -> Any:
    """The FastAPI app over one loaded model (see the module's docstring); requests whose
    Host header is not in `allowed_hosts` get a 400 ("*" allows any)."""
    fastapi = _fastapi()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # `condition`: a conditional model's class (by name) to decode and sample with, and to
    # encode an upload with; a held-out example is encoded with its own class.
    class DecodeRequest(Strict):
        z: list[float] = Field(max_length=65536)
        condition: str | None = Field(None, max_length=200)

    class EncodeRequest(Strict):
        index: int | None = None
        upload: str | None = None
        condition: str | None = Field(None, max_length=200)

    class SampleRequest(Strict):
        n: int = Field(16, ge=1, le=64)
        temperature: float = Field(1.0, ge=0.0, le=3.0)
        seed: int = Field(0, ge=0, le=2**31 - 1)
        condition: str | None = Field(None, max_length=200)

    class InterpolateRequest(Strict):
        a: int | None = None
        b: int | None = None
        a_upload: str | None = None
        b_upload: str | None = None
        steps: int = Field(8, ge=2, le=32)
        condition: str | None = Field(None, max_length=200)

    app = fastapi.FastAPI(title="vaekit latent explorer", docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, limit=max_body)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    page = importlib.resources.files("vaekit.views.serve").joinpath("page.html").read_text()

    @app.exception_handler(VaekitError)  # RequestError, and the model's own refusals
    async def _bad_request(_request: Any, e: VaekitError) -> Any:
        return JSONResponse({"detail": str(e)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Any, e: RequestValidationError) -> Any:
        # each problem's place and message, without the offending input (which may not even
        # be JSON: a NaN)
        detail = [{"loc": list(error.get("loc", ())), "msg": str(error.get("msg", ""))}
                  for error in e.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def _internal(_request: Any, e: Exception) -> Any:
        return JSONResponse({"detail": f"internal error ({type(e).__name__})"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        return session.describe()

    @app.post("/api/decode")
    def decode(request: DecodeRequest) -> dict[str, Any]:
        return session.decode(request.z, request.condition)

    def one_example(index: int | None, upload: str | None, name: str) -> Any:
        if (index is None) == (upload is None):
            raise RequestError(f"give either {name or 'index'} (a held-out example) or "
                               f"{name + '_upload' if name else 'upload'}, not both or neither")
        if index is not None:
            return session.example(index)
        assert upload is not None
        return session.read_upload(upload)

    def own_class(index: int | None) -> str | None:
        return session.own_class(index) if index is not None else None

    @app.post("/api/encode")
    def encode(request: EncodeRequest) -> dict[str, Any]:
        x = one_example(request.index, request.upload, "")
        own = own_class(request.index)  # a held-out example of a conditional model: its class
        return session.encode(x, own if own is not None else request.condition)

    @app.post("/api/sample")
    def sample(request: SampleRequest) -> dict[str, Any]:
        return session.sample(request.n, request.temperature, request.seed, request.condition)

    @app.post("/api/interpolate")
    def interpolate(request: InterpolateRequest) -> dict[str, Any]:
        a = one_example(request.a, request.a_upload, "a")
        b = one_example(request.b, request.b_upload, "b")
        return session.interpolate(a, b, request.steps, request.condition,
                                   (own_class(request.a), own_class(request.b)))

    @app.get("/api/latent_map")
    def latent_map() -> dict[str, Any]:
        return session.latent_map()

    return app


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000,
          data_dir: str | None = None, max_body: int = MAX_BODY) -> None:
    """Load the run once and serve it until interrupted."""
    _fastapi()
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("vaekit serve needs FastAPI and uvicorn: pip install "
                          "'vaekit[serve]'") from None
    session = ExplorerSession(run_dir, data_dir)
    # bound to every address (0.0.0.0, ::), the user shares it on purpose: any Host is answered
    hosts = ("*",) if host in ("0.0.0.0", "::", "") else (*LOCAL_HOSTS, host)
    app = create_app(session, max_body, hosts)
    print(f"vaekit: serving {run_dir} ({session.description}) at http://{host}:{port}/ "
          "(Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
