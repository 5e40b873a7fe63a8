"""Graceful shutdown with real processes (issue 7): SIGTERM to a gateway, a processor
and a projector while visitors are mid-quiz. Nothing acknowledged may be lost, the
sockets close with 1012 and a retry hint, and every process exits 0 in its grace."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from projector.redis_store import RedisReadModel
from schemas.batches import decode_batch
from services.distributed.topics import ensure_topics
from tests.integration.test_distributed_failures import (
    FLOWS,
    THINK,
    check_log_and_table,
    check_transcripts,
    play_all,
)
from tests.integration.test_policy_service import policy_service
from tests.support.distributed import Cluster, Service, read_topic
from tests.support.http import get_text
from tests.support.patient import PatientVisitor
from tests.support.projection import assert_matches_oracle, end_offsets, produce, wait_caught_up
from tests.support.server import ServerProcess
from tests.support.traffic import simulate
from tests.support.visitor import VALID_LEAD, Visitor, valid_answer

GRACE_SECONDS = 10.0
DRAIN_SECONDS = 1.0
SHUTDOWN_ENV = {
    "LEADFLOW_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
    "LEADFLOW_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    "LEADFLOW_SHUTDOWN_RETRY_MS": "200",
}


def _readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # not listening any more


async def _wait_exit(proc: subprocess.Popen[bytes], within: float) -> int:
    try:
        return await asyncio.wait_for(asyncio.to_thread(proc.wait), within)
    except TimeoutError:
        raise AssertionError(f"still running {within} s after SIGTERM") from None


async def _answer(visitor: Visitor, rng: random.Random) -> None:
    """Send the answer to the current node without waiting for its reply."""
    node = visitor.current()
    assert node is not None and not node["done"]
    seq = visitor.ack + 1
    if node["kind"] == "question":
        button = rng.choice(node["buttons"])["id"]
        await visitor.send({"type": "press", "seq": seq, "node": node["node_id"], "button": button})
    elif node["kind"] == "input":  # solar-quote's first question, the visitor's first name
        value = valid_answer(node["input"])
        await visitor.send({"type": "answer", "seq": seq, "node": node["node_id"], "value": value})
    else:
        frame = {"type": "lead", "seq": seq, "node": node["node_id"], "fields": VALID_LEAD}
        await visitor.send(frame)


async def _reply_then_close(visitor: Visitor) -> tuple[list[dict[str, Any]], aiohttp.WSMessage]:
    """The frames that arrive before the close frame, and the close frame."""
    frames: list[dict[str, Any]] = []
    while True:
        msg = await visitor.ws.receive(timeout=GRACE_SECONDS)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            return frames, msg
        frame: dict[str, Any] = orjson.loads(msg.data)
        visitor._track(frame)
        frames.append(frame)


def _assert_restart_close(msg: aiohttp.WSMessage) -> int:
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg
    assert msg.data == 1012, f"close code {msg.data}, not 1012 (service restart)"
    hint = orjson.loads(msg.extra or "{}")["retry_after_ms"]
    assert isinstance(hint, int) and 200 <= hint <= 400
    return hint


async def _upgrade_status(url: str) -> tuple[int, str | None]:
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url, headers={"Origin": "http://localhost"})
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, exc.headers.get("Retry-After") if exc.headers else None
        await ws.close()
        return 101, None


async def _sigterm_mid_quiz(
    proc: subprocess.Popen[bytes], port: int, ws_url: str, visitors: list[Visitor]
) -> tuple[float, list[int]]:
    """Each visitor answers, SIGTERM follows at once: readiness turns 503 while the
    sockets are open, every answer is acknowledged, then every socket closes with
    1012. Returns the seconds from SIGTERM to exit and the retry hints."""
    rng = random.Random(7)
    for visitor in visitors:
        await _answer(visitor, rng)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    acks_before = [v.ack for v in visitors]
    deadline = time.monotonic() + DRAIN_SECONDS / 2
    while _readyz(port) != 503:
        assert time.monotonic() < deadline, "/readyz did not turn 503 at once"
        await asyncio.sleep(0.02)
    assert not any(v.ws.closed for v in visitors), "sockets closed before readiness failed"
    status, retry_after = await _upgrade_status(ws_url)
    assert (status, retry_after) == (503, "1")
    hints = []
    for visitor, ack in zip(visitors, acks_before, strict=True):
        frames, close = await _reply_then_close(visitor)
        assert frames and frames[-1]["type"] == "message", "the answer sent before SIGTERM was lost"
        assert visitor.ack == ack + 1
        hints.append(_assert_restart_close(close))
    assert await _wait_exit(proc, GRACE_SECONDS) == 0
    return time.monotonic() - sent, hints


async def _resume_and_finish(visitor: Visitor, ws_url: str) -> dict[str, Any]:
    """Reconnect with the token, check no message is repeated or missing, play on."""
    token, last_seq, seen = visitor.token, visitor.last_seq, list(visitor.messages)
    await visitor.session.close()
    fresh = await Visitor.connect(ws_url)
    fresh.conversation_id, fresh.messages, fresh.last_seq = visitor.conversation_id, seen, last_seq
    try:
        frames = await fresh.resume(token, last_seq)
        assert frames[0]["type"] == "session", frames
        assert frames[0]["conversation_id"] == visitor.conversation_id
        assert frames[0]["messages"] == 0, "messages already seen were sent again"
        assert fresh.current() == seen[-1]
        end = await fresh.play_to_end(random.Random(11))
        seqs = [m["seq"] for m in fresh.messages]
        assert seqs == sorted(set(seqs)), "a message was repeated or reordered"
        return end
    finally:
        await fresh.close()


# ---------------------------------------------------------------- embedded


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", env=dict(SHUTDOWN_ENV))
    yield proc
    proc.stop()


async def test_embedded_sigterm_closes_with_1012_and_visitors_resume_after_restart(
    embedded: ServerProcess,
) -> None:
    """SIGTERM to ``leadflow serve`` mid-quiz: unready first, in-flight answers
    acknowledged, close 1012 with a retry hint, exit 0 in the grace period; a new
    server on the same port and data resumes each visitor at its node."""
    embedded.start()
    visitors = [await Visitor.connect(embedded.ws_url) for _ in range(3)]
    restarted = ServerProcess(embedded.data_dir, port=embedded.port, env=dict(SHUTDOWN_ENV))
    try:
        for visitor in visitors:
            await visitor.start("solar-quote")
        assert embedded.proc is not None
        took, _ = await _sigterm_mid_quiz(embedded.proc, embedded.port, embedded.ws_url, visitors)
        assert DRAIN_SECONDS <= took < GRACE_SECONDS
        embedded.stop()  # closes the pipes
        restarted.start()
        for visitor in visitors:
            assert (await _resume_and_finish(visitor, restarted.ws_url))["done"]
    finally:
        restarted.stop()
        await asyncio.gather(*(v.session.close() for v in visitors))


def test_shutdown_settings_are_checked_at_start(tmp_path: Path) -> None:
    """A grace period shorter than the drain is refused at start, not at SIGTERM."""
    env = {**SHUTDOWN_ENV, "LEADFLOW_SHUTDOWN_GRACE_SECONDS": "1"}
    with pytest.raises(RuntimeError, match="LEADFLOW_SHUTDOWN_GRACE_SECONDS"):
        ServerProcess(tmp_path / "data", env=env).start()
    assert os.path.isdir(tmp_path) and not (tmp_path / "data" / "events.db").exists()


# ---------------------------------------------------------------- Kafka consumers


async def group_members(bootstrap: str, group: str) -> list[str]:
    """The member ids of a consumer group, as the broker sees them now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (description,) = response.groups
        return [str(member[0]) for member in description[5]]
    finally:
        await admin.close()


async def committed(bootstrap: str, group: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {str(tp.partition): meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


def _metric(service: Service, name: str) -> float:
    for line in get_text(f"http://127.0.0.1:{service.port}/metrics").splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in the metrics")


async def test_projector_sigterm_writes_its_frontier_leaves_the_group_and_resumes_there(
    cluster: Cluster,
) -> None:
    """SIGTERM mid-backlog: the projector finishes its batch, the frontier in Redis and
    the group's committed offsets agree, it exits 0 and leaves the group (no member
    left, no session timeout to wait out); restarted, it projects only what lies past
    that frontier, and the read models equal the oracle."""
    projector = cluster.projector()
    projector.env["LEADFLOW_LOG_LEVEL"] = "info"
    projector.start().wait_ready()
    # a backlog of several of the projector's polls (5,000 records each): a SIGTERM after
    # the first finishes the poll in hand, and 1,500 visitors (about 8,000 records) could
    # fit in two, so that the frontier reached the end before the signal had any effect
    traffic = await simulate(3500, seed=41)
    await produce(cluster, traffic.events)
    redis = Redis.from_url(cluster.redis_url)
    store = RedisReadModel(redis, prefix=cluster.prefix)
    try:
        total = await end_offsets(cluster)
        done: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while sum(done.values()) <= sum(total.values()) // 10 and time.monotonic() < deadline:
            done = await store.frontier(await store.current_namespace())
            await asyncio.sleep(0.005)
        assert projector.proc is not None
        sent = time.monotonic()
        projector.proc.send_signal(signal.SIGTERM)
        assert await _wait_exit(projector.proc, 15.0) == 0
        took = time.monotonic() - sent
        frontier = await store.frontier(await store.current_namespace())
        assert 0 < sum(frontier.values()) < sum(total.values()), "SIGTERM should land mid-stream"
        group = f"{cluster.prefix}projector"
        assert await group_members(cluster.bootstrap, group) == [], "it did not leave its group"
        assert await committed(cluster.bootstrap, group) == {
            p: o for p, o in frontier.items() if o
        }, "the committed offsets are not the frontier"
        assert "projector stopped" in projector.log_text()
        assert took < 10.0

        projector.start().wait_ready()
        await wait_caught_up(cluster, store)
        await assert_matches_oracle(cluster, store)
        batches = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
        offset_of: dict[int, int] = {}
        past_frontier = 0
        for partition, _, value in batches:
            offset = offset_of.get(partition, 0)
            offset_of[partition] = offset + 1
            if offset >= frontier.get(str(partition), 0):
                past_frontier += len(decode_batch(value).events)
        assert _metric(projector, "leadflow_projector_events_total") == past_frontier
    finally:
        await redis.aclose()


async def _until_members(bootstrap: str, group: str, count: int, within: float) -> float:
    """Seconds until the group has ``count`` members (fails after ``within``)."""
    started = time.monotonic()
    while len(await group_members(bootstrap, group)) != count:
        assert time.monotonic() - started < within, f"the group never had {count} member(s)"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_processor_sigterm_under_load_hands_over_at_once_and_loses_nothing(
    cluster: Cluster,
) -> None:
    """Two processors, visitors playing; SIGTERM to one: it completes and commits what it
    has in flight, leaves the group (the survivor owns every partition long before the
    30 s session timeout), exits 0; every conversation completes, each event is in the
    log once with seqs 1..n, and no visitor loses an acknowledged answer."""
    for name in ("processor-a", "processor-b"):
        service = cluster.processor(name)
        service.env["LEADFLOW_PROCESSOR_SESSION_TIMEOUT"] = "30"
        service.start()
    first, second = cluster.services
    gateways = [cluster.gateway(0).start(), cluster.gateway(1).start()]
    for service in (first, second):
        service.wait_log("Worker ready")
    for gateway in gateways:
        gateway.wait_ready()
    group = f"{cluster.prefix}processor"
    await _until_members(cluster.bootstrap, group, 2, 60.0)
    urls = [g.ws_url for g in gateways]
    visitors = [
        PatientVisitor([urls[i % 2]], FLOWS[i % 3], random.Random(i), think=THINK)
        for i in range(24)
    ]
    playing = asyncio.create_task(play_all(visitors))
    await asyncio.sleep(2.0)
    assert first.proc is not None
    sent = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    handed_over = await _until_members(cluster.bootstrap, group, 1, 20.0)
    assert await _wait_exit(first.proc, 30.0) == 0
    exited = time.monotonic() - sent
    ends = await asyncio.wait_for(playing, 120)
    assert all(end["done"] for end in ends)
    assert handed_over < 10.0, f"the survivor took {handed_over:.1f} s (session timeout 30 s)"
    await check_transcripts(urls[0], visitors)
    await check_log_and_table(cluster, {v.conversation_id for v in visitors})
    print(f"processor: SIGTERM to exit {exited:.2f} s, group of one after {handed_over:.2f} s")


async def test_distributed_gateway_sigterm_closes_with_1012_and_visitors_resume_on_another(
    cluster: Cluster,
) -> None:
    """SIGTERM to one of two gateways mid-quiz: unready first, the answers in flight
    acknowledged through Kafka, close 1012 with a retry hint, exit 0 in the grace
    period; each visitor resumes on the other gateway at its node and finishes."""
    processor = cluster.processor().start()
    leaving, staying = cluster.gateway(0), cluster.gateway(1)
    leaving.env.update(SHUTDOWN_ENV)
    leaving.start()
    staying.start()
    processor.wait_log("Worker ready")
    leaving.wait_ready()
    staying.wait_ready()
    visitors = [await Visitor.connect(leaving.ws_url) for _ in range(4)]
    try:
        for i, visitor in enumerate(visitors):
            await visitor.start(FLOWS[i % 3])
        assert leaving.proc is not None and leaving.port is not None
        took, _ = await _sigterm_mid_quiz(leaving.proc, leaving.port, leaving.ws_url, visitors)
        assert DRAIN_SECONDS <= took < GRACE_SECONDS
        print(f"gateway: SIGTERM to exit {took:.2f} s")
        for visitor in visitors:
            assert (await _resume_and_finish(visitor, staying.ws_url))["done"]
    finally:
        await asyncio.gather(*(v.session.close() for v in visitors))


async def test_policy_service_sigterm_mid_fit_exits_0_and_cleanly(cluster: Cluster) -> None:
    """SIGTERM while the policy service fits: its schedule, worker process and Kafka
    clients stop, it exits 0 within its grace, and nothing is logged as an error."""
    await ensure_topics(cluster.settings)
    await produce(cluster, (await simulate(450, seed=43)).events)
    service = policy_service(cluster, LEADFLOW_POLICY_REFIT_SECONDS="1").start()
    service.wait_ready(timeout=30)
    service.wait_log("policy fit started", timeout=30)
    assert service.proc is not None
    sent = time.monotonic()
    service.proc.send_signal(signal.SIGTERM)
    assert await _wait_exit(service.proc, 20.0) == 0
    took = time.monotonic() - sent
    logged = service.log_text()
    assert '"level":"error"' not in logged and "Traceback" not in logged, logged[-3000:]
    assert took < 10.0, f"SIGTERM to exit took {took:.1f} s"
