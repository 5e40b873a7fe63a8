"""Widget views and opens (issue 19): the pure part of the ``POST /beacon`` endpoint.

The widget sends one beacon when a page shows it ("view") and one when the visitor
opens it ("open"), with ``navigator.sendBeacon``: no cookie, no identifier, no
visitor context, just ``{"site", "flow", "kind"}``. The gateway checks the beacon
(this module: its shape; the origin, the site and the flow against the gateway's
sites and catalog), then counts it under the flow version a start would get now, per
site and per UTC day. The counters are keyed like the read models' funnels
(``projector.write_set.funnel_key``), so the funnel endpoint shows ``viewed`` and
``opened`` before ``started``:

``beacons:{flow}:{version}`` and ``site:{site}:beacons:{flow}:{version}``
    totals of a flow version, of all sites and of one site
``beacons-daily:{flow}:{day}`` and ``site:{site}:beacons-daily:{flow}:{day}``
    per day (UTC, ``YYYY-MM-DD``)

Beacons are counts, not events: they are not in the event log, so a rebuild of the
read models leaves them as they are (they live in a store of their own).
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

BeaconKind = Literal["view", "open"]
FIELDS: dict[str, str] = {"view": "viewed", "open": "opened"}
"""The counter field of each kind: the funnel's words."""
MAX_BEACON_BYTES = 256
RATE_PER_SECOND = 10.0  # per client address: the WebSocket's default frame rate
BURST = 20
MAX_CLIENTS = 10_000
CLIENT_HEADER_ENV = "LEADFLOW_BEACON_CLIENT_HEADER"
"""Behind a proxy: the header holding the visitor's address (services.beacons.client_address)."""
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class BeaconError(ValueError):
    """A beacon refused; ``code`` is what the endpoint answers (never the body)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Beacon:
    site_id: str
    flow_id: str
    kind: BeaconKind


def parse_beacon(body: bytes) -> Beacon:
    """The beacon in ``body``: a JSON object of exactly ``site``, ``flow`` (ids) and
    ``kind`` ("view" or "open"); anything else is a :class:`BeaconError`."""
    if len(body) > MAX_BEACON_BYTES:
        raise BeaconError("too_large", f"a beacon is at most {MAX_BEACON_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BeaconError("malformed", "a beacon is a JSON object") from None
    if not isinstance(data, dict) or set(data) != {"site", "flow", "kind"}:
        raise BeaconError("malformed", "a beacon has exactly site, flow and kind")
    site, flow, kind = data["site"], data["flow"], data["kind"]
    if not (isinstance(site, str) and ID.fullmatch(site)):
        raise BeaconError("malformed", "site is not an id")
    if not (isinstance(flow, str) and ID.fullmatch(flow)):
        raise BeaconError("malformed", "flow is not an id")
    if kind == "view":
        return Beacon(site, flow, "view")
    if kind == "open":
        return Beacon(site, flow, "open")
    raise BeaconError("malformed", "kind is view or open")


def beacon_key(flow_id: str, version: int, site_id: str | None = None) -> str:
    """The totals of a flow version: of all sites (``site_id`` None) or of one."""
    key = f"beacons:{flow_id}:{version}"
    return key if site_id is None else f"site:{site_id}:{key}"


def daily_beacon_key(flow_id: str, day: str, site_id: str | None = None) -> str:
    key = f"beacons-daily:{flow_id}:{day}"
    return key if site_id is None else f"site:{site_id}:{key}"


def utc_day(at: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(at))


def increments(beacon: Beacon, version: int, at: float) -> list[tuple[str, str]]:
    """The (key, field) counters one accepted beacon adds 1 to."""
    field = FIELDS[beacon.kind]
    day = utc_day(at)
    return [
        (beacon_key(beacon.flow_id, version), field),
        (beacon_key(beacon.flow_id, version, beacon.site_id), field),
        (daily_beacon_key(beacon.flow_id, day), field),
        (daily_beacon_key(beacon.flow_id, day, beacon.site_id), field),
    ]


class BeaconCounts(Protocol):
    """Where accepted beacons are counted (the embedded mode: a SQLite file)."""

    async def add(self, counters: list[tuple[str, str]]) -> None:
        """Count 1 for each (key, field), in one transaction."""
        ...

    async def counters(self, key: str) -> dict[str, int]: ...


class BeaconLimiter:
    """A token bucket per client address (``rate`` a second, bursts of ``burst``); the
    least recently seen address is forgotten first once ``max_clients`` are remembered,
    so memory stays bounded under a spray of addresses."""

    def __init__(
        self, rate: float = RATE_PER_SECOND, burst: int = BURST, max_clients: int = MAX_CLIENTS
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, last

    def allow(self, client: str, now: float) -> bool:
        tokens, last = self._buckets.pop(client, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - last) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)  # the newest
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed


def client_address(peer: str | None, headers: Mapping[str, str], header: str | None) -> str:
    """The address a beacon is limited by: the peer's, or behind a proxy that sets
    ``header`` (``LEADFLOW_BEACON_CLIENT_HEADER``, e.g. ingress-nginx's ``X-Real-IP``)
    the last address in it, the one the nearest proxy wrote (a client can prepend
    others to an ``X-Forwarded-For``, not append)."""
    if header:
        value = headers.get(header, "")
        last = value.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return peer or ""
