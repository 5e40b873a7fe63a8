"""Graceful shutdown of a gateway: drain, finish in-flight commands, close with 1012.

On SIGTERM (:func:`drain_on_sigterm`) the gateway turns unready at once (``/readyz``
answers 503, new WebSocket upgrades get 503 with ``Retry-After``), keeps serving
its open sockets for ``drain_seconds`` (time for the load balancer to take it
out), and then hands over to aiohttp's graceful exit: the listening sockets
close, and :func:`close_sockets` (``on_shutdown``) waits for each socket's command
in flight to be answered (at most the command timeout), then closes every socket
with 1012 (service restart) and a reason ``{"retry_after_ms": N}``: the widget
reconnects after about N ms, through the load balancer to another gateway, and
resumes its conversation with its token (docs/protocol.md).

Both modes share this (``leadflow serve`` and ``leadflow run gateway``).

| variable | default | meaning |
|---|---|---|
| LEADFLOW_SHUTDOWN_DRAIN_SECONDS | 5 | unready but serving, after SIGTERM |
| LEADFLOW_SHUTDOWN_GRACE_SECONDS | 30 | SIGTERM to exit, at most |
| LEADFLOW_SHUTDOWN_RETRY_MS | 1000 | the retry hint's base (plus up to as much again of jitter) |
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.keys import CONTEXT

log = logging.getLogger(__name__)
CLOSE_SERVICE_RESTART = 1012
CLOSE_TIMEOUT_SECONDS = 2.0  # the close handshakes with the visitors, at most (x2)
CLEANUP_SECONDS = 1.0  # after the sockets: the cleanup contexts (Kafka clients, SQLite)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    value = default if raw in (None, "") else float(str(raw))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class ShutdownSettings:
    drain_seconds: float = 5.0
    grace_seconds: float = 30.0
    retry_after_ms: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShutdownSettings:
        env = os.environ if env is None else env
        settings = cls(
            drain_seconds=_seconds(env, "LEADFLOW_SHUTDOWN_DRAIN_SECONDS", 5.0),
            grace_seconds=_seconds(env, "LEADFLOW_SHUTDOWN_GRACE_SECONDS", 30.0),
            retry_after_ms=int(_seconds(env, "LEADFLOW_SHUTDOWN_RETRY_MS", 1000)),
        )
        if settings.grace_seconds <= settings.drain_seconds + 1:
            raise ValueError(
                "LEADFLOW_SHUTDOWN_GRACE_SECONDS must exceed LEADFLOW_SHUTDOWN_DRAIN_SECONDS by 1+"
            )
        return settings

    def inflight_seconds(self, command_timeout: float) -> float:
        """How long shutdown waits for replies in flight: the command timeout, but
        never past the grace period (drain and the close handshakes come first)."""
        budget = self.grace_seconds - self.drain_seconds - 2 * CLOSE_TIMEOUT_SECONDS
        return max(0.0, min(command_timeout + 0.5, budget))

    def server_timeout(self, command_timeout: float) -> float:
        """aiohttp's ``shutdown_timeout`` (handlers still running after on_shutdown)."""
        rest = self.grace_seconds - self.drain_seconds - self.inflight_seconds(command_timeout)
        return max(0.5, rest - 2 * CLOSE_TIMEOUT_SECONDS - CLEANUP_SECONDS)


def close_reason(retry_after_ms: int, rand: Callable[[], float] = random.random) -> bytes:
    """The 1012 close reason: the hint with up to as much again of jitter, so that a
    gateway's visitors do not all come back in the same millisecond."""
    hint = retry_after_ms + int(rand() * retry_after_ms)
    return orjson.dumps({"retry_after_ms": hint})


@dataclass(eq=False, slots=True)
class TrackedSocket:
    """An open socket and whether a command of it is in flight. The future shutdown
    waits on is made only when it waits (an ``asyncio.Event`` per socket cost about
    0.8 KiB of each visitor's memory, and a set and a clear per frame)."""

    ws: web.WebSocketResponse
    busy: bool = False
    _idle: asyncio.Future[None] | None = None

    def done(self) -> None:
        self.busy = False
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def wait_idle(self) -> None:
        if not self.busy:
            return
        if self._idle is None or self._idle.done():
            self._idle = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._idle)


@dataclass(eq=False)
class Sockets:
    """The gateway's open sockets and whether each has a command in flight."""

    settings: ShutdownSettings = field(default_factory=ShutdownSettings)
    draining: bool = False
    closing: bool = False
    _open: set[TrackedSocket] = field(default_factory=set)

    def track(self, ws: web.WebSocketResponse) -> TrackedSocket:
        """Count ``ws`` among the open sockets until :meth:`untrack`."""
        entry = TrackedSocket(ws)
        self._open.add(entry)
        return entry

    def untrack(self, entry: TrackedSocket) -> None:
        self._open.discard(entry)
        entry.done()

    def begin_command(self, entry: TrackedSocket) -> bool:
        """False once shutdown has begun closing (the frame is then dropped: the widget
        sends it again after resuming); else marks the socket busy until
        :meth:`TrackedSocket.done`, called once the reply frames are sent."""
        if self.closing:
            return False
        entry.busy = True
        return True

    def __len__(self) -> int:
        return len(self._open)

    async def close_if_closing(self, entry: TrackedSocket) -> bool:
        """A socket upgraded while the others were being closed gets its 1012 at once."""
        if not self.closing:
            return False
        reason = close_reason(self.settings.retry_after_ms)
        await entry.ws.close(code=CLOSE_SERVICE_RESTART, message=reason)
        return True

    async def close_all(self, inflight_seconds: float) -> None:
        self.draining = self.closing = True
        entries = list(self._open)
        if not entries:
            return
        waits = [asyncio.create_task(s.wait_idle()) for s in entries]
        _, late = await asyncio.wait(waits, timeout=inflight_seconds)
        for task in late:
            task.cancel()
        if late:
            log.warning("replies still in flight at shutdown", extra={"sockets": len(late)})
        reason = self.settings.retry_after_ms
        await asyncio.wait(
            [
                asyncio.create_task(
                    s.ws.close(code=CLOSE_SERVICE_RESTART, message=close_reason(reason))
                )
                for s in entries
            ],
            timeout=2 * CLOSE_TIMEOUT_SECONDS,
        )
        log.info("closed sockets for restart", extra={"sockets": len(entries)})


SOCKETS = web.AppKey("sockets", Sockets)


async def close_sockets(app: web.Application) -> None:
    """``on_shutdown``: after the listener closed, answer what is in flight, then 1012."""
    command_timeout = app[CONTEXT].settings.command_timeout_seconds
    sockets = app[SOCKETS]
    await sockets.close_all(sockets.settings.inflight_seconds(command_timeout))


def refuse_while_draining(app: web.Application) -> web.Response | None:
    """503 + Retry-After for a new socket once the gateway is draining."""
    sockets = app[SOCKETS]
    if not sockets.draining:
        return None
    retry = max(1, math.ceil(sockets.settings.retry_after_ms / 1000))
    return web.json_response(
        {"error": "restarting"}, status=503, headers={"Retry-After": str(retry)}
    )


def drain_on_sigterm(app: web.Application, settings: ShutdownSettings) -> float:
    """Replace aiohttp's SIGTERM handler (installed by ``run_app``) with: unready now,
    graceful exit after ``drain_seconds``. Only the CLI calls this; tests that run
    the app in process keep the default signal handling. Returns ``run_app``'s
    ``shutdown_timeout`` that keeps SIGTERM-to-exit within the grace period."""
    app[SOCKETS].settings = settings

    async def install(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        sockets = app[SOCKETS]
        drain: list[asyncio.Task[None]] = []

        async def exit_after_drain() -> None:
            await asyncio.sleep(sockets.settings.drain_seconds)
            loop.call_soon(_graceful_exit)

        def on_sigterm() -> None:
            if sockets.draining:
                return
            sockets.draining = True
            log.info(
                "SIGTERM: draining",
                extra={"sockets": len(sockets), "drain_seconds": sockets.settings.drain_seconds},
            )
            drain.append(loop.create_task(exit_after_drain(), name="drain"))

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        yield
        for task in drain:
            task.cancel()

    app.cleanup_ctx.insert(0, install)
    return settings.server_timeout(app[CONTEXT].settings.command_timeout_seconds)


def _graceful_exit() -> None:
    raise web.GracefulExit()
