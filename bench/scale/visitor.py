"""One visitor socket of the scale run, speaking docs/protocol.md.

A visitor opens its socket, ``start``s a conversation (with a ``start_id``, so a
retried start never makes a second one) and reads up to the first question (or
free-text question: solar-quote asks a first name, answered like a press). Then it
either holds the socket (reading, which answers the gateway's heartbeat pings) or,
when it is one of the active visitors, plays flows at human pace. A socket lost
unexpectedly (its gateway was killed) reconnects as the widget does (full-jitter
backoff, 0.5 s doubling to 15 s) to another gateway and ``resume``s with its token
and the highest message seq it has; the resumed conversation must continue exactly
where it was (same id, an ack never lower, only newer messages). A press in flight
when the socket was lost is sent again with the same seq after the resume unless
the resume shows it applied.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.embedded.protocol import input_value
from bench.kafka.visitors import lead_fields
from bench.scale.plan import backoff_s, is_retried, reconnect_target

Json = dict[str, Any]
SITE = "demo"
FLOWS = ("solar-quote", "saas-demo", "insurance-quote")
ORIGIN = {"Origin": "http://localhost"}
WAITING_KINDS = ("question", "lead_form", "input")
REPLY_TIMEOUT_S = 15.0  # past the gateway's own command timeout (10 s)
CONNECT_TIMEOUT_S = 15.0
MAX_RECONNECT_ATTEMPTS = 40
MAX_EXAMPLES = 10
MAX_ERROR_TIMES = 10_000
# A socket whose peer died: aiohttp waits ws_close (10 s by default) for a close frame
# that never comes before it reports the close; a browser sees the TCP close at once.
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=0.5)


class Lost(Exception):
    """The socket closed or failed under the visitor."""


@dataclass
class Tally:
    """What one load generator saw: errors and anomalies by kind (first examples
    kept verbatim), latency samples and failover times."""

    errors: Counter[str] = field(default_factory=Counter)
    closes: Counter[str] = field(default_factory=Counter)  # held sockets closed under us
    examples: list[str] = field(default_factory=list)  # of errors, not retried attempts
    error_at: list[tuple[str, float]] = field(default_factory=list)  # (kind, monotonic)
    ramp_ms: list[float] = field(default_factory=list)
    press: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms)
    start: list[tuple[float, float]] = field(default_factory=list)
    probe_ms: list[float] = field(default_factory=list)
    lost: list[tuple[float, float | None]] = field(default_factory=list)  # (lost at, resumed at)
    presses_applied_across_loss: int = 0
    presses_resent: int = 0
    starts_resent: int = 0
    conversations_completed: int = 0

    def error(self, kind: str, detail: str = "") -> None:
        self.errors[kind] += 1
        if is_retried(kind):
            return  # counted only: thousands around a kill, each expected
        if len(self.error_at) < MAX_ERROR_TIMES:
            self.error_at.append((kind, time.monotonic()))  # the machine's clock: phases
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{kind}: {detail}"[:400])


@dataclass(slots=True)
class Visitor:
    index: int
    gateway: int
    active: bool
    urls: list[str]
    ws: aiohttp.ClientWebSocketResponse | None = None
    cid: str = ""
    token: str = ""
    ack: int = 0
    last_seq: int = 0
    seqs: list[int] = field(default_factory=list)  # message seqs of this conversation
    current: Json | None = None  # active: the message waiting for an answer
    flows: int = 0
    recovered: int = 0  # times lost and resumed

    async def connect(self, session: aiohttp.ClientSession, gateway: int) -> None:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            self.ws = await session.ws_connect(
                self.urls[gateway], headers=ORIGIN, autoping=True, compress=0, timeout=WS_TIMEOUT
            )
        self.gateway = gateway

    async def drop(self) -> None:
        """Close and forget the socket (a failed attempt)."""
        ws, self.ws = self.ws, None
        if ws is not None:
            await ws.close()

    async def send(self, frame: Json) -> None:
        if self.ws is None or self.ws.closed:
            raise Lost("socket closed")
        try:
            await self.ws.send_str(orjson.dumps({"v": 1, **frame}).decode())
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise Lost(f"send: {type(exc).__name__}") from exc

    async def recv(self) -> Json:
        assert self.ws is not None
        msg = await self.ws.receive(timeout=REPLY_TIMEOUT_S)
        if msg.type is aiohttp.WSMsgType.TEXT:
            frame = orjson.loads(msg.data)
            assert isinstance(frame, dict)
            return frame
        raise Lost(f"socket {msg.type.name} {self.ws.close_code}")

    # -- conversations --------------------------------------------------------

    async def start(self, tally: Tally, start_id: str | None = None) -> None:
        """``start`` the next flow; read the session and its messages."""
        flow = FLOWS[(self.index + self.flows) % len(FLOWS)]
        self.flows += 1
        await self.send(
            {"type": "start", "site": SITE, "flow": flow,
             "start_id": start_id or secrets.token_hex(16)}
        )  # fmt: skip
        session = await self.recv()
        if session.get("type") != "session":
            raise ValueError(f"start answered by {session}")
        self.cid, self.token = str(session["conversation_id"]), str(session["token"])
        self.ack, self.last_seq, self.seqs, self.current = int(session["ack"]), 0, [], None
        await self._messages(int(session["messages"]), tally)

    async def _messages(self, count: int, tally: Tally) -> None:
        for _ in range(count):
            frame = await self.recv()
            self._take(frame, tally)

    def _take(self, frame: Json, tally: Tally) -> bool:
        """Track a reply frame; True when it completes the reply."""
        kind = frame.get("type")
        if kind == "error":
            return True
        message = frame.get("message")
        if kind != "message" or not isinstance(message, dict):
            tally.error("unexpected_frame", str(frame)[:200])
            return False
        seq = int(message["seq"])
        if seq <= self.last_seq:
            tally.error("message_seq_went_back", f"{self.cid}: {seq} <= {self.last_seq}")
        else:
            self.last_seq = seq
            self.seqs.append(seq)
        self.ack = max(self.ack, int(frame.get("ack", self.ack)))
        self.current = message
        return bool(message.get("kind") in WAITING_KINDS or message.get("done"))

    async def resume(self, tally: Tally) -> None:
        """``resume`` with the token and the highest seq held; check it continues."""
        held_ack, held_seq, cid = self.ack, self.last_seq, self.cid
        more = True
        while more:
            await self.send({"type": "resume", "token": self.token, "last_seq": self.last_seq})
            session = await self.recv()
            if session.get("type") != "session":
                raise ValueError(f"resume answered by {session}")
            if session.get("conversation_id") != cid:
                tally.error("resumed_another_conversation", f"{cid} -> {session}")
            if int(session["ack"]) < held_ack:
                tally.error("ack_went_back", f"{cid}: {held_ack} -> {session['ack']}")
            self.token = str(session.get("token") or self.token)
            self.ack = max(self.ack, int(session["ack"]))
            more = bool(session.get("more"))
            await self._messages(int(session["messages"]), tally)
        if not self.active and (self.ack != held_ack or self.last_seq != held_seq):
            tally.error(
                "idle_conversation_changed",
                f"{cid}: ack {held_ack}->{self.ack}, seq {held_seq}->{self.last_seq}",
            )

    async def recover(
        self,
        session: aiohttp.ClientSession,
        tally: Tally,
        rng: random.Random,
        stopping: asyncio.Event,
    ) -> bool:
        """Reconnect (the widget's backoff) to another gateway and resume."""
        lost_at, lost_on = time.monotonic(), self.gateway
        with_ws, self.ws = self.ws, None
        if with_ws is not None and not with_ws.closed:
            await with_ws.close()
        for attempt in range(MAX_RECONNECT_ATTEMPTS):
            await asyncio.sleep(backoff_s(attempt, rng))
            if stopping.is_set():
                tally.lost.append((lost_at, None))
                return False
            target = reconnect_target(self.index, attempt, len(self.urls), lost_on)
            try:
                await self.connect(session, target)
                await self.resume(tally)
            except (aiohttp.ClientError, OSError, TimeoutError, Lost, ValueError) as exc:
                tally.error(f"reconnect_attempt_failed:{type(exc).__name__}", str(exc)[:200])
                await self.drop()
                continue
            tally.lost.append((lost_at, time.monotonic()))
            self.recovered += 1
            return True
        tally.error("gave_up_reconnecting", self.cid)
        tally.lost.append((lost_at, None))
        return False

    # -- the active visitors --------------------------------------------------

    async def step(self, tally: Tally, rng: random.Random, recover: Any) -> None:
        """One command: a new ``start`` after a finished flow, else the next answer."""
        current = self.current
        if current is None or current.get("done"):
            if current is not None:
                tally.conversations_completed += 1
            began, sent_at = time.perf_counter(), time.monotonic()
            start_id = secrets.token_hex(16)  # kept across retries: one conversation
            while True:
                try:
                    await self.start(tally, start_id)
                    break
                except (Lost, TimeoutError):
                    if not await recover():
                        return
                    self.flows -= 1  # the same flow again
                    tally.starts_resent += 1
            tally.start.append((sent_at, (time.perf_counter() - began) * 1000))
            return
        seq = self.ack + 1
        frame: Json
        if current.get("kind") == "question":
            button = rng.choice(current["buttons"])["id"]
            frame = {"type": "press", "seq": seq, "node": current["node_id"], "button": button}
        elif current.get("kind") == "input":
            value = input_value(current.get("input") or {})
            frame = {"type": "answer", "seq": seq, "node": current["node_id"], "value": value}
        else:
            fields = lead_fields(current, self.index)
            frame = {"type": "lead", "seq": seq, "node": current["node_id"], "fields": fields}
        began, sent_at = time.perf_counter(), time.monotonic()
        while True:
            try:
                await self.send(frame)
                reply = await self._reply(seq, tally)
            except (Lost, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):
                    waited = time.perf_counter() - began
                    where = f"gateway {self.gateway}, sent {waited:.1f} s ago"
                    tally.error("reply_timeout", f"{self.cid} seq {seq} ({where})")
                if not await recover():
                    return
                if self.ack >= seq:  # applied before the socket was lost
                    tally.presses_applied_across_loss += 1
                    return
                tally.presses_resent += 1
                continue
            if reply.get("type") == "error":
                tally.error(f"error:{reply.get('code')}", str(reply)[:200])
                if reply.get("retryable"):
                    await asyncio.sleep(1.0)
                    continue
                self.current = None  # start over with a new conversation
                return
            tally.press.append((sent_at, (time.perf_counter() - began) * 1000))
            return

    async def _reply(self, seq: int, tally: Tally) -> Json:
        while True:
            frame = await self.recv()
            if frame.get("type") != "error" and frame.get("ack") != seq:
                tally.error("wrong_ack", f"{self.cid}: seq {seq}, frame {str(frame)[:150]}")
            if self._take(frame, tally):
                return frame
