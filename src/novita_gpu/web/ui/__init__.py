"""GET /ui: the dashboard, plain HTML + one script + one stylesheet shipped in the package (no build step,
nothing from a CDN, so it works offline and on air-gapped hosts).

The page only calls this service's public API with the caller's key (kept in the tab's sessionStorage,
sent as a header, never in a URL) and reads the event stream with fetch() (EventSource cannot send a
header). It asks GET /api/me who the key is and shows only what its role may do: no actions for a viewer;
the team's quotas and keys and the audit trail for admins and owners. Its Content-Security-Policy allows scripts, styles and connections to this origin only: no
inline script or style, so an instance name holding HTML can never run, and the script writes every
value with textContent.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

STATIC_DIR = Path(__file__).parent / "static"
UI_PATH = "/ui"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # small files, revalidated: an upgrade is seen at the next load
}


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard at /ui and its two assets at /ui/app.js and /ui/app.css."""
    files = {
        name: (path.read_bytes(), _TYPES[path.suffix])
        for name in ("index.html", "app.js", "app.css")
        if (path := STATIC_DIR / name)
    }

    def serve(name: str) -> Response:
        body, media_type = files[name]
        return Response(body, media_type=media_type, headers=_HEADERS)

    @app.get(UI_PATH, include_in_schema=False)
    async def ui_page() -> Response:
        return serve("index.html")

    @app.get(f"{UI_PATH}/app.js", include_in_schema=False)
    async def ui_script() -> Response:
        return serve("app.js")

    @app.get(f"{UI_PATH}/app.css", include_in_schema=False)
    async def ui_styles() -> Response:
        return serve("app.css")
