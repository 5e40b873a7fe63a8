"""The read API's query parameters: integers in a range and day ranges.

A malformed or out-of-range value is a 400 with a code of its own and a fixed
message saying what is accepted; it is checked only once the key may ask.
"""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from projector.api.errors import ApiError

DEFAULT_DAYS, MAX_DAYS = 30, 92

_INT = re.compile(r"[0-9]{1,18}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def int_param(request: web.Request, name: str, default: int, low: int, high: int, code: str) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    value = int(raw) if _INT.fullmatch(raw) else -1
    if not low <= value <= high:
        raise ApiError(400, code, f"{name} must be an integer from {low} to {high}")
    return value


def _day_param(request: web.Request, name: str) -> dt.date | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        if not _DAY.fullmatch(raw):
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "bad_date", f"{name} must be a date as YYYY-MM-DD") from None


def day_range(request: web.Request) -> list[dt.date]:
    """The days of ``from``..``to``, inclusive (defaults: ``to`` today (UTC),
    ``from`` 29 days before ``to``)."""
    start, end = _day_param(request, "from"), _day_param(request, "to")
    if end is None:
        end = dt.datetime.now(dt.UTC).date()
    if start is None:
        try:
            start = end - dt.timedelta(days=DEFAULT_DAYS - 1)
        except OverflowError:  # to=0001-01-01
            raise ApiError(400, "bad_range", "to is too early") from None
    days = (end - start).days + 1
    if days < 1:
        raise ApiError(400, "bad_range", "from must not be after to")
    if days > MAX_DAYS:
        raise ApiError(400, "bad_range", f"at most {MAX_DAYS} days per request")
    return [start + dt.timedelta(days=i) for i in range(days)]
