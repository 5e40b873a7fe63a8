"""The one /healthz, /readyz and /metrics helper every service mounts, served by
aiohttp's test server on a local port (a socket: this tier, not the unit tier)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry, Gauge

from services.health import HealthChecks, Status, add_health_routes

Client = TestClient[Any, Any]
MakeClient = Callable[[web.Application], Awaitable[Client]]


def make_app(checks: HealthChecks) -> web.Application:
    app = web.Application()
    add_health_routes(app, checks)
    return app


async def test_readiness_says_which_part_is_not_ready(aiohttp_client: MakeClient) -> None:
    state = {"ok": False}

    def ready() -> Status:
        return Status(state["ok"], {"failing": [] if state["ok"] else ["kafka"]})

    client = await aiohttp_client(make_app(HealthChecks(CollectorRegistry(), ready)))
    async with client.get("/readyz") as resp:
        assert resp.status == 503
        assert await resp.json() == {"ready": False, "status": "not ready", "failing": ["kafka"]}
    state["ok"] = True
    async with client.get("/readyz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"ready": True, "status": "ready", "failing": []}


async def test_liveness_is_ok_until_the_service_knows_it_is_stuck(
    aiohttp_client: MakeClient,
) -> None:
    stalled = {"yes": False}
    checks = HealthChecks(
        CollectorRegistry(),
        ready=lambda: Status(True),
        live=lambda: Status(not stalled["yes"], {"for_seconds": 130} if stalled["yes"] else {}),
    )
    client = await aiohttp_client(make_app(checks))
    async with client.get("/healthz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    stalled["yes"] = True
    async with client.get("/healthz") as resp:
        assert (resp.status, await resp.json()) == (503, {"status": "stalled", "for_seconds": 130})


async def test_metrics_render_the_services_own_registry_refreshed_first(
    aiohttp_client: MakeClient,
) -> None:
    registry = CollectorRegistry()
    lag = Gauge("leadflow_test_lag", "lag", registry=registry)
    checks = HealthChecks(registry, lambda: Status(True), before_scrape=lambda: lag.set(42))
    client = await aiohttp_client(make_app(checks))
    async with client.get("/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert "leadflow_test_lag 42.0" in text
    assert "python_gc" not in text  # not the global registry
