"""The gateway's metrics: presses by flow, refusals by reason (flood apart), the
press-to-reply histogram's buckets; labels never hold a conversation id."""

from __future__ import annotations

import orjson
from prometheus_client import generate_latest

from gateway.metrics import LATENCY_BUCKETS
from tests.unit.test_connection import (
    FIRST_PRESS,
    PING,
    Gateway,
    current,
    limited_gateway,
    parse,
    press_first,
    start,
    start_frame,
)


def sample(gw: Gateway, name: str, **labels: str) -> float:
    return gw.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_presses_are_counted_by_flow_and_latency_observed() -> None:
    gw = Gateway()
    conn = gw.connect()
    _, frames = await start(conn)
    await press_first(conn, FIRST_PRESS, current(frames))
    assert sample(gw, "leadflow_gateway_presses_total", flow="solar-quote") == 1
    assert sample(gw, "leadflow_gateway_open_connections") == 0  # ws.py counts sockets
    count = "leadflow_gateway_command_seconds_count"
    assert sample(gw, count, type="PressButton") == 1
    assert sample(gw, count, type="StartConversation") == 1
    exposition = generate_latest(gw.metrics.registry).decode()
    assert conn.conversation_id is not None and conn.conversation_id not in exposition


async def test_a_flood_close_is_its_own_reason_and_a_foreign_origin_is_counted() -> None:
    gw = limited_gateway(burst=1, flood_limit=2)
    conn = gw.connect()
    await conn.on_text(PING)
    await conn.on_text(PING)  # rate_limited
    closed = await conn.on_text(PING)  # flood: closed
    assert closed.close_code is not None
    assert gw.rejected("rate_limited") == 1
    assert gw.rejected("flood") == 1
    gw2 = Gateway()
    foreign = gw2.connect("https://evil.example")
    parse(await foreign.on_text(orjson.dumps(start_frame()).decode()))
    assert gw2.rejected("origin_not_allowed") == 1


def test_latency_buckets_resolve_the_100_ms_target() -> None:
    """At least six buckets below 100 ms, one exactly at it (a < 100 ms SLO is then a
    bucket ratio, not an interpolation), and a tail for timeouts."""
    assert sum(b < 0.1 for b in LATENCY_BUCKETS) >= 6
    assert 0.1 in LATENCY_BUCKETS and max(LATENCY_BUCKETS) >= 1.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)
