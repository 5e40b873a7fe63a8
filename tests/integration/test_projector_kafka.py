"""The projector on a real broker and a real Redis, as a real process.

Every test compares what Redis holds with an oracle: a one-event-at-a-time
fold of what an independent consumer reads back from the ``events`` topic.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from projector.redis_store import RedisReadModel
from services.http_auth import hash_api_key
from tests.support.distributed import Cluster, Service
from tests.support.http import get_json, get_text
from tests.support.projection import (
    assert_matches_oracle,
    dump_namespace,
    end_offsets,
    produce,
    wait_caught_up,
)
from tests.support.readmodel_oracle import Oracle
from tests.support.redis_server import LocalRedis
from tests.support.server import ROOT
from tests.support.traffic import simulate
from tests.support.visitor import Visitor

ADMIN_KEY = "integration-admin-key-0123456789"


@pytest.fixture
async def redis(cluster: Cluster) -> AsyncIterator[Redis]:
    client = Redis.from_url(cluster.redis_url)
    yield client
    await client.aclose()


def store_of(cluster: Cluster, redis: Redis) -> RedisReadModel:
    return RedisReadModel(redis, prefix=cluster.prefix)


def start_projector(cluster: Cluster, redis_url: str | None = None) -> Service:
    service = cluster.projector(redis_url)
    service.env["LEADFLOW_ADMIN_API_KEY_SHA256"] = hash_api_key(ADMIN_KEY)
    return service.start()


async def test_read_models_follow_real_visitors_through_the_whole_system(
    cluster: Cluster, redis: Redis
) -> None:
    """(a) Gateway -> Kafka -> processor -> events -> projector -> Redis -> read API."""
    processor = cluster.processor().start()
    gateway = cluster.gateway(0).start()
    projector = start_projector(cluster)
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    projector.wait_ready()
    store = store_of(cluster, redis)
    conversations: list[str] = []
    for i in range(6):
        visitor = await Visitor.connect(gateway.ws_url)
        try:
            await visitor.start(["solar-quote", "insurance-quote", "saas-demo"][i % 3])
            await visitor.play_to_end(random.Random(i))
        finally:
            await visitor.close()
        conversations.append(visitor.conversation_id)
        deadline = time.monotonic() + 10
        view = None
        while time.monotonic() < deadline:
            view = await store.conversation(visitor.conversation_id)
            if view is not None and view.status == "completed":
                break
            await asyncio.sleep(0.02)
        assert view is not None and view.status == "completed"
    await wait_caught_up(cluster, store)
    await assert_matches_oracle(cluster, store)
    base = f"http://127.0.0.1:{projector.port}/api/v1"
    status, body = get_json(f"{base}/conversations/{conversations[0]}", ADMIN_KEY)
    assert status == 200 and isinstance(body, dict)
    assert orjson.dumps(body).count(conversations[0].encode()) >= 1
    assert get_json(f"{base}/conversations/{conversations[0]}")[0] == 401
    status, funnel = get_json(f"{base}/flows/solar-quote/funnel", ADMIN_KEY)
    assert status == 200 and isinstance(funnel, dict)
    metrics = get_text(f"http://127.0.0.1:{projector.port}/metrics")
    lags = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("leadflow_projector_lag_records{")
    ]
    assert lags and max(lags) == 0
    assert "leadflow_projector_last_event_age_seconds " in metrics
    assert 'leadflow_projector_write_sets_total{outcome="applied"}' in metrics


async def test_kill_9_mid_batch_then_restart_loses_and_doubles_nothing(
    cluster: Cluster, redis: Redis
) -> None:
    """(b) kill -9 of the projector while it works through a backlog."""
    traffic = await simulate(1500, seed=21)
    await produce(cluster, traffic.events)
    store = store_of(cluster, redis)
    total = sum((await end_offsets(cluster)).values())
    projector = start_projector(cluster)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline:
        try:
            done = sum((await store.frontier(await store.current_namespace())).values())
        except (OSError, RedisError):
            done = 0
        if done > total // 10:
            break
        await asyncio.sleep(0.005)
    projector.kill9()
    assert 0 < done < total, "the kill should land mid-stream"
    projector.start()
    await wait_caught_up(cluster, store)
    await assert_matches_oracle(cluster, store)


async def test_replaying_a_range_leaves_redis_byte_for_byte_the_same(
    cluster: Cluster, redis: Redis
) -> None:
    """Rewinding the projector over a range already applied changes no byte."""
    traffic = await simulate(400, seed=22)
    await produce(cluster, traffic.events)
    store = store_of(cluster, redis)
    projector = start_projector(cluster)
    await wait_caught_up(cluster, store)
    projector.stop()
    before = await dump_namespace(redis, cluster.prefix)
    namespace = await store.current_namespace()
    frontier = await store.frontier(namespace)
    await store.set_frontier(namespace, {p: n // 3 for p, n in frontier.items()})
    projector.start()
    await wait_caught_up(cluster, store)
    projector.stop()
    assert await dump_namespace(redis, cluster.prefix) == before


async def test_a_redis_crash_mid_stream_is_caught_up_with_nothing_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    """(c) Redis killed -9 and restarted while events keep coming."""
    local = LocalRedis(tmp_path / "redis").start()
    client = Redis.from_url(local.url)
    try:
        store = store_of(cluster, client)
        projector = start_projector(cluster, local.url)
        projector.wait_ready()
        await produce(cluster, (await simulate(300, seed=23, prefix="a")).events)
        await wait_caught_up(cluster, store)
        await produce(cluster, (await simulate(600, seed=24, prefix="b")).events)
        await asyncio.sleep(0.3)
        local.kill9()
        await produce(cluster, (await simulate(300, seed=25, prefix="d")).events)
        await wait_not_ready(projector)
        local.start()
        await wait_caught_up(cluster, store)
        await assert_matches_oracle(cluster, store)
        projector.wait_ready()
    finally:
        await client.aclose()
        local.stop()


async def wait_not_ready(service: Service, within: float = 15.0) -> None:
    url = f"http://127.0.0.1:{service.port}/readyz"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if get_json(url)[0] == 503:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("readiness did not fail while Redis was down")


def run_replay(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "replay", "--kafka", *args],
        cwd=ROOT,
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_a_full_replay_rebuilds_into_a_fresh_namespace_while_live(
    cluster: Cluster, redis: Redis
) -> None:
    """(d) ``leadflow replay --kafka`` beside a running projector and new events."""
    store = store_of(cluster, redis)
    projector = start_projector(cluster)
    await produce(cluster, (await simulate(500, seed=26, prefix="a")).events)
    await wait_caught_up(cluster, store)
    old = await store.current_namespace()
    feeding = asyncio.create_task(
        produce(cluster, (await simulate(500, seed=27, prefix="b")).events)
    )
    replay = await asyncio.to_thread(run_replay, cluster)
    await feeding
    assert replay.returncode == 0, replay.stderr
    assert "conversations" in replay.stdout and "replay:" in replay.stderr
    new = await store.current_namespace()
    assert new != old
    assert [k async for k in redis.scan_iter(match=f"{cluster.prefix}rm:{old}:*")] == []
    await produce(cluster, (await simulate(200, seed=28, prefix="c")).events)
    await wait_caught_up(cluster, store)
    await assert_matches_oracle(cluster, store)
    assert projector.proc is not None and projector.proc.poll() is None


async def test_a_replay_from_a_timestamp_holds_only_later_conversations(
    cluster: Cluster, redis: Redis
) -> None:
    store = store_of(cluster, redis)
    early = await simulate(100, seed=29, prefix="e")
    await produce(cluster, early.events)
    await asyncio.sleep(1.5)
    since = time.time()
    await asyncio.sleep(0.5)
    late = await simulate(100, seed=30, prefix="l")
    await produce(cluster, late.events)
    replay = await asyncio.to_thread(run_replay, cluster, "--from", f"{since:.3f}")
    assert replay.returncode == 0, replay.stderr
    oracle = await Oracle().fold(late.events)
    assert await oracle.read(store) == await oracle.read()
    assert await store.conversation(early.events[0].conversation_id) is None


async def test_two_projectors_share_the_partitions_and_one_takes_over(
    cluster: Cluster, redis: Redis
) -> None:
    """A second projector in the group takes half the partitions; when one is
    killed, the other resumes its partitions from the store's frontier."""
    store = store_of(cluster, redis)
    first = start_projector(cluster)
    first.wait_log('"projecting partitions"')
    second = cluster.projector(name="projector-2").start()
    second.wait_log('"projecting partitions"')  # the group rebalanced over both
    assert owned(second) and len(owned(second)) < cluster.partitions
    await produce(cluster, (await simulate(800, seed=31, prefix="t")).events)
    await asyncio.sleep(0.5)
    second.kill9()
    await produce(cluster, (await simulate(400, seed=32, prefix="u")).events)
    await wait_caught_up(cluster, store, within=90)
    await assert_matches_oracle(cluster, store)
    assert owned(first) == list(range(cluster.partitions))


def owned(service: Service) -> list[int]:
    """The partitions a projector was last assigned, from its JSON log."""
    last: list[int] = []
    for line in service.log_text().splitlines():
        if '"projecting partitions"' in line:
            last = list(orjson.loads(line)["partitions"])
    return last
