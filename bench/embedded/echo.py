"""The baseline server: a bare aiohttp WebSocket endpoint that echoes each text frame.

Run as ``python -m bench.embedded.echo PORT`` (the suite starts it as a subprocess,
so it does not share a core's event loop with the load generator).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import aiohttp
from aiohttp import web


async def _echo_ws(request: web.Request) -> web.WebSocketResponse:
    """Echo each text frame back, nothing else: the cost of the transport alone."""
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=65536, compress=False)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is aiohttp.WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def _readyz(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/ws", _echo_ws)
    app.router.add_get("/readyz", _readyz)
    web.run_app(app, host="127.0.0.1", port=port, print=None, shutdown_timeout=2.0)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m bench.embedded.echo PORT", file=sys.stderr)
        return 2
    serve(int(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
