"""The processor's /healthz, /readyz and /metrics app (services/processor/http.py)
served on a local port by aiohttp's test server, without Kafka: the probes follow
the worker and its dependency checks, and the stall watch turns /healthz to 503.

Moved from the unit tier (tests/unit/test_processor_metrics.py and
test_processor_stall.py): a test server binds a socket. The processor's metrics
and the stall watch themselves stay there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import generate_latest

from services.processor.http import Readiness, Stall, create_http_app
from services.processor.metrics import ProcessorMetrics
from services.processor.stall import StallWatch, WorkerView

AiohttpClient = Callable[..., Any]
SERVING = WorkerView(started=True, rebalancing=False, recovering=False, assigned=4)
UNASSIGNED = WorkerView(started=True, rebalancing=False, recovering=False, assigned=0)


async def test_probes_follow_the_worker_and_its_dependencies(
    aiohttp_client: AiohttpClient,
) -> None:
    """/readyz is 503 until the first dependency check, while the worker is not started
    (recovering, rebalancing) and while a dependency fails; /healthz stays 200."""
    worker = {"ready": False}
    redis_up = {"up": True}

    async def kafka() -> None:
        return None

    async def redis() -> None:
        if not redis_up["up"]:
            raise ConnectionError("redis down")

    readiness = Readiness(lambda: worker["ready"], {"kafka": kafka, "redis": redis})
    metrics = ProcessorMetrics()
    client: TestClient[Any, Any] = await aiohttp_client(
        create_http_app(metrics, readiness, lambda: None)
    )

    async def status(path: str) -> int:
        async with client.get(path) as resp:
            return resp.status

    assert await status("/healthz") == 200
    assert await status("/readyz") == 503  # not checked yet
    await readiness.check_once()
    assert await status("/readyz") == 503  # worker not started
    worker["ready"] = True
    assert await status("/readyz") == 200
    redis_up["up"] = False
    await readiness.check_once()
    async with client.get("/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["failing"] == ["redis"]
    assert await status("/healthz") == 200
    async with client.get("/metrics") as resp:
        text = await resp.text()
    assert "leadflow_processor_ready 0.0" in text
    assert "leadflow_processor_commands_total" in generate_latest(metrics.registry).decode()


async def test_the_dependency_checks_feed_the_watch_and_healthz_turns_503_when_it_fires(
    aiohttp_client: AiohttpClient,
) -> None:
    now = {"t": 0.0}
    view = {"v": SERVING}
    kafka_up = {"up": True}
    fired: list[float] = []

    async def kafka() -> None:
        if not kafka_up["up"]:
            raise ConnectionError("kafka down")

    async def redis() -> None:
        return None

    readiness = Readiness(
        lambda: view["v"].progressing,
        {"kafka": kafka, "redis": redis},
        stall=Stall(StallWatch(30.0), lambda: view["v"], fired.append, clock=lambda: now["t"]),
    )
    client: TestClient[Any, Any] = await aiohttp_client(
        create_http_app(ProcessorMetrics(), readiness, lambda: None)
    )

    async def healthz() -> int:
        async with client.get("/healthz") as resp:
            return resp.status

    async def check_at(t: float) -> None:
        now["t"] = t
        await readiness.check_once()

    await check_at(0.0)
    view["v"] = UNASSIGNED
    kafka_up["up"] = False
    await check_at(5.0)
    await check_at(100.0)  # a long outage: not a stall
    assert fired == [] and await healthz() == 200
    kafka_up["up"] = True
    await check_at(105.0)
    await check_at(130.0)
    assert fired == [] and await healthz() == 200
    await check_at(135.0)
    assert fired == [30.0]
    assert await healthz() == 503
    await check_at(200.0)
    assert fired == [30.0]  # fires once
