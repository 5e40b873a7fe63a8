"""Who may read what: the read API's context, its keys and its checks.

``authenticated`` wraps every handler: no key, or one that is not a site's or
the admin's, is 401 before anything else is looked at. ``require_site`` and
``require_flow`` then decide 403 (another site's data, a flow the site does
not run) and 404; the order and the reasons are in :mod:`projector.api`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from projector.api.errors import forbidden_response, not_found_response, unauthorized_response
from projector.store import ReadModelStore
from services.beacons import BeaconCounts
from services.catalog import FlowCatalog
from services.http_auth import Principal, authenticate
from services.ports import KeyStore
from services.sites import Site


@dataclass(frozen=True, slots=True)
class ReadApiContext:
    store: ReadModelStore
    keys: KeyStore
    sites: Mapping[str, Site]
    catalog: FlowCatalog | None
    admin_key_sha256: str | None
    beacons: BeaconCounts | None = None  # the widget's views and opens (embedded mode)


READ_API = web.AppKey("read_api", ReadApiContext)


def presented_key(request: web.Request) -> str | None:
    """The key of ``Authorization: Bearer <key>``, else of ``X-Api-Key``."""
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None
    return request.headers.get("X-Api-Key", "").strip() or None


Handler = Callable[[web.Request, ReadApiContext, Principal], Awaitable[web.Response]]


def authenticated(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        ctx = request.app[READ_API]
        principal = authenticate(presented_key(request), ctx.sites, ctx.admin_key_sha256)
        if principal is None:
            raise unauthorized_response()
        return await handler(request, ctx, principal)

    return wrapped


def require_site(ctx: ReadApiContext, principal: Principal, site_id: str) -> None:
    if not principal.may_read_site(site_id):
        raise forbidden_response()
    if site_id not in ctx.sites:
        raise not_found_response("site")  # only the admin gets here with an unknown site


def require_flow(
    request: web.Request, ctx: ReadApiContext, principal: Principal, flow_id: str
) -> str | None:
    """Check that the key may read ``flow_id``'s aggregates; return the site they
    are of: a site key's own site, always (``?site=`` may name only that one);
    for the admin the site of ``?site=``, or None: all sites together."""
    asked = request.query.get("site")
    if principal.site_id is not None:
        site = ctx.sites.get(principal.site_id)
        if site is None or not site.allows_flow(flow_id):
            raise forbidden_response()
        if asked is not None and asked != principal.site_id:
            raise forbidden_response()
    if ctx.catalog is not None and ctx.catalog.latest(flow_id) is None:
        raise not_found_response("flow")
    if principal.site_id is not None:
        return principal.site_id
    if asked is not None and asked not in ctx.sites:
        raise not_found_response("site")
    return asked
