"""The interactive API docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``), served offline.

FastAPI's own pages load their JavaScript and CSS from a CDN (and ReDoc its fonts from
Google): on a server without Internet access, or behind a strict proxy, ``/docs`` is a
blank page. Here both pages reference only files under ``/docs/assets/``, vendored in
``static/`` with their licenses (``static/README.md`` says from which npm packages).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/docs/assets"

# name in the URL -> (file under static/, media type); nothing else is served
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js",
                             "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    "redoc.standalone.js": ("redoc/redoc.standalone.js", "text/javascript; charset=utf-8"),
    "favicon.png": ("swagger-ui/favicon-32x32.png", "image/png"),
}


def add_docs_routes(app: FastAPI, openapi_url: str, title: str) -> None:
    """Add ``/docs``, ``/redoc`` and their assets; the app is made with ``docs_url=None``."""

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
            # no "validate online" call to an outside validator
            swagger_ui_parameters={"validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url, title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_PATH}/favicon.png", with_google_fonts=False)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        found = ASSETS.get(name)
        if found is None:
            raise HTTPException(404, "Not Found")
        relative, media_type = found
        return FileResponse(STATIC / relative, media_type=media_type)
