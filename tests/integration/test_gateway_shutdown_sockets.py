"""The gateway's shutdown (gateway/shutdown.py) in process, over real sockets (an
aiohttp test server): a command in flight is answered before the 1012 close, a
frame that arrives once the close began is not dispatched, readiness and
upgrades turn 503. Real sockets and real waits, so here rather than in the unit
tier (tests/integration/test_gateway_shutdown.py keeps the settings and the close
reason); tests/integration/test_graceful_shutdown.py does it with processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_gateway_app
from gateway.shutdown import SOCKETS, ShutdownSettings
from schemas.commands import Command, PressButton
from schemas.replies import Reply
from services.conversation.service import InProcessCommandBus
from tests.support.visitor import valid_answer
from tests.unit.test_connection import DEMO_ORIGIN, Gateway, start_frame

SETTINGS = ShutdownSettings(drain_seconds=0.0, grace_seconds=10.0, retry_after_ms=100)


class HeldPresses:
    """The in-process bus, except that presses wait until ``release`` is set."""

    def __init__(self, inner: InProcessCommandBus) -> None:
        self.inner = inner
        self.release = asyncio.Event()
        self.pressed = asyncio.Event()
        self.presses = 0

    async def send(self, command: Command) -> Reply:
        if isinstance(command, PressButton):
            self.presses += 1
            self.pressed.set()
            await self.release.wait()
        return await self.inner.send(command)


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[TestClient[Any, Any], HeldPresses]]:
    plain = Gateway()
    bus = HeldPresses(InProcessCommandBus(plain.service))
    held = Gateway(bus=bus)
    app = create_gateway_app(held.ctx, ready=lambda: True, shutdown=SETTINGS)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, bus
    finally:
        bus.release.set()
        await client.close()


async def _frames_until_question(ws: aiohttp.ClientWebSocketResponse) -> list[Any]:
    """The frames up to the first question with buttons, answering a free-text
    question on the way (solar-quote asks the visitor's first name first)."""
    frames = []
    while True:
        frame = orjson.loads(await ws.receive_str(timeout=5))
        frames.append(frame)
        if frame["type"] == "message" and frame["message"]["kind"] == "question":
            return frames
        if frame["type"] == "message" and frame["message"]["kind"] == "input":
            message = frame["message"]
            answer = {"type": "answer", "v": 1, "seq": frame["ack"] + 1, "node": message["node_id"]}
            answer["value"] = valid_answer(message["input"])
            await ws.send_str(orjson.dumps(answer).decode())


async def _press(ws: aiohttp.ClientWebSocketResponse, question: Any, seq: int) -> None:
    message = question["message"]
    frame = {
        "type": "press",
        "v": 1,
        "seq": seq,
        "node": message["node_id"],
        "button": message["buttons"][0]["id"],
    }
    await ws.send_str(orjson.dumps(frame).decode())


async def test_a_command_in_flight_is_answered_before_the_1012_close(
    gateway: tuple[TestClient[Any, Any], HeldPresses],
) -> None:
    client, bus = gateway
    ws = await client.ws_connect("/ws", headers={"Origin": DEMO_ORIGIN})
    await ws.send_str(orjson.dumps(start_frame()).decode())
    frames = await _frames_until_question(ws)
    await _press(ws, frames[-1], frames[-1]["ack"] + 1)
    await asyncio.wait_for(bus.pressed.wait(), 5)
    shutting = asyncio.create_task(client.app.shutdown())  # on_shutdown: close_sockets
    await asyncio.sleep(0.2)
    assert not ws.closed and not shutting.done(), "closed with a reply still in flight"
    assert (await client.get("/readyz")).status == 503
    upgrade = await client.get("/ws")
    assert (upgrade.status, upgrade.headers.get("Retry-After")) == (503, "1")
    bus.release.set()
    reply = orjson.loads(await ws.receive_str(timeout=5))
    assert reply["type"] == "message" and reply["ack"] == frames[-1]["ack"] + 1
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1012)
    assert 100 <= orjson.loads(msg.extra or "{}")["retry_after_ms"] <= 200
    await asyncio.wait_for(shutting, 5)
    assert len(client.app[SOCKETS]) == 0


async def test_a_frame_after_the_close_began_is_not_dispatched(
    gateway: tuple[TestClient[Any, Any], HeldPresses],
) -> None:
    client, bus = gateway
    ws = await client.ws_connect("/ws", headers={"Origin": DEMO_ORIGIN})
    await ws.send_str(orjson.dumps(start_frame()).decode())
    frames = await _frames_until_question(ws)
    client.app[SOCKETS].closing = True
    await _press(ws, frames[-1], frames[-1]["ack"] + 1)
    await asyncio.sleep(0.1)
    assert bus.presses == 0, "the widget re-sends it after resuming; it must not run twice"
