"""The instant opening's routes (services.opening): a short-lived pointer and the
content-hashed, immutable document it names.

``GET /opening/{site}/{flow}?locale=TAG`` resolves what may change: the flow's active
version for the site (the registry activates new ones while the gateway runs) and
the declared locale the visitor's locale picks. It answers ``302`` to
``{flow}/{version}.{digest}.json`` (relative, so a proxy may mount the gateway under
a prefix), cached for POINTER_MAX_AGE seconds, or, for an opening that reads the
visitor (``instant: false``), that small document itself, cached alike. A browser's
``fetch`` follows the redirect, so the widget reads one JSON document either way.

``GET /opening/{site}/{flow}/{version}.{digest}.json`` never changes: cached for a
year, ``immutable``. Publishing a version changes the pointer, hence the name; a
name of an older version still answers while the gateway holds that version (a
pointer cached before a publish), and the widget reconciles it with the server's
first reply (docs/protocol.md, *The instant opening*).

Both check the site, its flows and the page's ``Origin`` like ``POST /beacon``
(a request with an ``Origin`` the site does not allow is 403; one without is a
same-origin page or not a browser: served, with no CORS header), and answer the
allowed origin with ``Access-Control-Allow-Origin`` (``Vary: Origin``). Documents
are built once per flow version and locale (a bounded cache) and compressed like
the widget (gateway.widget_assets); requests only negotiate.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import orjson
from aiohttp import web

from gateway.widget_assets import IDENTITY, IMMUTABLE_CACHE, Asset, etag_matches, prepare
from schemas.flow import Flow
from services.catalog import FlowCatalog
from services.opening import Opening, build_opening, opening_locale
from services.sites import Site

POINTER_PATH = "/opening/{site}/{flow}"
DOCUMENT_PATH = "/opening/{site}/{flow}/{version:[1-9][0-9]{0,8}}.{digest:[0-9a-f]{16}}.json"
POINTER_MAX_AGE = 30  # seconds a publish may take to reach a visitor's opening
POINTER_CACHE = f"public, max-age={POINTER_MAX_AGE}"
MAX_LOCALE_CHARS = 500  # as the start context's locale
CACHED_OPENINGS = 512  # flow versions x locales kept built
CONTENT_TYPE = "application/json"


class Openings:
    """Built openings by (flow, version, locale), least recently used dropped first."""

    def __init__(self, capacity: int = CACHED_OPENINGS) -> None:
        self._capacity = capacity
        self._built: OrderedDict[tuple[str, int, str], tuple[Opening, Asset]] = OrderedDict()

    def get(self, flow: Flow, locale: str) -> tuple[Opening, Asset]:
        key = (flow.id, flow.version, locale)
        found = self._built.get(key)
        if found is None:
            opening = build_opening(flow, locale)
            found = (opening, prepare(opening.body, IMMUTABLE_CACHE))
            self._built[key] = found
            if len(self._built) > self._capacity:
                self._built.popitem(last=False)
        else:
            self._built.move_to_end(key)
        return found


class OpeningRoutes:
    def __init__(self, sites: Mapping[str, Site], catalog: FlowCatalog) -> None:
        self.sites = sites
        self.catalog = catalog
        self.openings = Openings()

    def _checked(self, request: web.Request) -> tuple[str, dict[str, str]]:
        """The flow id and the CORS headers, or an HTTP error like ``/beacon``'s."""
        site = self.sites.get(request.match_info["site"])
        if site is None:
            raise _refusal(404, "unknown_site", "unknown site")
        origins = request.headers.getall("Origin", [])
        headers = {"Vary": "Origin, Accept-Encoding"}
        if origins:
            if len(origins) != 1 or not site.allows_origin(origins[0]):
                raise _refusal(403, "origin_not_allowed", "this page may not embed the widget")
            headers["Access-Control-Allow-Origin"] = origins[0]
        flow_id = request.match_info["flow"]
        if not site.allows_flow(flow_id):
            raise _refusal(404, "unknown_flow", "unknown flow")
        return flow_id, headers

    async def pointer(self, request: web.Request) -> web.Response:
        flow_id, headers = self._checked(request)
        flow = self.catalog.for_site(flow_id, request.match_info["site"])
        if flow is None:
            raise _refusal(404, "unknown_flow", "unknown flow")
        visitor_locale = request.query.get("locale", "")[:MAX_LOCALE_CHARS]
        opening, asset = self.openings.get(flow, opening_locale(flow, visitor_locale))
        headers["Cache-Control"] = POINTER_CACHE
        if not opening.instant:
            return _serve(request, asset, headers)
        headers["ETag"] = f'"{opening.digest}"'
        if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
            return web.Response(status=304, headers=headers)
        headers["Location"] = f"{flow_id}/{opening.name}"
        return web.Response(status=302, headers=headers)

    async def document(self, request: web.Request) -> web.Response:
        flow_id, headers = self._checked(request)
        flow = self.catalog.get(flow_id, int(request.match_info["version"]))
        digest = request.match_info["digest"]
        if flow is not None:
            for locale in flow.locales or ("",):
                opening, asset = self.openings.get(flow, locale)
                if opening.digest == digest and opening.instant:
                    headers["Cache-Control"] = IMMUTABLE_CACHE
                    return _serve(request, asset, headers)
        raise _refusal(404, "unknown_opening", "no such opening")


def _serve(request: web.Request, asset: Asset, headers: dict[str, str]) -> web.Response:
    variant = asset.select(request.headers.get("Accept-Encoding"))
    headers = headers | {"ETag": variant.etag}
    if etag_matches(request.headers.get("If-None-Match"), variant.etag):
        return web.Response(status=304, headers=headers)
    if variant.encoding != IDENTITY:
        headers["Content-Encoding"] = variant.encoding
    headers["Content-Type"] = CONTENT_TYPE
    return web.Response(body=variant.body, headers=headers)


def _refusal(status: int, code: str, message: str) -> web.HTTPException:
    """An error as ``/beacon`` answers it: JSON ``{"error": {"code", "message"}}``, uncached."""
    kind = web.HTTPForbidden if status == 403 else web.HTTPNotFound
    body = orjson.dumps({"error": {"code": code, "message": message}}).decode()
    return kind(text=body, content_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})


def add_opening_routes(
    app: web.Application, sites: Mapping[str, Site], catalog: FlowCatalog
) -> None:
    """GET/HEAD the pointer and the hashed document (docs/protocol.md, *HTTP endpoints*)."""
    routes = OpeningRoutes(sites, catalog)
    app.router.add_get(POINTER_PATH, routes.pointer)
    app.router.add_get(DOCUMENT_PATH, routes.document)
