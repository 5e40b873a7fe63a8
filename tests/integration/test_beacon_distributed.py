"""The distributed mode's beacons (issue 19) on a real Redis: the projector's
``POST /beacon`` (services.beacon_http over RedisBeaconCounts, as app/projector.py
mounts it) counts per site, behind a proxy limits each visitor by the address the
proxy wrote, and the read API's funnel shows each site only its own views and opens.
(The whole projector process needs Kafka too; its wiring is the same two calls.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.beacon_relay import BeaconRelay, add_beacon_relay
from projector.api import create_read_api
from projector.redis_store import RedisReadModel
from services.beacon_http import BeaconEndpoint, add_beacon_route
from services.beacons import BeaconLimiter
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.distributed.redis_beacon_counts import RedisBeaconCounts
from services.distributed.redis_keystore import RedisKeyStore
from services.http_auth import hash_api_key, new_api_key
from services.sites import Site

FLOW = "solar-quote"
ACME_KEY, OTHER_KEY = new_api_key(), new_api_key()
SITES = {
    "acme": Site("acme", ("https://acme.example",), (), hash_api_key(ACME_KEY)),
    "other": Site("other", ("https://other.example",), (), hash_api_key(OTHER_KEY)),
}


@pytest.fixture
async def client(session_redis_url: str) -> AsyncIterator[TestClient[Any, Any]]:
    redis = Redis.from_url(session_redis_url)
    prefix = f"bc-{uuid.uuid4().hex[:8]}:"
    catalog = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR)
    counts = RedisBeaconCounts(redis, prefix)
    app = web.Application()
    limiter = BeaconLimiter(rate=0.0, burst=3)
    add_beacon_route(app, BeaconEndpoint(counts, SITES, catalog, limiter, "X-Real-IP"))
    store = RedisReadModel(redis, prefix=prefix)
    keys = RedisKeyStore(redis, prefix=prefix)
    app.add_subapp("/api/v1", create_read_api(store, keys, SITES, catalog, None, counts))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await redis.aclose()


async def post(client: TestClient[Any, Any], site: str, kind: str, address: str) -> int:
    body = orjson.dumps({"site": site, "flow": FLOW, "kind": kind})
    headers = {"Origin": f"https://{site}.example", "X-Real-IP": address}
    async with client.post("/beacon", data=body, headers=headers) as response:
        return response.status


async def totals(client: TestClient[Any, Any], key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with client.get(f"/api/v1/flows/{FLOW}/funnel", headers=headers) as response:
        assert response.status == 200, await response.text()
        found: dict[str, Any] = (await response.json())["totals"]
        return found


async def test_counted_in_redis_per_site_and_limited_per_visitor(
    client: TestClient[Any, Any],
) -> None:
    assert [await post(client, "acme", "view", "203.0.113.1") for _ in range(4)] == [
        204,
        204,
        204,
        429,
    ]
    assert await post(client, "acme", "open", "203.0.113.2") == 204  # another visitor
    assert await post(client, "other", "view", "203.0.113.3") == 204
    body = orjson.dumps({"site": "acme", "flow": FLOW, "kind": "view"})
    foreign = {"Origin": "https://other.example", "X-Real-IP": "203.0.113.4"}
    async with client.post("/beacon", data=body, headers=foreign) as response:
        assert response.status == 403

    acme = await totals(client, ACME_KEY)
    assert (acme["viewed"], acme["opened"], acme["started"]) == (3, 1, 0), acme
    other = await totals(client, OTHER_KEY)
    assert (other["viewed"], other["opened"]) == (1, 0), other


async def test_a_gateway_relays_beacons_to_the_projector(client: TestClient[Any, Any]) -> None:
    """The ingress reaches only the gateways: they hand beacons on with the page's
    Origin and the visitor's address; the projector checks and counts."""
    gateway = web.Application()
    hop = BeaconRelay(str(client.make_url("/beacon")), BeaconLimiter(rate=0.0, burst=4))
    add_beacon_relay(gateway, hop)
    async with TestClient(TestServer(gateway)) as visitor:
        body = orjson.dumps({"site": "acme", "flow": FLOW, "kind": "open"})

        async def send(origin: str) -> int:
            headers = {"Origin": origin, "Content-Type": "text/plain"}
            async with visitor.post("/beacon", data=body, headers=headers) as response:
                return response.status

        statuses = [await send("https://evil.example")]
        statuses += [await send("https://acme.example") for _ in range(4)]
    # the projector limits the visitor (burst 3, by X-Real-IP), then the gateway (burst 4)
    assert statuses == [403, 204, 204, 429, 429], statuses
    acme = await totals(client, ACME_KEY)
    assert acme["opened"] == 2, acme
