"""The web API: builds the FastAPI app, its middleware and routers, and mounts the web page.

Run it with ``uvicorn --factory service.app:create_app`` (settings from the environment)
or ``gdc serve``. It never imports torch: jobs go to the workers through Redis.
"""
from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image

from worker.connection import connect
from worker.queue import open_queue

from .deps import require_api_key
from .docs import install_docs
from .errors import install_error_handlers
from .metrics import install_metrics
from .middleware import BodySizeLimit
from .routes import cvat, health, jobs, labelstudio, options, segment
from .settings import Settings

STATIC_DIR = Path(__file__).parent / "static"

DESCRIPTION = """
Scribbles in, full label maps out, with Gaussian dynamic convolution.

**Flow.** `POST /segment` an image with scribbles (a label or colour PNG, or strokes JSON) and get
a job id; poll `GET /jobs/{id}` (or add `?wait=S` to the POST) until it `succeeded`; then
fetch `/jobs/{id}/mask`, `/overlay`, `/probabilities`, `/uncertainty`.

**Errors** are `{"detail": "..."}` naming the problem: 422 bad input, 413 too large,
401 missing or wrong `X-API-Key` (when the server has keys), 404 unknown or expired job,
409 results asked for before the job succeeded, 429 more than `GDC_MAX_QUEUED` jobs are
waiting, 503 the job store (Redis) is unreachable or full (for 429 and 503 nothing was
stored; send it again after `Retry-After` seconds).

**Images** are PNG, JPEG, WebP, TIFF or BMP, recognised from their bytes. Grey, palette,
16-bit and CMYK images are converted to 8-bit RGB and alpha is dropped; of an animated
PNG or WebP, or a multi-page TIFF, the first frame is segmented. GIF and floating-point
images are refused. The API reads an image's header and checks that a PNG or JPEG file is whole;
its pixels are decoded by the worker, so damage inside them fails the job with `invalid_input`.

**Keys.** With `GDC_API_KEYS` set, every route needs `X-API-Key` (or the key as an HTTP
basic-auth password, as Label Studio sends it), these docs and
`/openapi.json` included, except `/healthz`, `/readyz` and the web page (`/`, `/static/*`),
which hold no data. Job ids are 128-bit random: a job is readable by whoever holds its id.

**Results** live for `GDC_RESULT_TTL` seconds (default one hour), failed and canceled jobs
for `GDC_FAILURE_TTL`. Per job Redis holds the image file plus about H*W*(K+2) bytes
before PNG compression (K classes).

**Callbacks.** With `callback_url`, the final job body is POSTed there when the job ends,
retried with back-off. With a server secret it is signed: `X-GDC-Timestamp: t` and
`X-GDC-Signature: sha256=<hex HMAC-SHA256(secret, t + "." + raw body)>`; recompute it over
the raw body, compare in constant time, and refuse old timestamps.
"""


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # What exists once the app starts (modules, routes, pydantic schemas) lives as long as the process: frozen, the
    # cycle collector's full passes stop walking it. They had paused the event loop every few seconds under load,
    # the slowest 1% of uploads (benchmarks/RESULTS.md, the front door).
    gc.freeze()
    yield


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (read from the environment when None)."""
    settings = settings or Settings()
    if not settings.redis_configured:
        raise RuntimeError(
            "neither REDIS_URL nor GDC_REDIS_SENTINELS is set: point one at Redis, or run `gdc serve`, which starts one"
        )
    Image.MAX_IMAGE_PIXELS = settings.max_pixels  # Pillow refuses twice this before decoding anything

    # The docs are added below behind the API key, like every route that shows more than health.
    app = FastAPI(
        title="gdc",
        version=version("gdc"),
        description=DESCRIPTION,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.redis = connect(settings)
    app.state.queue = open_queue(app.state.redis, settings.queue)
    install_metrics(app, app.state.queue)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(  # outermost, so error answers carry CORS headers too
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["*"],
        expose_headers=["Location", "X-Classes", "Content-Disposition"],
    )
    install_error_handlers(app)

    for module in (segment, jobs, options, health, labelstudio, cvat):
        app.include_router(module.router)

    install_docs(app, [Depends(require_api_key)])  # mounts /static/docs, so before /static
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        page = STATIC_DIR / "index.html"
        if not page.is_file():
            raise HTTPException(status_code=404, detail="the web page is not installed")
        return FileResponse(page)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:  # browsers ask for it at the root, whatever the page links
        return FileResponse(STATIC_DIR / "favicon.ico", media_type="image/vnd.microsoft.icon")

    return app
