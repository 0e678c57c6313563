"""The OpenAPI schema and its two readers, Swagger UI at ``/docs`` and ReDoc at ``/redoc``, working offline.

FastAPI's pages load their scripts from a CDN, so they stay blank on a closed network.
The scripts here come from the installed ``fastapi-offline`` package (MIT), served under
``/static/docs/`` like the web page's own files; the pages name no other host. ReDoc's script
asks cdn.redoc.ly for the logo of its footer link; the copy served here points that at an empty
``data:`` URL instead, which the script's own error handler hides.
"""
from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import FastAPI, params
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/static/docs"
FAVICON = "/favicon.ico"  # the web page's; FastAPI's default is fastapi.tiangolo.com's
REDOC_SCRIPT = f"{ASSETS}/redoc.offline.js"
_REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def offline_redoc() -> bytes:
    """fastapi-offline's ReDoc script with its one outside request, the footer's logo, made an empty data: URL."""
    script = (files("fastapi_offline") / "static" / "redoc.standalone.js").read_text(encoding="utf-8")
    return script.replace(_REDOC_LOGO, "data:,").encode()


def install_docs(app: FastAPI, dependencies: list[params.Depends]) -> None:
    """Add ``/openapi.json``, ``/docs`` and ``/redoc`` behind ``dependencies``, and their scripts (public, no data)."""
    @app.get(REDOC_SCRIPT, include_in_schema=False)  # before the mount below, which would answer it
    def redoc_script() -> Response:
        return Response(offline_redoc(), media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")

    @app.get("/openapi.json", include_in_schema=False, dependencies=dependencies)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=dependencies)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            # Swagger UI would otherwise ask validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False, dependencies=dependencies)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=REDOC_SCRIPT,
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
