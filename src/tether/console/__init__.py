"""The web console: a browser client of the native API, served by ``tether serve`` at ``/``.

It is static files only (``static/``: one HTML page, plain CSS, native ES modules; no build
step), so it holds no private endpoint and no server-side state: everything it shows and
does goes through the public REST API and the client WebSocket, with the signed-in user's
token and rights. Nothing is loaded from anywhere else.

Every file is sent with a Content-Security-Policy that allows scripts, styles and
connections from this origin only, and no inline script or style: markup injected into
the page through a data value could not run.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"

#: ``'self'`` covers the same-origin WebSocket (``ws:``/``wss:``) in current browsers.
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Revalidated on every load (ETag/Last-Modified), so an upgrade is seen at once.
    "Cache-Control": "no-cache",
}
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def _file(path: Path) -> web.FileResponse:
    response = web.FileResponse(path, headers=HEADERS)
    response.content_type = TYPES.get(path.suffix, "application/octet-stream")
    return response


async def index(request: web.Request) -> web.StreamResponse:
    return _file(STATIC / "index.html")


async def asset(request: web.Request) -> web.StreamResponse:
    """A file under ``static/``; anything outside it (``..``, links) is 404."""
    root = STATIC.resolve()
    wanted = (root / request.match_info["path"]).resolve()
    if not wanted.is_relative_to(root) or not wanted.is_file() or wanted.suffix not in TYPES:
        raise web.HTTPNotFound()
    return _file(wanted)


def mount(app: web.Application) -> None:
    """Serve the console: the page at ``/``, its files under ``/console/``."""
    app.router.add_get("/", index)
    app.router.add_get("/console/{path:.+}", asset)
