"""Each kind of bad input gets its documented error and the server stays up for others."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.server import ServerProcess
from tests.support.visitor import Visitor


@pytest.fixture(autouse=True)
async def bystander_still_served(server: ServerProcess) -> AsyncIterator[None]:
    """After every bad input, an honest visitor on another socket still finishes a flow."""
    yield
    other = await Visitor.connect(server.ws_url)
    try:
        await other.start("saas-demo")
        assert (await other.play_to_end(random.Random(0)))["done"]
    finally:
        await other.close()


async def raw_error(visitor: Visitor, text: str) -> dict[str, Any]:
    await visitor.ws.send_str(text)
    frame = await visitor.recv()
    assert frame["type"] == "error", frame
    return frame


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{not json", "malformed_frame"),
        ("[1, 2]", "malformed_frame"),
        ('{"type": "press", "v": 1, "seq": "two", "node": "a", "button": "b"}', "malformed_frame"),
        ('{"type": "teleport", "v": 1}', "unknown_frame_type"),
        ('{"type": "ping", "v": 9}', "unsupported_version"),
        ('{"type": "press", "v": 1, "seq": 2, "node": "a", "button": "b"}', "no_conversation"),
        ('{"type": "start", "v": 1, "site": "demo", "flow": "no-such-flow"}', "unknown_flow"),
        ('{"type": "start", "v": 1, "site": "nobody", "flow": "solar-quote"}', "unknown_site"),
        ('{"type": "resume", "v": 1, "token": "forged.token", "last_seq": 0}', "invalid_token"),
    ],
)
async def test_malformed_and_unknown_frames_get_their_error_code(
    visitor: Visitor, text: str, code: str
) -> None:
    """Garbage frames are answered with a clear, non-retryable error; the socket stays open."""
    frame = await raw_error(visitor, text)
    assert frame["code"] == code and frame["retryable"] is False
    await visitor.send({"type": "ping"})
    assert (await visitor.recv())["type"] == "pong"


async def test_oversized_frame_is_refused_and_the_conversation_goes_on(visitor: Visitor) -> None:
    """A frame over the application limit is dropped with frame_too_large, nothing lost."""
    await visitor.start("solar-quote")
    node = await visitor.answer_inputs()
    ack = visitor.ack
    frame = await raw_error(visitor, '{"type":"ping","v":1,"pad":"' + "x" * 5000 + '"}')
    assert frame["code"] == "frame_too_large"
    frames = await visitor.press(node["buttons"][0]["id"])
    assert frames[-1]["type"] == "message" and visitor.ack == ack + 1


async def test_frame_over_transport_limit_closes_with_1009(server: ServerProcess) -> None:
    """A frame over the transport limit closes that socket with 1009 (message too big)."""
    visitor = await Visitor.connect(server.ws_url)
    try:
        await visitor.ws.send_str("x" * 70_000)
        msg = await visitor.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert visitor.ws.close_code == 1009
    finally:
        await visitor.close()


async def test_unknown_button_stale_and_replayed_presses(visitor: Visitor) -> None:
    """Unknown buttons are refused (seq used up), replays re-send the same reply, stale
    and out-of-order seqs are refused, and none of it changes the conversation."""
    await visitor.start("solar-quote")
    node = await visitor.answer_inputs()  # the first name, at seq 2
    ack = visitor.ack
    assert ack == 2
    frame = (await visitor.press("no-such-button"))[-1]
    assert (frame["code"], frame["seq"], frame["ack"]) == ("unknown_button", ack + 1, ack + 1)
    first = await visitor.press(node["buttons"][0]["id"])
    assert first[-1]["type"] == "message" and visitor.ack == ack + 2
    replay = await visitor.press(node["buttons"][0]["id"], seq=ack + 2)
    assert [f["message"] for f in replay] == [f["message"] for f in first]
    stale = await visitor.press(node["buttons"][0]["id"], seq=ack + 1)
    assert stale[-1]["code"] == "stale_command"
    gap = await visitor.press(node["buttons"][0]["id"], seq=ack + 9)
    assert gap[-1]["code"] == "out_of_order" and gap[-1]["ack"] == ack + 2
    button = node["buttons"][0]["id"]
    await visitor.send({"type": "press", "seq": ack + 3, "node": node["node_id"], "button": button})
    wrong = await visitor.until_reply()  # that node is no longer the current one
    assert (wrong[-1]["code"], wrong[-1]["ack"]) == ("wrong_node", ack + 3)


async def test_invalid_lead_is_refused_field_by_field_without_echoing(visitor: Visitor) -> None:
    """A bad lead form gets per-field errors that never contain what was typed."""
    await visitor.start("saas-demo")
    rng = random.Random(5)
    for _ in range(40):
        node = visitor.current()
        assert node is not None and not node["done"], "no lead form reached"
        if node["kind"] == "lead_form":
            break
        await visitor.step(rng)
    frames = await visitor.lead({"email": "not-an-email@@", "phone": "12", "consent": "false"})
    error = frames[-1]
    assert error["code"] == "invalid_lead"
    assert {"email", "consent"} <= set(error["fields"])
    assert "not-an-email@@" not in str(error)
    frames = await visitor.lead({"name": "Bo", "email": "bo@example.com", "consent": "true"})
    assert frames[-1]["type"] == "message"


async def test_foreign_origin_is_refused_before_the_upgrade(server: ServerProcess) -> None:
    """A page on a foreign Origin gets no socket at all: HTTP 403 at the handshake."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await Visitor.connect(server.ws_url, origin="https://evil.example")
    assert refused.value.status == 403


async def test_flood_is_rate_limited_then_closed(server: ServerProcess) -> None:
    """A client that floods gets retryable rate_limited errors, then is closed with 1008."""
    visitor = await Visitor.connect(server.ws_url)
    try:
        for _ in range(200):
            await visitor.ws.send_str('{"type":"ping","v":1}')
        codes: list[str] = []
        while True:
            msg = await visitor.ws.receive(timeout=5)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = msg.json()
            codes.append(frame.get("code", frame["type"]))
        assert "rate_limited" in codes and codes.count("pong") <= 25
        assert visitor.ws.close_code == 1008
    finally:
        await visitor.close()


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "strict", env={"LEADFLOW_IDLE_TIMEOUT_SECONDS": "0.5"})
    yield proc.start()
    proc.stop()


async def test_idle_connection_is_closed(strict_server: ServerProcess) -> None:
    """A socket that sends nothing for the idle timeout is closed with 1001."""
    visitor = await Visitor.connect(strict_server.ws_url)
    try:
        msg = await visitor.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert visitor.ws.close_code == 1001
    finally:
        await visitor.close()
    await asyncio.sleep(0)
