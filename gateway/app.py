"""The gateway's aiohttp application: routes and static files.

``create_gateway_app`` wires HTTP only; the composition roots of the embedded
and distributed modes build the context (bus, catalog, sites) and hand it in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.connection import GatewayContext
from gateway.keys import CONTEXT, READY
from gateway.shutdown import SOCKETS, ShutdownSettings, Sockets, close_sockets
from gateway.ws import websocket_handler

STATIC_DIR = Path(__file__).parent / "static"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[READY]() and not request.app[SOCKETS].draining
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[CONTEXT].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def widget(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC_DIR / "widget.js",
        headers={
            "Content-Type": "text/javascript; charset=utf-8",
            "Cache-Control": "public, max-age=300",
        },
    )


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def create_gateway_app(
    context: GatewayContext,
    ready: Callable[[], bool],
    shutdown: ShutdownSettings | None = None,
) -> web.Application:
    """The gateway app; on shutdown its sockets close with 1012 (gateway.shutdown)."""
    app = web.Application(client_max_size=64 * 1024)
    app[CONTEXT] = context
    app[READY] = ready
    app[SOCKETS] = Sockets(shutdown or ShutdownSettings())
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/ws", websocket_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/widget.js", widget)
    app.router.add_get("/", demo_page)
    return app
