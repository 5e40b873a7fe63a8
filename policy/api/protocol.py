"""The policy API's HTTP conventions, shared by every handler.

Answers are JSON and never cached (:func:`json_response`). A handler refuses a
request by raising :class:`ApiError`; the middleware :func:`auth_and_errors`
turns it, aiohttp's own HTTP errors and any unexpected failure into
``{"error": {"code": ..., "message": ...}}``, and first wants
``Authorization: Bearer <key>`` when an admin key is configured (except on the
application's public paths).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from policy.api.context import POLICY_API, PUBLIC, PolicyApiContext
from policy.snapshot import PolicySnapshot
from services.http_auth import authenticate

log = logging.getLogger("leadflow.policy.api")


class ApiError(Exception):
    """A refused request: its HTTP status and the JSON error's code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY)
    response = web.Response(body=body, status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def auth_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """401 without the admin key (when one is configured and the path is not public);
    every error answered as JSON, an unexpected one logged and answered 500."""
    context = request.app[POLICY_API]
    try:
        if context.admin_key_sha256 is not None and request.path not in request.app[PUBLIC]:
            header = request.headers.get("Authorization", "")
            key = header[7:].strip() if header.lower().startswith("bearer ") else None
            if authenticate(key, {}, context.admin_key_sha256) is None:
                raise ApiError(401, "unauthorized", "an admin API key is required")
        return await handler(request)
    except ApiError as exc:
        return json_response({"error": {"code": exc.code, "message": exc.message}}, exc.status)
    except web.HTTPException as exc:
        code = "not_found" if exc.status == 404 else "http_error"
        return json_response({"error": {"code": code, "message": exc.reason}}, exc.status)
    except Exception:
        log.exception("policy API request failed", extra={"path": request.path})
        return json_response({"error": {"code": "internal", "message": "internal error"}}, 500)


def installed_snapshot(context: PolicyApiContext, flow_id: str) -> PolicySnapshot:
    """The flow's installed snapshot (404 ``no_snapshot`` if it has none yet)."""
    snapshot = context.policy.snapshots.get(flow_id)
    if snapshot is None:
        raise ApiError(404, "no_snapshot", "this flow has no policy snapshot yet")
    return snapshot


def text_field(body: Mapping[str, Any], name: str) -> str:
    """The body's field ``name``, which must be a non-empty string (else 400)."""
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(400, "bad_request", f"{name} must be a non-empty string")
    return value
