"""The studio's HTTP routes: ``/studio/`` and its files (:mod:`projector.studio_assets`).

The files are public and hold no secret; the page asks for a key and calls the admin
API (``/api/v1``) with it, where every route checks it. The composition root mounts
this on the server's app (``add_studio_routes(app)``), next to the API.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from projector.studio_assets import (
    CSP,
    PREVIEW_PAGE,
    WIDGET_JS,
    Asset,
    accepts_gzip,
    asset_name,
    load_assets,
    make_asset,
    not_modified,
    preview_csp,
    security_headers,
)
from projector.studio_config import EMBEDDED, StudioConfig

log = logging.getLogger(__name__)
STUDIO_ASSETS = web.AppKey("studio_assets", Mapping[str, Asset])
PREVIEW_CSP = web.AppKey("studio_preview_csp", str)
CONFIG = "config.json"  # built from the server's settings, not a file


async def _redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect("/studio/", headers=security_headers())


async def _serve(request: web.Request) -> web.StreamResponse:
    name = asset_name(request.match_info.get("tail", ""))
    asset = request.app[STUDIO_ASSETS].get(name)
    headers = security_headers(request.app[PREVIEW_CSP] if name == PREVIEW_PAGE else CSP)
    if asset is None:
        return web.Response(status=404, text="not found", headers=headers)
    headers["ETag"] = asset.etag
    if asset.gzipped is not None:
        headers["Vary"] = "Accept-Encoding"
    if not_modified(request.headers.get("If-None-Match"), asset.etag):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and accepts_gzip(request.headers.get("Accept-Encoding")):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    response = web.Response(body=body, headers=headers)
    response.content_type, _, charset = asset.content_type.partition("; charset=")
    if charset:
        response.charset = charset
    return response


def add_studio_routes(
    app: web.Application,
    assets: Mapping[str, Asset] | None = None,
    config: StudioConfig = EMBEDDED,
) -> None:
    """Serve the studio at ``/studio/`` (files read now, once), with ``config`` as
    ``/studio/config.json``: where the preview loads the widget (the server's own
    ``/widget.js`` by default, as ``leadflow serve`` has it; a gateway's in the
    distributed mode, whose origin the preview page's CSP then allows)."""
    files = load_assets() if assets is None else assets
    if "index.html" not in files:  # an install without the package data
        log.warning("the studio's files are missing: /studio/ answers 404")
    app[STUDIO_ASSETS] = {**files, CONFIG: make_asset(CONFIG, config.to_json())}
    app[PREVIEW_CSP] = preview_csp(WIDGET_JS.read_text("utf-8"), config.widget_origin)
    app.router.add_get("/studio", _redirect)
    app.router.add_get("/studio/", _serve)
    app.router.add_get("/studio/{tail:[A-Za-z0-9_./-]+}", _serve)
