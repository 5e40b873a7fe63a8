"""The gateway's aiohttp application: routes and static files.

``create_gateway_app`` wires HTTP only; the composition roots of the embedded
and distributed modes build the context (bus, catalog, sites) and hand it in.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path

from aiohttp import web

from gateway.admission import install_admission
from gateway.connection import GatewayContext
from gateway.keys import CONTEXT, PUSHES, READY
from gateway.opening_http import add_opening_routes
from gateway.shutdown import SOCKETS, ShutdownSettings, Sockets, close_sockets
from gateway.widget_http import add_widget_routes
from gateway.ws import websocket_handler
from services.beacon_http import BeaconEndpoint, add_beacon_route
from services.beacons import BeaconCounts, BeaconLimiter
from services.health import HealthChecks, Status, add_health_routes, serve_metrics_on
from services.pushes import Pushes

STATIC_DIR = Path(__file__).parent / "static"


def _sha256_sources(texts: list[str]) -> str:
    return " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"
        for text in texts
    )


@cache
def demo_page_headers() -> dict[str, str]:
    """The demo page's security headers. Its CSP allows this origin's scripts and
    styles plus, by hash, exactly the page's inline script and style and the widget's
    shadow-root stylesheet; nothing may frame the page (frame-ancestors)."""
    page = (STATIC_DIR / "index.html").read_text("utf-8")
    widget_js = (STATIC_DIR / "widget.js").read_text("utf-8")
    inline_scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style[^>]*>(.*?)</style>", page, re.S)
    styles += re.findall(r"const CSS = `(.*?)`;", widget_js, re.S)  # the shadow root's
    csp = "; ".join(
        (
            "default-src 'none'",
            f"script-src 'self' {_sha256_sources(inline_scripts)}",
            f"style-src 'self' {_sha256_sources(styles)}",
            "connect-src 'self'",
            "img-src 'self' data: https:",  # a flow's images (https only: the widget)
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "strict-origin-when-cross-origin",
    }


async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=demo_page_headers())


async def no_sniffing(request: web.Request, response: web.StreamResponse) -> None:
    """Every response is what its Content-Type says (the widget is a script, JSON is data)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


def create_gateway_app(
    context: GatewayContext,
    ready: Callable[[], bool],
    shutdown: ShutdownSettings | None = None,
    beacons: BeaconCounts | None = None,
    beacon_client_header: str | None = None,
    pushes: Pushes | None = None,
) -> web.Application:
    """The gateway app; on shutdown its sockets close with 1012 (gateway.shutdown).
    With ``beacons``, ``POST /beacon`` counts the widget's views and opens there."""
    app = web.Application(
        client_max_size=64 * 1024,
        # aiohttp's keep-alive timer runs from the connection's start: a client must
        # complete its request headers (slowloris) and an idle keep-alive connection
        # send its next request within this; an upgraded WebSocket is not affected
        handler_args={"keepalive_timeout": context.settings.handshake_timeout_seconds},
    )
    app.on_response_prepare.append(no_sniffing)
    app[CONTEXT] = context
    app[READY] = ready
    # open sockets by conversation, where a fired timer's messages reach the visitor
    app[PUSHES] = Pushes() if pushes is None else pushes
    app[SOCKETS] = Sockets(shutdown or ShutdownSettings())
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/ws", websocket_handler)
    sockets = app[SOCKETS]
    admission = install_admission(app, context.settings, context.metrics)

    def readiness() -> Status:
        """Unready while draining or at the connection cap (until 95% of it)."""
        detail = {
            "draining": sockets.draining,
            "at_capacity": admission.saturated,
            "connections": admission.open,
            "max_connections": admission.cap,
        }
        ok = ready() and not sockets.draining and not admission.saturated
        return Status(ok, detail)

    # /metrics never on the public port: on a port of its own (LEADFLOW_METRICS_PORT)
    checks = HealthChecks(context.metrics.registry, readiness)
    add_health_routes(app, checks, metrics=False)
    settings = context.settings
    if settings.metrics_port is not None:
        serve_metrics_on(app, checks, settings.metrics_host, settings.metrics_port)
    add_widget_routes(app)  # /widget.js and the hashed widget (gateway.widget_http)
    # GET /opening/...: a flow's first reply before the socket (gateway.opening_http)
    add_opening_routes(app, context.sites, context.catalog)
    if beacons is not None:  # POST /beacon (services.beacon_http), the WebSocket's rate
        limiter = BeaconLimiter(settings.rate_per_second, settings.rate_burst)
        endpoint = BeaconEndpoint(
            beacons, context.sites, context.catalog, limiter, beacon_client_header, context.clock
        )
        add_beacon_route(app, endpoint)
    if settings.demo_page:  # LEADFLOW_DEMO_PAGE; off: GET / is a 404
        app.router.add_get("/", demo_page)
    return app
