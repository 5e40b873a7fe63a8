"""The read API's errors and its JSON responses.

A handler raises :class:`ApiError` (or takes one from ``unauthorized_response``,
``forbidden_response`` or ``not_found_response``, whose messages are fixed); the read API's
middleware (:mod:`projector.api`) answers it with ``error_response``: a JSON body with
a code and a message, never data. ``json_response`` marks every response
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


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.Response(body=orjson.dumps(data), status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    if headers:
        response.headers.update(headers)
    return response


def error_response(status: int, code: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="leadflow"'} if status == 401 else None
    return json_response({"error": {"code": code, "message": message}}, status, headers)


def unauthorized_response() -> ApiError:
    return ApiError(401, "unauthorized", "a valid API key is required")


def forbidden_response() -> ApiError:
    return ApiError(403, "forbidden", "this key may not read this resource")


def not_found_response(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no such {what}")
