"""The read API on the Redis read models, at the documented limits.

Regression: ``GET /leads?limit=200`` answered 500 once a site had more than
about 100 leads: each lead's key was read with its own Redis request, all at
once, and redis-py's pool (100 connections) raised ``MaxConnectionsError``.
Keys are now read in one MGET per page, and the services' pool waits for a
free connection instead of failing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from projector.api import create_read_api
from projector.api.leads import LEADS_MAX
from projector.engine import Projector
from projector.redis_store import RedisReadModel
from schemas.events import ConversationStarted, LeadCaptured
from services.catalog import FlowCatalog
from services.distributed.redis_client import redis_client
from services.distributed.redis_keystore import RedisKeyStore
from services.http_auth import hash_api_key, new_api_key
from services.sites import Site
from tests.support.traffic import EXAMPLES, Traffic, simulate

SITE_KEY, ADMIN_KEY = new_api_key(), new_api_key()
SITES = {"acme": Site("acme", ("https://acme.example",), (), hash_api_key(SITE_KEY))}
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    """1,800 visitors on two sites: over 300 leads each (about 360), with their keys.
    (1,500 gave 300-odd until insurance-quote gained a free-text question that ends
    some conversations without a lead.)"""
    return asyncio.run(simulate(1800, seed=7))


def leads_of(traffic: Traffic, site_id: str) -> set[str]:
    site = {
        e.conversation_id: e.site_id for e in traffic.events if isinstance(e, ConversationStarted)
    }
    return {
        e.conversation_id
        for e in traffic.events
        if isinstance(e, LeadCaptured) and site[e.conversation_id] == site_id
    }


@pytest.fixture
async def redis(session_redis_url: str) -> AsyncIterator[Redis]:
    client = redis_client(session_redis_url, max_connections=8)  # small: a burst must queue
    yield client
    await client.aclose()


@pytest.fixture
async def client(
    redis: Redis, traffic: Traffic, aiohttp_client: ClientFactory
) -> TestClient[Any, Any]:
    prefix = f"ra-{uuid.uuid4().hex[:8]}:"
    store, keys = RedisReadModel(redis, prefix=prefix), RedisKeyStore(redis, prefix=prefix)
    await Projector(store, await store.current_namespace(), live=True).project(traffic.events)
    wanted = {e.conversation_id for e in traffic.events}
    found = await traffic.keys.get_many(sorted(wanted))
    pipe = redis.pipeline(transaction=False)
    for cid, key in found.items():
        pipe.set(f"{prefix}key:{cid}", key)
    await pipe.execute()
    root = web.Application()
    catalog = FlowCatalog.from_directory(EXAMPLES)
    root.add_subapp(
        "/api/v1", create_read_api(store, keys, SITES, catalog, hash_api_key(ADMIN_KEY))
    )
    return await aiohttp_client(root)


async def walk(client: TestClient[Any, Any], limit: int) -> list[dict[str, Any]]:
    leads: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        async with client.get(
            "/api/v1/sites/acme/leads", params=query, headers={"X-Api-Key": SITE_KEY}
        ) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        leads.extend(body["leads"])
        cursor = body["next_cursor"]
        if cursor is None:
            return leads


async def test_pages_of_the_maximum_size_walk_every_lead_once(
    client: TestClient[Any, Any], traffic: Traffic
) -> None:
    expected = leads_of(traffic, "acme")
    assert len(expected) > 300  # more than the old failure point, several pages of 200
    leads = await walk(client, LEADS_MAX)
    times = [lead["captured_at"] for lead in leads]
    assert times == sorted(times, reverse=True)  # newest first, across pages
    assert {lead["conversation_id"] for lead in leads} == expected
    assert len(leads) == len(expected)
    assert all(lead["status"] == "captured" and lead["fields"]["email"] for lead in leads)


async def test_a_burst_of_full_pages_queues_for_connections_instead_of_failing(
    client: TestClient[Any, Any],
) -> None:
    """20 concurrent pages of 200 on a pool of 8 connections: all answered."""

    async def page() -> int:
        async with client.get(
            "/api/v1/sites/acme/leads",
            params={"limit": str(LEADS_MAX)},
            headers={"X-Api-Key": SITE_KEY},
        ) as resp:
            await resp.read()
            return resp.status

    assert await asyncio.gather(*(page() for _ in range(20))) == [200] * 20
