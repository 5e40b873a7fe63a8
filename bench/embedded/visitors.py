"""Scripted visitors: the load generator.

A Leadflow visitor plays conversations until the phase's deadline, each on a
new WebSocket (a new page view): ``start`` one of the example flows (rotating),
press a random button of each question (fixed seed), submit each lead form
validly, until a message with ``done: true``; it thinks (``Phase.think_s``)
before every command, and before each new conversation.

It records what it played as a ``Script``: per conversation, the think times it
used. The echo twin replays that script exactly (the same sockets, the same
number of frames per socket, the same think times), so the echo run offers the
same load on the same schedule and its latencies are the transport's floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import aiohttp

from bench.embedded.phases import Phase
from bench.embedded.protocol import (
    FLOWS,
    REPLY_TIMEOUT_S,
    Recorder,
    ReplyCheck,
    command_frame,
    echo_payload,
    read_reply,
    refused,
    start_frame,
)
from bench.embedded.stats import Json

ORIGIN = "http://localhost"
# One conversation: the think time before its start, then before each command sent.
Round = list[float]
Script = list[Round]


@dataclass(frozen=True, slots=True)
class RunContext:
    session: aiohttp.ClientSession
    url: str
    phase: Phase
    seed: int
    deadline_ns: int
    rec: Recorder


async def _think(ctx: RunContext, seconds: float) -> bool:
    """Think for ``seconds``, but not past the deadline; False once it has passed."""
    remaining = (ctx.deadline_ns - time.perf_counter_ns()) / 1e9
    if remaining <= 0:
        return False
    if seconds > 0:
        await asyncio.sleep(min(seconds, remaining))
    return time.perf_counter_ns() < ctx.deadline_ns


async def _connect(ctx: RunContext) -> tuple[aiohttp.ClientWebSocketResponse | None, int]:
    """Open a new socket: (the socket or None, when ``ws_connect`` was called)."""
    started = time.perf_counter_ns()
    try:
        ws = await ctx.session.ws_connect(
            ctx.url, headers={"Origin": ORIGIN}, compress=0, max_msg_size=1 << 20
        )
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        ctx.rec.error(f"connect_failed:{type(exc).__name__}", str(exc)[:200])
        ctx.rec.rounds_aborted += 1
        return None, started
    ctx.rec.add("handshake", time.perf_counter_ns() - started)
    return ws, started


async def _close(ws: aiohttp.ClientWebSocketResponse) -> None:
    with contextlib.suppress(aiohttp.ClientError, ConnectionError):
        await ws.close()


@dataclass(slots=True)
class Conversation:
    """One visitor's conversation on one socket."""

    ws: aiohttp.ClientWebSocketResponse
    check: ReplyCheck
    flow: str
    index: int
    rng: random.Random


async def _start(ctx: RunContext, conv: Conversation, connect_started: int) -> Json | None:
    """Send ``start``; the reply's last message, or None if it was refused."""
    rec = ctx.rec
    start_sent = time.perf_counter_ns()
    await conv.ws.send_str(start_frame(conv.flow))
    outcome = await read_reply(conv.ws, conv.check)
    if refused(rec, outcome, f"start {conv.flow}") or outcome.last is None:
        return None
    assert outcome.first_message_ns is not None
    rec.starts_ok += 1
    rec.add("connect_to_first_message", outcome.first_message_ns - connect_started)
    rec.add("start_to_first_message", outcome.first_message_ns - start_sent)
    rec.add("start_to_reply", outcome.end_ns - start_sent)
    return outcome.last


async def _answer(ctx: RunContext, conv: Conversation, message: Json, seq: int) -> Json | None:
    """Press a random button, answer a free-text question or submit the form; the
    reply's last message, or None."""
    rec = ctx.rec
    is_question = message.get("kind") == "question"
    button = conv.rng.choice(message["buttons"])["id"] if is_question else None
    kind, text = command_frame(message, seq, button, conv.index)
    conv.check.next_command(seq)
    sent_at = time.perf_counter_ns()
    await conv.ws.send_str(text)
    outcome = await read_reply(conv.ws, conv.check)
    if refused(rec, outcome, f"{kind} {conv.flow}/{message.get('node_id')}"):
        return None
    rec.add(kind, outcome.end_ns - sent_at)
    if kind == "press":
        rec.presses_ok += 1
    elif kind == "answer":
        rec.answers_ok += 1
    else:
        rec.leads_ok += 1
    return outcome.last


async def _converse(
    ctx: RunContext, conv: Conversation, connect_started: int, played: Round
) -> None:
    """``start``, then answer until done; appends each think time used to ``played``."""
    message = await _start(ctx, conv, connect_started)
    seq = 1
    while message is not None and message.get("done") is not True:
        think = ctx.phase.think_s(conv.rng)
        if not await _think(ctx, think):
            ctx.rec.rounds_cut_by_deadline += 1
            return
        played.append(think)
        seq += 1
        message = await _answer(ctx, conv, message, seq)
    if message is None:
        ctx.rec.rounds_aborted += 1
    else:
        ctx.rec.rounds_completed += 1


async def _leadflow_round(
    ctx: RunContext, flow: str, index: int, rng: random.Random, played: Round
) -> None:
    """One conversation on a new socket (a new page view)."""
    ws, connect_started = await _connect(ctx)
    if ws is None:
        return
    try:
        conv = Conversation(ws, ReplyCheck(ctx.rec), flow, index, rng)
        await _converse(ctx, conv, connect_started, played)
    finally:
        await _close(ws)


async def leadflow_visitor(ctx: RunContext, index: int) -> Script:
    """Play conversations until the deadline; return what was played, for the echo twin."""
    rng = random.Random(ctx.seed * 1_000_003 + index)
    script: Script = []
    think = ctx.phase.arrival_s(rng)
    while await _think(ctx, think):
        played: Round = [think]
        script.append(played)
        flow = FLOWS[(index + len(script) - 1) % len(FLOWS)]
        try:
            await _leadflow_round(ctx, flow, index, rng, played)
        except (aiohttp.ClientError, ConnectionError) as exc:  # the socket broke mid-round
            ctx.rec.error(f"socket_error:{type(exc).__name__}", str(exc)[:200])
            ctx.rec.rounds_aborted += 1
        think = ctx.phase.think_s(rng)
    return script


async def _echo_exchange(
    ctx: RunContext, ws: aiohttp.ClientWebSocketResponse, payload: str
) -> tuple[int | None, int]:
    """Send one frame, wait for its echo: (when the echo arrived or None, when sent)."""
    sent_at = time.perf_counter_ns()
    await ws.send_str(payload)
    try:
        msg = await ws.receive(timeout=REPLY_TIMEOUT_S)
    except TimeoutError:
        ctx.rec.error("reply_timeout", "echo")
        return None, sent_at
    now = time.perf_counter_ns()
    if msg.type is not aiohttp.WSMsgType.TEXT:
        ctx.rec.error(f"socket_{msg.type.name.lower()}", f"echo (close_code={ws.close_code})")
        return None, sent_at
    if msg.data != payload:
        ctx.rec.anomaly("echo_mismatch", str(msg.data)[:200])
    return now, sent_at


async def _echo_round(ctx: RunContext, index: int, thinks: Round) -> None:
    """The echo twin of one conversation: one socket, 1 + ``len(thinks)`` round trips."""
    rec = ctx.rec
    ws, connect_started = await _connect(ctx)
    if ws is None:
        return
    try:
        received, _ = await _echo_exchange(ctx, ws, echo_payload(index, 0))
        if received is None:
            rec.rounds_aborted += 1
            return
        rec.starts_ok += 1
        rec.add("connect_to_first_message", received - connect_started)
        for n, think in enumerate(thinks, start=1):
            if not await _think(ctx, think):
                rec.rounds_cut_by_deadline += 1
                return
            received, sent_at = await _echo_exchange(ctx, ws, echo_payload(index, n))
            if received is None:
                rec.rounds_aborted += 1
                return
            rec.add("press", received - sent_at)
            rec.presses_ok += 1
        rec.rounds_completed += 1
    finally:
        await _close(ws)


async def echo_visitor(ctx: RunContext, index: int, script: Script) -> Script:
    """Replay a Leadflow visitor's script against the echo server."""
    for played in script:
        if not await _think(ctx, played[0]):
            break
        try:
            await _echo_round(ctx, index, played[1:])
        except (aiohttp.ClientError, ConnectionError) as exc:
            ctx.rec.error(f"socket_error:{type(exc).__name__}", str(exc)[:200])
            ctx.rec.rounds_aborted += 1
    return script
