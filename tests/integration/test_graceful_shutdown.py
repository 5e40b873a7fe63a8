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

from tests.support.server import ServerProcess
from tests.support.visitor import VALID_LEAD, Visitor

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
