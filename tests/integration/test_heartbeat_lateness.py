"""A gateway whose event loop is late does not close visitors that answered its
ping in time (gateway/heartbeat.py). The visitor runs on a thread with a loop of
its own, so it answers while the server's loop is stalled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.heartbeat import LateLoopTolerantResponse

HEARTBEAT = 0.2  # a PONG is due within 0.1 s of the ping
STALL = 1.0  # the server's loop stalls for this long right after sending a ping


def stalling(base: type[web.WebSocketResponse]) -> type[web.WebSocketResponse]:
    class Stalling(base):  # type: ignore[valid-type,misc]
        """Blocks its loop once, the moment its first ping is written.

        In the step that writes the ping, so the visitor's PONG can only arrive
        during the stall, whatever the machine's load: stalling an iteration or
        two later let a quick PONG be handled first, and the control case then
        failed now and again under CI's load."""

        stalled = False

        def _send_heartbeat(self) -> None:
            writer = self._writer
            if not self.stalled and writer is not None:
                self.stalled = True
                send = writer.send_frame

                async def send_then_stall(message: bytes, opcode: int, *args: object) -> None:
                    await send(message, opcode)  # a PING: written at once, no await inside
                    del writer.__dict__["send_frame"]
                    time.sleep(STALL)  # noqa: ASYNC251 (the point: a blocked loop)

                writer.__dict__["send_frame"] = send_then_stall
            super()._send_heartbeat()

    return Stalling


def app_with(response: type[web.WebSocketResponse]) -> web.Application:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = response(heartbeat=HEARTBEAT)
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


def visitor(url: str, seconds: float, answers_pings: bool = True) -> str:
    """Connect, answer pings (aiohttp's autoping) or not, say nothing; what happened."""

    async def run() -> str:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, autoping=answers_pings) as ws,
        ):
            try:  # one deadline: each ping answered would restart receive's own timeout
                async with asyncio.timeout(seconds):
                    msg = await ws.receive()
                    while msg.type is aiohttp.WSMsgType.PING:  # not answered: ignored
                        msg = await ws.receive()
            except TimeoutError:
                return "open"
            return f"{msg.type.name} {ws.close_code}"

    return asyncio.run(run())


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, str]]:
    started = {
        "tolerant": TestServer(app_with(stalling(LateLoopTolerantResponse))),
        "aiohttp": TestServer(app_with(stalling(web.WebSocketResponse))),
        "steady": TestServer(app_with(LateLoopTolerantResponse)),
    }
    for server in started.values():
        await server.start_server()
    yield {name: str(server.make_url("/ws")) for name, server in started.items()}
    for server in started.values():
        await server.close()


async def test_a_pong_read_late_by_a_stalled_loop_keeps_the_socket(
    servers: dict[str, str],
) -> None:
    assert await asyncio.to_thread(visitor, servers["tolerant"], 2.5) == "open"


async def test_aiohttp_alone_closes_it_which_is_what_the_subclass_is_for(
    servers: dict[str, str],
) -> None:
    """The control: without the subclass the same stall closes a healthy visitor."""
    outcome = await asyncio.to_thread(visitor, servers["aiohttp"], 2.5)
    assert outcome != "open"


async def test_a_visitor_that_never_answers_pings_is_still_closed(
    servers: dict[str, str],
) -> None:
    outcome = await asyncio.to_thread(visitor, servers["steady"], 2.5, False)
    assert outcome.split()[0] in ("CLOSE", "CLOSED", "CLOSING", "ERROR"), outcome
