"""The read API: conversations, leads, funnels and daily rollups over HTTP.

``create_read_api`` builds an aiohttp sub-application; a composition root
mounts it (``app.add_subapp("/api/v1", create_read_api(...))``). It only reads
the read-model store (and the key store, to open leads); docs/read-api.md is
its reference.

This module holds the application: its route table and the middleware that
answers every error as JSON. The handlers are in ``conversations``, ``leads``,
``funnels`` and ``daily``; ``access`` holds the context, the keys and who may
read what, ``params`` the query parameters and ``errors`` the error type and
the JSON responses (the admin and deliveries routes mounted beside these,
projector/admin_api.py and projector/deliveries_api.py, build on them too).

Status codes, in the order they are decided:

- 401 ``unauthorized``: no key, or a key that is not a site's or the admin's;
- 403 ``forbidden``: a valid key asking for another site's leads or rollups,
  or for a flow its site does not run (site and flow ids are not secret: they
  are in every embedding page);
- 400: a malformed parameter (checked only once the key may ask);
- 404 ``not_found``: nothing there. A conversation of another site is also
  404, never 403: conversation ids are unguessable capabilities, and a 403
  would confirm to another site that the id exists.

A flow's funnel and daily rollup are per site for a site's key: only its own
conversations count, never another site's on the same flow id. The admin key
reads all sites together, or one site with ``?site=``.

Error bodies carry a code and a fixed message, never data. Nothing here logs a
request or response body; the only log line is an unexpected exception's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from projector.api.access import READ_API, ReadApiContext, presented_key
from projector.api.conversations import get_conversation
from projector.api.daily import get_flow_daily, get_site_daily
from projector.api.errors import ApiError, error_response
from projector.api.funnels import get_funnel
from projector.api.leads import get_leads
from projector.store import ReadModelStore
from services.beacons import BeaconCounts
from services.catalog import FlowCatalog
from services.http_auth import authenticate, check_admin_sha256
from services.ports import KeyStore
from services.sites import Site

log = logging.getLogger("leadflow.read_api")


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:  # the router's 404 and 405
        ctx = request.app.get(READ_API)
        if ctx is not None and not authenticate(
            presented_key(request), ctx.sites, ctx.admin_key_sha256
        ):
            return error_response(
                401, "unauthorized", "a valid API key is required"
            )  # 401 comes first
        if exc.status == 404:
            return error_response(404, "not_found", "no such endpoint")
        if exc.status == 405:
            allowed = exc.headers.get("Allow", "GET")
            response = error_response(
                405, "method_not_allowed", f"this endpoint supports {allowed}"
            )
            response.headers["Allow"] = allowed
            return response
        return error_response(exc.status, "http_error", exc.reason)
    except Exception:
        # The request path names ids only; no body, parameter value or lead is logged.
        log.exception("read api: unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error")


def create_read_api(
    store: ReadModelStore,
    keys: KeyStore,
    sites: Mapping[str, Site],
    catalog: FlowCatalog | None,
    admin_key_sha256: str | None = None,
    beacons: BeaconCounts | None = None,
) -> web.Application:
    """The read API as a sub-application, to be mounted at ``/api/v1``.

    ``beacons``: where the widget's views and opens are counted; None (the
    distributed mode, for now): the funnel's ``viewed`` and ``opened`` are null.

    ``admin_key_sha256`` is the SHA-256 hex of a key that may read every site;
    None: no admin key. A site without ``api_key_sha256`` cannot be read but
    by the admin."""
    admin = check_admin_sha256(admin_key_sha256)
    if admin is not None and any(s.api_key_sha256 == admin for s in sites.values()):
        raise ValueError("the admin key must not be a site's key")
    app = web.Application(middlewares=[_errors])
    app[READ_API] = ReadApiContext(store, keys, dict(sites), catalog, admin, beacons)
    app.router.add_get("/conversations/{conversation_id}", get_conversation)
    app.router.add_get("/sites/{site_id}/leads", get_leads)
    app.router.add_get("/sites/{site_id}/daily", get_site_daily)
    app.router.add_get("/flows/{flow_id}/funnel", get_funnel)
    app.router.add_get("/flows/{flow_id}/daily", get_flow_daily)
    return app
