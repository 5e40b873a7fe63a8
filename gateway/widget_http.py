"""The widget's routes: the stable loader ``/widget.js`` and the hashed widget.

Both answer from bytes prepared once at start-up (gateway.widget_assets): content
negotiation picks brotli, gzip or identity (``Vary: Accept-Encoding``), a matching
If-None-Match gets a 304. A hashed name that is not the current one (a page or
loader cached from another release, or a gateway of the other release during a
rolling deploy) is redirected, uncached, to the current widget rather than
answered 404: the widget keeps working, and no cache pins the wrong pair.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aiohttp import web

from gateway.widget_assets import IDENTITY, Asset, WidgetAssets, build, etag_matches

WIDGET_SOURCE = Path(__file__).parent / "static" / "widget.js"
LOADER_PATH = "/widget.js"
HASHED_PATH = "/widget.{digest:[0-9a-f]{16}}.js"
WIDGET_ASSETS = web.AppKey("widget_assets", WidgetAssets)
CONTENT_TYPE = "text/javascript; charset=utf-8"


@cache
def widget_assets() -> WidgetAssets:
    """Built once per process (every app in it serves the same file)."""
    return build(WIDGET_SOURCE.read_text("utf-8"))


def serve(request: web.Request, asset: Asset) -> web.Response:
    variant = asset.select(request.headers.get("Accept-Encoding"))
    headers = {
        "Cache-Control": asset.cache_control,
        "ETag": variant.etag,
        "Vary": "Accept-Encoding",
        # a public script: pages that require CORP (COEP require-corp) may load it too
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if etag_matches(request.headers.get("If-None-Match"), variant.etag):
        return web.Response(status=304, headers=headers)
    if variant.encoding != IDENTITY:
        headers["Content-Encoding"] = variant.encoding
    headers["Content-Type"] = CONTENT_TYPE
    return web.Response(body=variant.body, headers=headers)


async def loader(request: web.Request) -> web.Response:
    return serve(request, request.app[WIDGET_ASSETS].loader)


async def hashed_widget(request: web.Request) -> web.Response:
    assets = request.app[WIDGET_ASSETS]
    if request.match_info["digest"] != assets.digest:
        # relative: right behind a proxy that mounts the gateway under a path prefix
        raise web.HTTPFound(assets.hashed_name, headers={"Cache-Control": "no-store"})
    return serve(request, assets.widget)


def add_widget_routes(app: web.Application) -> None:
    """GET/HEAD ``/widget.js`` and ``/widget.<digest>.js``; builds the assets now, at
    start-up, so no request ever minifies or compresses."""
    app[WIDGET_ASSETS] = widget_assets()
    app.router.add_get(LOADER_PATH, loader)
    app.router.add_get(HASHED_PATH, hashed_widget)
