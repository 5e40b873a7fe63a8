"""The read API's errors and its JSON responses.

A handler raises :class:`ApiError` (or takes one from ``_unauthorized``,
``_forbidden`` or ``_not_found``, whose messages are fixed); the read API's
middleware (:mod:`projector.api`) answers it with ``_error``: a JSON body with
a code and a message, never data. ``_json`` marks every response
``Cache-Control: no-store``, as leads carry personal data. The admin and
deliveries routes mounted beside the read API answer the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.message = message


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    response = web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def _error(status: int, code: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="leadflow"'} if status == 401 else None
    return _json({"error": {"code": code, "message": message}}, status, headers)


def _unauthorized() -> ApiError:
    return ApiError(401, "unauthorized", "a valid API key is required")


def _forbidden() -> ApiError:
    return ApiError(403, "forbidden", "this key may not read this resource")


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")
