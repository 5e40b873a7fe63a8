"""The admin API's flow routes: validate, publish, list, fetch, diff and activate
flow versions (docs/admin-api.md). Mounted on the read API (``/api/v1``).

Every route needs a key with the write scope: the admin key, or a site key whose
``api_key_scopes`` has ``write``. A site key works on the flows its site allows
(a site without a ``flows`` list allows every flow) and activates versions for its
own site only; only the admin activates a version for every site. Bad input
changes nothing: a document over the size limit is 413, an invalid one 422 with
every error (file, node, field), a stale ``If-Match`` 409.

``POST /flows/preview`` makes a draft of a document (a registry record of its
own, so every process can play it) and answers a signed preview token for the
widget's ``data-preview`` (services/preview_tokens.py): a site key's token plays
on its own site only, the admin's on any. The tokens are signed with keys derived
from the gateway's resume secrets: the gateway this API is mounted on (``leadflow
serve``), or the ``previews`` given to :func:`add_flow_admin_routes`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from gateway.keys import CONTEXT
from projector.api.access import READ_API, ReadApiContext, presented_key
from projector.api.errors import ApiError, json_response, not_found_response
from schemas.flow import Flow
from schemas.flow_errors import FlowError
from schemas.flow_limits import MAX_FLOW_BYTES
from schemas.flow_registry import ALL_SITES, FlowPublished
from schemas.flow_validation import checked_document
from services.http_auth import Principal, authenticate
from services.preview_tokens import ANY_SITE, PreviewTokens
from services.registry.core import Conflict, DraftCollision, Registry, UnknownVersion
from services.registry.diff import diff
from services.registry.feed import RegistryBusy, RegistryFeed

REGISTRY = web.AppKey("registry", RegistryFeed)
PREVIEWS = web.AppKey("previews", PreviewTokens)
_VERSION_CHARS = 9

AdminHandler = Callable[[web.Request, ReadApiContext, Principal], Awaitable[web.Response]]


def _admin(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        ctx = request.app[READ_API]
        principal = authenticate(presented_key(request), ctx.sites, ctx.admin_key_sha256)
        if principal is None:
            raise ApiError(401, "unauthorized", "a valid API key is required")
        if not principal.write:
            raise ApiError(403, "forbidden", "this key has no write scope")
        try:
            return await handler(request, ctx, principal)
        except RegistryBusy:
            raise ApiError(503, "busy", "the flow registry kept changing; try again") from None

    return wrapped


def _feed(request: web.Request) -> RegistryFeed:
    return request.app[REGISTRY]


def _who(principal: Principal) -> str:
    return "admin" if principal.site_id is None else f"site:{principal.site_id}"


def _may_use_flow(ctx: ReadApiContext, principal: Principal, flow_id: str) -> None:
    if not _visible(ctx, principal, flow_id):
        raise ApiError(403, "forbidden", "this key may not change this flow")


def _version_param(raw: str | None, name: str) -> int:
    if raw is None or not raw.isdigit() or len(raw) > _VERSION_CHARS:
        raise ApiError(400, "bad_parameter", f"{name} must be a version number")
    return int(raw)


async def _body(request: web.Request) -> bytes:
    """The request body, refused with 413 past the flow size limit."""
    length = request.content_length
    if length is not None and length > MAX_FLOW_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_FLOW_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large() -> ApiError:
    return ApiError(413, "too_large", f"a flow document may have at most {MAX_FLOW_BYTES} bytes")


def _filename(request: web.Request) -> str:
    return "flow.json" if request.content_type == "application/json" else "flow.yaml"


def _errors_json(errors: list[FlowError]) -> list[dict[str, str]]:
    return [
        {"file": e.file, "node": e.node, "field": e.field, "message": e.message} for e in errors
    ]


def _invalid(errors: list[FlowError]) -> web.Response:
    return json_response(
        {
            "error": {
                "code": "invalid_flow",
                "message": f"the flow has {len(errors)} error(s)",
                "errors": _errors_json(errors),
            }
        },
        422,
    )


async def _document(request: web.Request) -> tuple[dict[str, Any] | None, list[FlowError]]:
    doc, _, errors = checked_document(await _body(request), _filename(request))
    return doc, errors


@_admin
async def validate_flow(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    doc, errors = await _document(request)
    if doc is None:
        return _invalid(errors)
    return json_response({"valid": True, "flow_id": doc["id"], "version": doc.get("version")})


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")


def _active_for(registry: Registry, flow_id: str, version: int) -> list[str]:
    sites = [s or "*" for (s, f), v in registry.active.items() if f == flow_id and v == version]
    if not any(f == flow_id and s == ALL_SITES for s, f in registry.active) and (
        registry.latest(flow_id) == version
    ):
        sites.append("*")  # no activation for every site: the highest version serves them
    return sorted(set(sites))


def _version_json(registry: Registry, record: FlowPublished) -> dict[str, Any]:
    return {
        "flow_id": record.flow_id,
        "version": record.version,
        "content_hash": record.content_hash,
        "published_by": record.published_by,
        "published_at": _iso(record.published_at),
        "active_for": _active_for(registry, record.flow_id, record.version),
    }


def _visible(ctx: ReadApiContext, principal: Principal, flow_id: str) -> bool:
    if principal.site_id is None:
        return True
    site = ctx.sites.get(principal.site_id)
    return site is not None and site.allows_flow(flow_id)


@_admin
async def list_flows(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    registry = _feed(request).registry
    flows = []
    for flow_id in registry.flow_ids():
        if not _visible(ctx, principal, flow_id):
            continue
        active = registry.active_version(flow_id, principal.site_id or ALL_SITES)
        flows.append(
            {"flow_id": flow_id, "versions": registry.versions(flow_id), "active_version": active}
        )
    return json_response({"flows": flows})


def _known_flow(
    registry: Registry, ctx: ReadApiContext, principal: Principal, flow_id: str
) -> None:
    if not registry.versions(flow_id) or not _visible(ctx, principal, flow_id):
        raise not_found_response("flow")  # another site's flow looks like no flow


def _record(registry: Registry, flow_id: str, version: int) -> FlowPublished:
    record = registry.published.get((flow_id, version))
    if record is None:
        raise not_found_response("version")
    return record


@_admin
async def list_versions(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    registry = _feed(request).registry
    flow_id = request.match_info["flow_id"]
    _known_flow(registry, ctx, principal, flow_id)
    versions = [
        _version_json(registry, registry.published[(flow_id, v)])
        for v in registry.versions(flow_id)
    ]
    return json_response({"flow_id": flow_id, "versions": versions})


@_admin
async def get_version(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    registry = _feed(request).registry
    flow_id = request.match_info["flow_id"]
    _known_flow(registry, ctx, principal, flow_id)
    record = _record(registry, flow_id, _version_param(request.match_info["version"], "version"))
    return json_response({**_version_json(registry, record), "document": record.document})


def _flow_of(feed: RegistryFeed, flow_id: str, version: int) -> Flow:
    _record(feed.registry, flow_id, version)
    flow = feed.catalog.get(flow_id, version)
    if flow is None:
        raise not_found_response("version")
    return flow


@_admin
async def diff_versions(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    feed = _feed(request)
    flow_id = request.match_info["flow_id"]
    _known_flow(feed.registry, ctx, principal, flow_id)
    old = _version_param(request.query.get("from"), "from")
    new = _version_param(request.query.get("to"), "to")
    changes = diff(_flow_of(feed, flow_id, old), _flow_of(feed, flow_id, new))
    return json_response({"flow_id": flow_id, "from": old, "to": new, **changes.as_json()})


def _activation_site(ctx: ReadApiContext, principal: Principal, asked: str | None) -> str:
    """The site an activation is for: a site key's own; for the admin the one
    asked for, or every site."""
    if principal.site_id is not None:
        if asked not in (None, principal.site_id):
            raise ApiError(403, "forbidden", "a site key activates versions for its own site only")
        return principal.site_id
    if asked in (None, "", "*"):
        return ALL_SITES
    if asked not in ctx.sites:
        raise not_found_response("site")
    return asked


@_admin
async def publish_flow(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    if_match = request.headers.get("If-Match")
    expected = None if if_match is None else _version_param(if_match.strip('"'), "If-Match")
    activate = request.query.get("activate", "true")
    if activate not in ("true", "false"):
        raise ApiError(400, "bad_parameter", "activate must be true or false")
    site = _activation_site(ctx, principal, request.query.get("site"))
    doc, errors = await _document(request)
    if doc is None:
        return _invalid(errors)
    _may_use_flow(ctx, principal, str(doc["id"]))
    plan = await _feed(request).publish(
        doc, _who(principal), activate_for=site if activate == "true" else None, if_match=expected
    )
    if isinstance(plan, Conflict):
        raise ApiError(
            409,
            "conflict",
            f"If-Match is {expected}, the flow's latest version is {plan.latest or 0}",
        )
    record = _feed(request).registry.published[(str(doc["id"]), plan.version)]
    body = {**_version_json(_feed(request).registry, record), "created": plan.created}
    return json_response(body, 201 if plan.created else 200, {"ETag": f'"{plan.version}"'})


@_admin
async def activate_flow(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    flow_id = request.match_info["flow_id"]
    feed = _feed(request)
    _known_flow(feed.registry, ctx, principal, flow_id)  # another site's flow: 404
    try:
        body = orjson.loads(await _body(request))
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_body", 'the body must be JSON: {"version": N}') from None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("version"), int)
        or isinstance(body.get("version"), bool)
    ):
        raise ApiError(400, "bad_body", 'the body must be JSON: {"version": N}')
    site = _activation_site(ctx, principal, body.get("site"))
    done = await feed.activate(flow_id, body["version"], site, _who(principal))
    if isinstance(done, UnknownVersion):
        raise not_found_response("version")
    return json_response({"flow_id": flow_id, "version": done.version, "site": site or "*"})


def _previews(request: web.Request) -> PreviewTokens:
    """The preview tokens' signer: the one given, else the gateway's this API is
    mounted on (its resume secrets), else 503."""
    previews = request.app.get(PREVIEWS)
    if previews is not None:
        return previews
    gateway = request.config_dict.get(CONTEXT)
    if gateway is None:
        raise ApiError(503, "previews_unavailable", "this server cannot sign preview tokens")
    return gateway.preview_tokens()


@_admin
async def preview_flow(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    signer = _previews(request)
    doc, errors = await _document(request)
    if doc is None:
        return _invalid(errors)
    flow_id = str(doc["id"])
    _may_use_flow(ctx, principal, flow_id)
    drafted = await _feed(request).draft(doc, _who(principal))
    if isinstance(drafted, DraftCollision):
        message = "another draft of this flow has this draft's number; change it a little"
        raise ApiError(409, "conflict", message)
    record = drafted.record
    site = principal.site_id or ANY_SITE
    token, expires_at = signer.issue(flow_id, record.version, site, time.time())
    return json_response(
        {
            "preview": token,
            "flow_id": flow_id,
            "content_hash": record.content_hash,
            "version": record.version,
            "site": site,
            "expires_at": _iso(expires_at),
        },
        201,
    )


def add_flow_admin_routes(
    read_api: web.Application, feed: RegistryFeed, previews: PreviewTokens | None = None
) -> None:
    """Mount the flow routes on the read API (before it is frozen). ``previews``
    signs preview tokens (None: the gateway the read API is mounted on does)."""
    read_api[REGISTRY] = feed
    if previews is not None:
        read_api[PREVIEWS] = previews
    read_api.router.add_post("/flows/preview", preview_flow)
    read_api.router.add_post("/flows/validate", validate_flow)
    read_api.router.add_get("/flows", list_flows)
    read_api.router.add_post("/flows", publish_flow)
    read_api.router.add_get("/flows/{flow_id}/versions", list_versions)
    read_api.router.add_get("/flows/{flow_id}/versions/{version}", get_version)
    read_api.router.add_get("/flows/{flow_id}/diff", diff_versions)
    read_api.router.add_put("/flows/{flow_id}/active", activate_flow)
