"""The ``/ws`` endpoint: moves text frames between the socket and a Connection."""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from gateway.connection import Connection, GatewayContext
from gateway.keys import CONTEXT
from schemas.frames import error_frame
from schemas.replies import ReplyError

CLOSE_GOING_AWAY = 1001
BINARY_REFUSED = error_frame(
    ReplyError(code="malformed_frame", message="binary frames are not supported")
)


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    ctx: GatewayContext = request.app[CONTEXT]
    settings = ctx.settings
    ws = web.WebSocketResponse(
        heartbeat=settings.heartbeat_seconds,
        max_msg_size=settings.max_transport_bytes,
        compress=False,
    )
    await ws.prepare(request)
    connection = Connection(ctx, request.headers.get("Origin"))
    ctx.metrics.connections.inc()
    try:
        await _serve(ws, connection, settings.idle_timeout_seconds)
    finally:
        ctx.metrics.connections.dec()
    return ws


async def _serve(ws: web.WebSocketResponse, connection: Connection, idle_timeout: float) -> None:
    while not ws.closed:
        try:
            msg = await ws.receive(timeout=idle_timeout)
        except TimeoutError:
            await ws.close(code=CLOSE_GOING_AWAY, message=b"idle timeout")
            return
        except asyncio.CancelledError:
            raise
        if msg.type is WSMsgType.TEXT:
            outcome = await connection.on_text(msg.data)
            try:
                for frame in outcome.frames:
                    await ws.send_str(frame)
            except ConnectionResetError:
                return  # the visitor left while its command was in flight; it will resume
            if outcome.close_code is not None:
                await ws.close(code=outcome.close_code, message=outcome.close_reason.encode())
                return
        elif msg.type is WSMsgType.BINARY:
            await ws.send_str(BINARY_REFUSED)
        else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a frame over the transport limit)
            return
