"""The beacon endpoint's pure parts: the body's shape, the counters one beacon adds,
the per-address rate limit and its bounded memory."""

from __future__ import annotations

import pytest

from services.beacons import (
    MAX_BEACON_BYTES,
    Beacon,
    BeaconError,
    BeaconLimiter,
    beacon_key,
    client_address,
    daily_beacon_key,
    increments,
    parse_beacon,
)

NOON_2026_03_01 = 1772366400.0


def test_a_valid_beacon_is_parsed() -> None:
    body = b'{"site": "demo", "flow": "solar-quote", "kind": "open"}'
    assert parse_beacon(body) == Beacon("demo", "solar-quote", "open")
    assert parse_beacon(body.replace(b"open", b"view")).kind == "view"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "malformed"),
        (b"not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"[]", "malformed"),
        (b'{"site": "demo", "flow": "f"}', "malformed"),
        (b'{"site": "demo", "flow": "f", "kind": "view", "email": "a@b.c"}', "malformed"),
        (b'{"site": "demo", "flow": "f", "kind": "click"}', "malformed"),
        (b'{"site": 1, "flow": "f", "kind": "view"}', "malformed"),
        (b'{"site": "de mo", "flow": "f", "kind": "view"}', "malformed"),
        (b'{"site": "demo", "flow": "' + b"f" * 65 + b'", "kind": "view"}', "malformed"),
        (b'{"site": "demo", "flow": "f\\n", "kind": "view"}', "malformed"),
        (b" " * (MAX_BEACON_BYTES + 1), "too_large"),
    ],
)
def test_anything_else_is_refused(body: bytes, code: str) -> None:
    with pytest.raises(BeaconError) as refused:
        parse_beacon(body)
    assert refused.value.code == code


def test_one_beacon_counts_in_the_totals_and_the_day_of_all_sites_and_its_own() -> None:
    added = increments(Beacon("acme", "quote", "view"), 3, NOON_2026_03_01)
    assert added == [
        ("beacons:quote:3", "viewed"),
        ("site:acme:beacons:quote:3", "viewed"),
        ("beacons-daily:quote:2026-03-01", "viewed"),
        ("site:acme:beacons-daily:quote:2026-03-01", "viewed"),
    ]
    assert increments(Beacon("acme", "quote", "open"), 3, NOON_2026_03_01)[0][1] == "opened"
    assert beacon_key("quote", 3, "acme") != beacon_key("quote", 3, "other")
    assert daily_beacon_key("quote", "2026-03-01") == "beacons-daily:quote:2026-03-01"


def test_the_limiter_allows_a_burst_per_address_then_the_rate() -> None:
    limiter = BeaconLimiter(rate=1.0, burst=2)
    assert [limiter.allow("10.0.0.1", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("10.0.0.2", 0.0), "another address has its own bucket"
    assert limiter.allow("10.0.0.1", 1.0)
    assert not limiter.allow("10.0.0.1", 1.0)


def test_the_limiter_forgets_the_least_recently_seen_address_first() -> None:
    limiter = BeaconLimiter(rate=0.0, burst=1, max_clients=2)
    assert limiter.allow("a", 0.0) and limiter.allow("b", 0.0)
    assert not limiter.allow("a", 0.0)  # seen again: now the most recent
    assert limiter.allow("c", 0.0)  # forgets b
    assert limiter.allow("b", 0.0), "b was forgotten: a fresh bucket"


def test_behind_a_proxy_the_address_is_the_last_one_the_proxy_wrote() -> None:
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Real-IP": "203.0.113.7"}
    assert client_address("10.0.0.9", headers, None) == "10.0.0.9"
    assert client_address("10.0.0.9", headers, "X-Forwarded-For") == "203.0.113.7"
    assert client_address("10.0.0.9", headers, "X-Real-IP") == "203.0.113.7"
    assert client_address("10.0.0.9", {}, "X-Real-IP") == "10.0.0.9"
