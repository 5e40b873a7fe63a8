"""The visitors of bench.sockets: open (start or echo), resume, hold idle."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench.embedded.protocol import ECHO_PAYLOAD_BYTES, WAITING_KINDS, start_frame

ORIGIN = {"Origin": "http://localhost:8080"}
TIMEOUT_S = 10.0


@dataclass
class Outcome:
    """Client-side latencies (ns) of the visitors of one phase, their errors, and the
    (token, last seq) of each conversation started (for the resume phase)."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    sessions: list[tuple[str, int]] = field(default_factory=list)


Visit = Callable[[aiohttp.ClientWebSocketResponse, Outcome, int], Awaitable[None]]


async def _frames(ws: aiohttp.ClientWebSocketResponse) -> dict[str, object]:
    frame = orjson.loads(await ws.receive_str(timeout=TIMEOUT_S))
    assert isinstance(frame, dict)
    return frame


async def start(ws: aiohttp.ClientWebSocketResponse, out: Outcome, index: int) -> None:
    """``start``, then the session frame and the messages up to the first question."""
    await ws.send_str(start_frame("solar-quote"))
    session = await _frames(ws)
    if session.get("type") != "session":
        raise ValueError(f"not a session: {session}")
    last = 0
    while True:
        frame = await _frames(ws)
        message = frame.get("message")
        if frame.get("type") != "message" or not isinstance(message, dict):
            raise ValueError(f"not a message: {frame}")
        last = max(last, int(message["seq"]))
        if message.get("kind") in WAITING_KINDS:
            break
    out.sessions.append((str(session["token"]), last))


def resume(sessions: list[tuple[str, int]]) -> Visit:
    async def visit(ws: aiohttp.ClientWebSocketResponse, out: Outcome, index: int) -> None:
        token, last = sessions[index % len(sessions)]
        await ws.send_str(orjson.dumps({"type": "resume", "v": 1, "token": token,
                                        "last_seq": last}).decode())  # fmt: skip
        session = await _frames(ws)
        if session.get("type") != "session":
            raise ValueError(f"not a session: {session}")
        for _ in range(int(str(session["messages"]))):
            await _frames(ws)

    return visit


ECHO_FRAME = "x" * ECHO_PAYLOAD_BYTES


async def echo(ws: aiohttp.ClientWebSocketResponse, out: Outcome, index: int) -> None:
    await ws.send_str(ECHO_FRAME)
    if await ws.receive_str(timeout=TIMEOUT_S) != ECHO_FRAME:
        raise ValueError("not the echo")


async def visitors(url: str, count: int, concurrency: int, visit: Visit) -> Outcome:
    """``count`` visitors, ``concurrency`` at a time: connect, ``visit``, close."""
    out = Outcome()
    queue = iter(range(count))
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for index in queue:
                began = time.perf_counter_ns()
                try:
                    async with session.ws_connect(url, headers=ORIGIN, autoping=True) as ws:
                        await visit(ws, out, index)
                        out.latencies_ns.append(time.perf_counter_ns() - began)
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                    out.errors[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


WIDGET_PING = '{"type":"ping","v":1}'  # what the widget sends every 25 s
WIDGET_PING_SECONDS = 25.0


async def hold(
    url: str,
    count: int,
    seconds: float,
    measure: Callable[[], float],
    rss: Callable[[], int],
    app_pings: bool = False,
) -> dict[str, float]:
    """Open ``count`` sockets (answering the server's pings), let them idle ``seconds``
    and return the server's CPU over that window (``measure``: its CPU seconds now)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        opened: list[aiohttp.ClientWebSocketResponse] = []
        rss_before, began = rss(), time.monotonic()
        for first in range(0, count, 200):
            batch = min(200, count - first)
            opened += await asyncio.gather(
                *(session.ws_connect(url, headers=ORIGIN, autoping=True) for _ in range(batch))
            )
        open_seconds = time.monotonic() - began
        readers = [asyncio.create_task(_read_until_closed(ws)) for ws in opened]
        if app_pings:  # as widgets do, spread over the interval
            step = WIDGET_PING_SECONDS / len(opened)
            readers += [
                asyncio.create_task(_ping_every(ws, i * step)) for i, ws in enumerate(opened)
            ]
        await asyncio.sleep(2.0)  # the opening's tail (closing handshakes, GC) settles
        cpu_before, at = measure(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu, window = measure() - cpu_before, time.monotonic() - at
        rss_with = rss()
        still_open = sum(1 for ws in opened if not ws.closed)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for first in range(0, len(opened), 500):
            await asyncio.gather(*(ws.close() for ws in opened[first : first + 500]))
    return {
        "sockets": count,
        "still_open": still_open,
        "open_seconds": round(open_seconds, 2),
        "window_seconds": round(window, 2),
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_second_per_10k": round(cpu / window * 1000 * 10_000 / count, 2),
        "rss_kib_before": rss_before // 1024,
        "rss_kib_with_sockets": rss_with // 1024,
        "rss_kib_per_socket": round((rss_with - rss_before) / 1024 / count, 2),
    }


async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Reading is what answers the server's pings (aiohttp's autoping)."""
    async for _ in ws:
        pass


async def _ping_every(ws: aiohttp.ClientWebSocketResponse, offset: float) -> None:
    await asyncio.sleep(offset)
    while not ws.closed:
        await ws.send_str(WIDGET_PING)
        await asyncio.sleep(WIDGET_PING_SECONDS)
