"""WebSocket visitors (docs/protocol.md): each keeps one socket and plays the example
flows to the end, again and again: ``start`` (flows in rotation), a random button for
each question, a valid answer to each free-text question (counted as a press), valid
lead forms (name, ``visitorN@example.com``, consent ``"true"``).

A ``start`` is sent as soon as the previous conversation ended (not paced); presses
and leads follow the run's ``Schedule``. Every reply frame must carry ``ack`` = the
command's seq; an ``error`` frame, a timeout or a closed socket is counted: after an
error the visitor starts a new conversation, after a timeout or a closed socket it
reconnects first.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import aiohttp
import orjson

from bench.embedded.protocol import input_value
from bench.kafka.config import FLOWS, ORIGIN, REPLY_TIMEOUT_S, SITE
from bench.kafka.pacing import Pace, Recorder, Schedule
from bench.kafka.sysstats import Json

WAITING_KINDS = ("question", "lead_form", "input")
CONNECT_CONCURRENCY = 50


@dataclass(slots=True)
class Reply:
    end_ns: int
    last: Json | None = None  # the message that completed the reply
    failure: str | None = None  # "error:<code>", "reply_timeout", "socket_closed", ...
    detail: str = ""


@dataclass(slots=True)
class Visitor:
    index: int
    url: str
    rng: random.Random
    ws: aiohttp.ClientWebSocketResponse | None = None
    seq: int = 0
    conversation_id: str = ""
    current: Json | None = None  # the message waiting for an answer; None: start next
    flows_played: int = 0

    async def connect(self, session: aiohttp.ClientSession, rec: Recorder) -> bool:
        started = time.perf_counter_ns()
        try:
            self.ws = await session.ws_connect(
                self.url, headers={"Origin": ORIGIN}, compress=0, autoping=True
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            rec.error(f"connect_failed:{type(exc).__name__}", str(exc))
            return False
        rec.add("connect", time.perf_counter_ns() - started)
        self.current = None
        return True

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, OSError):
                await self.ws.close()
        self.ws = None

    async def start(self, rec: Recorder) -> None:
        flow = FLOWS[(self.index + self.flows_played) % len(FLOWS)]
        self.flows_played += 1
        self.seq = 1
        frame = {"type": "start", "v": 1, "site": SITE, "flow": flow, "context": {}}
        sent = time.perf_counter_ns()
        reply = await self._exchange(frame, session_first=True)
        if self._settle(reply, rec, f"start {flow}"):
            rec.add("start", reply.end_ns - sent)
            rec.counts["start"] += 1

    async def answer(self, rec: Recorder, intended_ns: int) -> None:
        message = self.current
        assert message is not None
        self.seq += 1
        node = message.get("node_id")
        frame: Json
        if message.get("kind") == "question":
            button = self.rng.choice(message["buttons"])["id"]
            kind = "press"
            frame = {"type": "press", "v": 1, "seq": self.seq, "node": node, "button": button}
        elif message.get("kind") == "input":  # a free-text question: counted as a press
            kind = "press"
            value = input_value(message.get("input") or {})
            frame = {"type": "answer", "v": 1, "seq": self.seq, "node": node, "value": value}
        else:
            kind = "lead"
            fields = lead_fields(message, self.index)
            frame = {"type": "lead", "v": 1, "seq": self.seq, "node": node, "fields": fields}
        sent, sent_wall = time.perf_counter_ns(), time.time()
        reply = await self._exchange(frame, session_first=False)
        if self._settle(reply, rec, f"{kind} {node}"):
            rec.add("press", reply.end_ns - sent)
            rec.add("press_sched", reply.end_ns - intended_ns)
            rec.counts[kind] += 1
            received_wall = sent_wall + (reply.end_ns - sent) / 1e9
            rec.traces.append((self.conversation_id, self.seq, sent_wall, received_wall))

    def _settle(self, reply: Reply, rec: Recorder, what: str) -> bool:
        """Take the reply in; False (and counted) when it failed."""
        if reply.failure is not None:
            rec.error(reply.failure, f"visitor {self.index} {what}: {reply.detail}")
            self.current = None
            return False
        last = reply.last
        assert last is not None
        if last.get("done") is True:
            rec.counts["conversations_completed"] += 1
            self.current = None
        else:
            self.current = last
        return True

    async def _exchange(self, frame: Json, *, session_first: bool) -> Reply:
        ws = self.ws
        if ws is None or ws.closed:
            return Reply(time.perf_counter_ns(), failure="socket_closed")
        try:
            await ws.send_str(orjson.dumps(frame).decode())
            return await self._read_reply(ws, session_first)
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            await self.close()
            return Reply(time.perf_counter_ns(), failure="socket_error", detail=repr(exc))

    async def _read_reply(self, ws: aiohttp.ClientWebSocketResponse, session_first: bool) -> Reply:
        expect_session = session_first
        while True:
            try:
                msg = await ws.receive(timeout=REPLY_TIMEOUT_S)
            except TimeoutError:
                await self.close()  # a late reply would desynchronise this socket
                return Reply(time.perf_counter_ns(), failure="reply_timeout")
            now = time.perf_counter_ns()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                await self.close()
                detail = f"{msg.type.name} close_code={ws.close_code}"
                return Reply(now, failure="socket_closed", detail=detail)
            data: Json = orjson.loads(msg.data)
            ftype = data.get("type")
            if ftype == "error":
                return Reply(now, failure=f"error:{data.get('code')}", detail=msg.data[:300])
            if data.get("ack") != self.seq:
                return Reply(now, failure="ack_mismatch", detail=f"seq {self.seq}: {msg.data}")
            if expect_session:
                if ftype != "session":
                    return Reply(now, failure="no_session_frame", detail=msg.data[:300])
                expect_session = False
                self.conversation_id = str(data.get("conversation_id"))
                continue
            message = data.get("message")
            if ftype != "message" or not isinstance(message, dict):
                return Reply(now, failure="unexpected_frame", detail=msg.data[:300])
            if message.get("kind") in WAITING_KINDS or message.get("done") is True:
                return Reply(now, last=message)


def lead_fields(form: Json, index: int) -> dict[str, str]:
    """Valid values: name, email, consent; optional fields omitted."""
    fields: dict[str, str] = {}
    for spec in form.get("fields") or ():
        name, ftype = spec.get("name"), spec.get("type")
        if ftype == "consent":
            fields[name] = "true"
        elif ftype == "email":
            fields[name] = f"visitor{index}@example.com"
        elif name == "name":
            fields[name] = "Test Visitor"
        elif spec.get("required"):
            fields[name] = "Test"
    return fields


async def visitor_loop(
    visitor: Visitor,
    session: aiohttp.ClientSession,
    pace: Pace,
    t0_ns: int,
    deadline_ns: int,
    rec: Recorder,
) -> int:
    """Play until the deadline; returns the schedule's resync count."""
    schedule = Schedule.begin(pace, visitor.rng, t0_ns, deadline_ns)
    while time.perf_counter_ns() < deadline_ns:
        if visitor.ws is None or visitor.ws.closed:
            rec.counts["reconnects"] += 1
            if not await visitor.connect(session, rec):
                await asyncio.sleep(0.2)
                continue
        if visitor.current is None:
            await visitor.start(rec)
            continue
        intended = await schedule.next()
        if intended is None:
            break
        await visitor.answer(rec, intended)
    return schedule.resyncs


async def connect_all(
    visitors: list[Visitor], session: aiohttp.ClientSession, rec: Recorder
) -> list[Visitor]:
    """Open the sockets not open yet, ``CONNECT_CONCURRENCY`` at a time."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(visitor: Visitor) -> None:
        async with gate:
            await visitor.connect(session, rec)

    await asyncio.gather(*(one(v) for v in visitors if v.ws is None or v.ws.closed))
    return [v for v in visitors if v.ws is not None and not v.ws.closed]


async def prime(visitors: list[Visitor], rec: Recorder) -> int:
    """Start a conversation on every open socket that has none, outside any measured
    run (``CONNECT_CONCURRENCY`` at a time), so a step does not begin with a stampede
    of starts; returns how many were sent."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    idle = [v for v in visitors if v.ws is not None and not v.ws.closed and v.current is None]

    async def one(visitor: Visitor) -> None:
        async with gate:
            await visitor.start(rec)

    await asyncio.gather(*(one(v) for v in idle))
    return len(idle)
