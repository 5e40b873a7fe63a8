"""Durable timers in the distributed mode (issue 19, item 3), through a real
broker: the processor that owns a conversation's partition fires its idle
nudge through the commands topic and the gateway pushes it to the visitor's
open socket; after kill -9 of the processor the restarted one rebuilds the
timers from the recovered states and each fires once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from schemas.batches import decode_batch
from schemas.events import Event
from tests.integration.test_verify_kafka import verify
from tests.support.distributed import Cluster, Service, read_topic
from tests.support.timer_flows import NUDGE_TEXT, write_flows
from tests.support.visitor import Visitor


def _start(cluster: Cluster, tmp_path: Path) -> tuple[Service, Service]:
    env = {"LEADFLOW_FLOWS_DIR": str(write_flows(tmp_path / "flows"))}
    processor, gateway = cluster.processor(), cluster.gateway(0)
    for service in (processor, gateway):
        service.env.update(env)
        service.start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    return processor, gateway


async def _events(cluster: Cluster, conversation_id: str) -> list[Event]:
    records = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
    events = [
        e for _, key, value in records if key == conversation_id.encode()
        for e in decode_batch(value).events
    ]  # fmt: skip
    return sorted({e.seq: e for e in events}.values(), key=lambda e: e.seq)


async def test_the_nudge_reaches_the_open_socket_through_kafka(
    cluster: Cluster, tmp_path: Path
) -> None:
    _, gateway = _start(cluster, tmp_path)
    visitor = await Visitor.connect(gateway.ws_url)
    try:
        started = time.monotonic()
        await visitor.start("nudger")
        frame = await visitor.recv(wait=20)
        assert frame["type"] == "message", frame
        assert (frame["message"]["node_id"], frame["message"]["text"]) == ("colour", NUDGE_TEXT)
        assert time.monotonic() - started >= 4.5
        assert (await visitor.press("red"))[-1]["message"]["done"] is True
    finally:
        await visitor.close()
    kinds = [e.type for e in await _events(cluster, visitor.conversation_id)]
    assert kinds.count("VisitorNudged") == 1, kinds
    assert "ConversationAbandoned" not in kinds


async def test_timers_fire_once_after_kill9_of_the_processor(
    cluster: Cluster, tmp_path: Path
) -> None:
    processor, gateway = _start(cluster, tmp_path)
    visitor = await Visitor.connect(gateway.ws_url)
    await visitor.start("nudger")
    started = time.monotonic()
    processor.kill9()
    with contextlib.suppress(Exception):
        await visitor.close()
    processor.start()
    processor.wait_log("Worker ready")
    kinds: list[str] = []
    while time.monotonic() < started + 60:
        kinds = [e.type for e in await _events(cluster, visitor.conversation_id)]
        if "ConversationAbandoned" in kinds:
            break
        await asyncio.sleep(1.0)
    await asyncio.sleep(2.0)  # a timer fired twice would be in by now
    events = await _events(cluster, visitor.conversation_id)
    kinds = [e.type for e in events]
    assert kinds.count("VisitorNudged") == 1, kinds
    assert kinds.count("ConversationAbandoned") == 1, kinds
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    again = await Visitor.connect(gateway.ws_url)
    try:
        frames = await again.resume(visitor.token, last_seq=0)
        texts = [f["message"]["text"] for f in frames if f["type"] == "message"]
        assert texts.count(NUDGE_TEXT) == 1
        assert (await again.press("blue"))[-1]["message"]["done"] is True
    finally:
        await again.close()
    verified = verify(cluster, "--flows", str(tmp_path / "flows"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
