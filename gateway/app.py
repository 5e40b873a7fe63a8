"""The gateway's aiohttp application: routes and static files.

``create_gateway_app`` wires HTTP only; the composition roots of the embedded
and distributed modes build the context (bus, catalog, sites) and hand it in.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.connection import GatewayContext
from gateway.keys import CONTEXT, READY
from gateway.shutdown import SOCKETS, ShutdownSettings, Sockets, close_sockets
from gateway.ws import websocket_handler
from services.health import HealthChecks, Status, add_health_routes

STATIC_DIR = Path(__file__).parent / "static"


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
    sockets = app[SOCKETS]

    def readiness() -> Status:
        return Status(ready() and not sockets.draining, {"draining": sockets.draining})

    add_health_routes(app, HealthChecks(context.metrics.registry, readiness))
    app.router.add_get("/widget.js", widget)
    app.router.add_get("/", demo_page)
    return app
