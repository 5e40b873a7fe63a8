"""The ``/ws`` endpoint: moves text frames between the socket and a Connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from gateway.admission import ADMISSION, refuse_at_capacity
from gateway.connection import Connection, GatewayContext
from gateway.heartbeat import LateLoopTolerantResponse
from gateway.keys import CONTEXT, PUSHES
from gateway.shutdown import SOCKETS, Sockets, TrackedSocket, refuse_while_draining
from schemas.frames import error_frame, message_frame
from schemas.replies import Reply, ReplyError
from services.pushes import Deliver, Pushes
from services.tracing import continued

log = logging.getLogger(__name__)
CLOSE_GOING_AWAY = 1001
IDLE_REASON = b"idle timeout"
BINARY_REFUSED = error_frame(
    ReplyError(code="malformed_frame", message="binary frames are not supported")
)


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    ctx: GatewayContext = app[CONTEXT]
    refused = refuse_while_draining(app)
    if refused is not None:
        ctx.metrics.upgrades_refused.labels("draining").inc()
        return refused
    refused = refuse_foreign_origin(request, ctx)
    if refused is not None:
        return refused
    admission = app[ADMISSION]
    refused = refuse_at_capacity(admission, ctx.metrics)  # takes a slot when it admits
    if refused is not None:
        return refused
    try:
        return await _upgraded(request, ctx, app[SOCKETS])
    finally:
        admission.release()


async def _upgraded(
    request: web.Request, ctx: GatewayContext, sockets: Sockets
) -> web.StreamResponse:
    settings = ctx.settings
    ws = LateLoopTolerantResponse(
        heartbeat=settings.heartbeat_seconds,
        max_msg_size=settings.max_transport_bytes,
        compress=False,
    )
    try:
        await ws.prepare(request)
    except ConnectionResetError:
        # the visitor left during the handshake (a client's timeout in a reconnect
        # storm): nothing to serve, and nothing went wrong here. A plain response,
        # which aiohttp finishes quietly on a closed connection (the half-prepared
        # WebSocket response would fail again there, with a traceback in the log)
        return web.Response(status=400, text="the connection closed during the upgrade")
    connection = Connection(ctx, request.headers.get("Origin"))
    pushed = Pushed(ws, request.app[PUSHES])
    ctx.metrics.connections.inc()
    tracked = sockets.track(ws)
    try:
        with continued(request.headers):
            if not await sockets.close_if_closing(tracked):
                await _serve(
                    ws, connection, settings.idle_timeout_seconds, sockets, tracked, pushed
                )
    finally:
        pushed.follow(None)
        sockets.untrack(tracked)
        ctx.metrics.connections.dec()
    return ws


def refuse_foreign_origin(request: web.Request, ctx: GatewayContext) -> web.Response | None:
    """403 before the upgrade unless the request has exactly one ``Origin`` and some
    site allows it (each ``start``/``resume`` then checks it against its own site).
    A page no site allows never gets a socket, and two ``Origin`` headers, which a
    browser never sends, are not guessed between."""
    origins = request.headers.getall("Origin", [])
    if len(origins) == 1 and any(site.allows_origin(origins[0]) for site in ctx.sites.values()):
        return None
    ctx.metrics.rejected.labels("origin_not_allowed").inc()
    body = {
        "error": {
            "code": "origin_not_allowed",
            "message": "this page may not embed the widget"
            if len(origins) <= 1
            else "exactly one Origin header is required",
        }
    }
    return web.json_response(body, status=403, headers={"Cache-Control": "no-store"})


def _about(connection: Connection) -> dict[str, object]:
    return {"conversation_id": connection.conversation_id}


class Pushed:
    """This socket's place in the gateway's :class:`~services.pushes.Pushes`: under
    the conversation it serves (set by a start or a resume), so that a fired
    timer's messages reach it as message frames, in order."""

    def __init__(self, ws: web.WebSocketResponse, pushes: Pushes) -> None:
        self._ws = ws
        self._pushes = pushes
        self._conversation: str | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.deliver: Deliver = self._deliver

    def follow(self, conversation_id: str | None) -> None:
        if conversation_id == self._conversation:
            return
        if self._conversation is not None:
            self._pushes.unregister(self._conversation, self.deliver)
        self._conversation = conversation_id
        if conversation_id is not None:
            self._pushes.register(conversation_id, self.deliver)

    def _deliver(self, reply: Reply) -> None:
        frames = [message_frame(m, reply.ack) for m in reply.messages]
        task = asyncio.get_running_loop().create_task(self._send(frames))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, frames: list[str]) -> None:
        with contextlib.suppress(ConnectionResetError):
            for frame in frames:
                if self._ws.closed:
                    return
                await self._ws.send_str(frame)


async def _serve(
    ws: web.WebSocketResponse,
    connection: Connection,
    idle_timeout: float,
    sockets: Sockets,
    tracked: TrackedSocket,
    pushed: Pushed,
) -> None:
    """Serve frames until the socket closes, or until the visitor has been idle:
    no command frame (start, press, lead, answer, back, resume) for ``idle_timeout``
    seconds.
    Pings are not activity: neither the widget's `ping` frames (every 25 s) nor
    WebSocket pongs, which restart aiohttp's own receive timeout, so the
    deadline here is a hard one around the whole receive."""
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    while not ws.closed:
        remaining = idle_since + idle_timeout - loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                msg = await ws.receive()
        except TimeoutError:
            await ws.close(code=CLOSE_GOING_AWAY, message=IDLE_REASON)
            return
        if msg.type is WSMsgType.TEXT:
            if not sockets.begin_command(tracked):
                continue  # shutting down: the widget sends it again after resuming
            commands = connection.commands
            try:
                if await _answer(ws, connection, msg.data):
                    return
            finally:
                tracked.done()
            pushed.follow(connection.conversation_id)
            if connection.commands != commands:
                idle_since = loop.time()
        elif msg.type is WSMsgType.BINARY:
            await ws.send_str(BINARY_REFUSED)
        else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a frame over the transport limit)
            return


async def _answer(ws: web.WebSocketResponse, connection: Connection, text: str) -> bool:
    """Dispatch one text frame and send its reply frames; True when the socket is done."""
    outcome = await connection.on_text(text)
    try:
        for frame in outcome.frames:
            await ws.send_str(frame)
    except ConnectionResetError:
        log.debug("reply not written: the visitor left", extra=_about(connection))
        return True  # the visitor left while its command was in flight; it will resume
    if log.isEnabledFor(logging.DEBUG):  # one line per command: a debug run's trail
        log.debug("reply written", extra={**_about(connection), "frames": len(outcome.frames)})
    if outcome.close_code is not None:
        await ws.close(code=outcome.close_code, message=outcome.close_reason.encode())
        return True
    return False
