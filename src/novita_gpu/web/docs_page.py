"""GET /docs: Swagger UI from files shipped in the package, so it works offline and on air-gapped hosts.

FastAPI's own /docs loads Swagger UI's script, stylesheet and icon from public CDNs, so the page was
blank without Internet access. The same page here refers only to this service: its assets are served
from `web/static/swagger-ui/` (swagger-ui-dist, Apache-2.0; its LICENSE and NOTICE sit beside them,
and SWAGGER_UI_VERSION says which release), the online spec validator is switched off, and a
Content-Security-Policy tells the browser to load nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_UI_VERSION = "5.35.0"  # swagger-ui-dist on npm; replace the files in STATIC_DIR to upgrade
STATIC_DIR = Path(__file__).parent / "static" / "swagger-ui"
DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/static"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _csp(html: str) -> str:
    """Only this origin, plus the page's own inline start-up script by its hash (no 'unsafe-inline' for
    scripts). Swagger UI sets style attributes and draws icons from data: URIs; 'Try it out' calls the
    API on this origin."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        "default-src 'none'; "
        f"script-src 'self' {hashes}; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def install_docs_page(app: FastAPI, title: str | None = None) -> None:
    """Serve Swagger UI at /docs with its assets under /docs/static/. Create the app with docs_url=None
    (and keep its openapi_url), so FastAPI does not add its CDN-backed page first."""
    openapi_url = app.openapi_url or "/openapi.json"
    page_title = title or f"{app.title} - Swagger UI"
    pages: dict[str, tuple[bytes, str]] = {}  # root_path -> (body, CSP): the page never changes otherwise

    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="swagger-ui-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        cached = pages.get(root)
        if cached is None:
            page = get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=page_title,
                swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
                oauth2_redirect_url=None,
                # None switches off the badge that sends the document to validator.swagger.io.
                swagger_ui_parameters={"validatorUrl": None},
            )
            body = bytes(page.body)
            cached = pages[root] = (body, _csp(body.decode()))
        body, csp = cached
        return HTMLResponse(
            body,
            headers={
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )
