"""The web console: its static files, served from the package at ``/`` and ``/console/{name}``.

Public, since the page holds no data: it asks for an API token and sends it with every API call. The
files are read once, when this module is imported, from the package's ``app/console`` folder only, so no
request path can name another file. Everything the page loads comes from here (no CDN), and the
Content-Security-Policy says so to the browser.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import ApiError, route_doc

routes = web.RouteTableDef()

FOLDER = Path(__file__).resolve().parent.parent / "console"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
FILES: dict[str, tuple[bytes, str]] = {
    path.name: (path.read_bytes(), _TYPES[path.suffix])
    for path in sorted(FOLDER.glob("*")) if path.is_file() and path.suffix in _TYPES
}
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new gateway release must not run with the previous release's script from a cache.
    "Cache-Control": "no-cache",
}


def _file(name: str) -> web.Response:
    found = FILES.get(name)
    if found is None:
        raise ApiError(404, f"no console file {name}")
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=HEADERS)


@routes.get("/")
@route_doc("The web console (a static page; it asks for the API token)", public=True, answer=schemas.HTML)
async def index(_request: web.Request) -> web.Response:
    return _file("index.html")


@routes.get("/console/{name}")
@route_doc("The web console's script and style sheet", public=True, answer=schemas.CONSOLE_ASSET)
async def asset(request: web.Request) -> web.Response:
    return _file(request.match_info["name"])
