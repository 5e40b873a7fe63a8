"""The connection cap over real sockets (gateway/admission.py), in both modes: above
``LEADFLOW_MAX_CONNECTIONS`` an upgrade gets 503 with Retry-After before any upgrade,
``/readyz`` turns unready at the cap and ready again only at 95% of it, and
``/healthz`` and ``/metrics`` keep answering meanwhile."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson
import pytest

from services.limits import somaxconn
from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Cluster
from tests.support.server import ServerProcess, free_port

ORIGIN = {"Origin": "http://localhost:8080"}
CAP = 40  # low water 38


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


@asynccontextmanager
async def sockets(ws_url: str, count: int) -> AsyncIterator[list[aiohttp.ClientWebSocketResponse]]:
    """``count`` open visitor sockets, opened at once (their upgrades race the cap)."""
    async with aiohttp.ClientSession() as session:
        opened = await asyncio.gather(
            *(session.ws_connect(ws_url, headers=ORIGIN) for _ in range(count))
        )
        try:
            yield list(opened)
        finally:
            await asyncio.gather(*(ws.close() for ws in opened))


async def refused_upgrade(ws_url: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url, headers=ORIGIN)
        assert refused.value.status == 503
        headers = refused.value.headers
        assert headers is not None
        assert 2 <= int(headers["Retry-After"]) <= 4  # 2 s plus up to as much again
        async with session.get(ws_url.replace("ws://", "http://"), headers={
            **ORIGIN, "Connection": "Upgrade", "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }) as response:  # fmt: skip
            assert response.status == 503
            body = orjson.loads(await response.read())
            assert body["error"]["code"] == "at_capacity"
            assert response.headers.get("Connection", "").lower() == "close"
            return response


async def wait_status(url: str, status: int) -> None:
    for _ in range(100):
        if (await asyncio.to_thread(get, url))[0] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered {status}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    metrics_port = free_port()
    server = ServerProcess(
        tmp_path / "data",
        env={"LEADFLOW_MAX_CONNECTIONS": str(CAP), "LEADFLOW_METRICS_PORT": str(metrics_port)},
    )
    server.start()
    try:
        yield server, metrics_port
    finally:
        server.stop()


async def test_serve_sheds_upgrades_above_its_cap_and_stays_observable(
    serve: tuple[ServerProcess, int],
) -> None:
    server, metrics_port = serve
    http, metrics_url = server.http_url, f"http://127.0.0.1:{metrics_port}/metrics"
    async with sockets(server.ws_url, CAP) as opened:
        # the capped sockets work: a conversation on one of them
        await opened[0].send_str(orjson.dumps({"type": "start", "v": 1, "flow": "solar-quote",
                                               "site": "demo"}).decode())  # fmt: skip
        assert orjson.loads(await opened[0].receive_str(timeout=5))["type"] == "session"
        await refused_upgrade(server.ws_url)
        status, body = get(f"{http}/readyz")
        assert status == 503
        ready = orjson.loads(body)
        assert ready["at_capacity"] is True
        assert (ready["connections"], ready["max_connections"]) == (CAP, CAP)
        assert get(f"{http}/healthz")[0] == 200
        status, text = get(metrics_url)
        assert status == 200
        assert metric(text, "leadflow_gateway_open_connections") == CAP
        assert metric(text, "leadflow_gateway_max_connections") == CAP
        assert metric(text, "leadflow_gateway_at_capacity") == 1
        assert metric(text, 'leadflow_gateway_upgrades_refused_total{reason="at_capacity"}') == 2

        await opened.pop().close()  # 39 open: a slot, but not ready yet (hysteresis)
        await asyncio.sleep(0.3)
        assert get(f"{http}/readyz")[0] == 503
        async with sockets(server.ws_url, 1):
            await refused_upgrade(server.ws_url)  # full again
        await opened.pop().close()  # 38: the low-water mark
        await wait_status(f"{http}/readyz", 200)
        assert metric(get(metrics_url)[1], "leadflow_gateway_at_capacity") == 0


@pytest.fixture(scope="module")
def gateway_cluster(
    kafka_bootstrap: str, session_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    cluster = new_cluster(kafka_bootstrap, session_redis_url, tmp_path_factory.mktemp("cap"))
    gateway = cluster.gateway(0)
    gateway.env["LEADFLOW_MAX_CONNECTIONS"] = "5"
    gateway.start()
    try:
        gateway.wait_ready()
        yield cluster
    finally:
        cluster.stop()


async def test_the_distributed_gateway_sheds_upgrades_above_its_cap(
    gateway_cluster: Cluster,
) -> None:
    (gateway,) = gateway_cluster.services
    http = f"http://127.0.0.1:{gateway.port}"
    async with sockets(gateway.ws_url, 5):
        await refused_upgrade(gateway.ws_url)
        status, body = get(f"{http}/readyz")
        assert status == 503 and orjson.loads(body)["at_capacity"] is True
        assert get(f"{http}/healthz")[0] == 200
        metrics_port = gateway.env["LEADFLOW_METRICS_PORT"]
        text = get(f"http://127.0.0.1:{metrics_port}/metrics")[1]
        assert metric(text, 'leadflow_gateway_upgrades_refused_total{reason="at_capacity"}') == 2
    await wait_status(f"{http}/readyz", 200)
    assert "accepting at most 5 WebSockets" in gateway.log_text()
    granted = min(4096, somaxconn() or 4096)  # services/limits.py: what it asked for
    assert f"listen backlog: {granted}" in gateway.log_text()
