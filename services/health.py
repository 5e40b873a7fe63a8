"""``/healthz``, ``/readyz`` and ``/metrics``: one helper for every service.

The three endpoints mean the same everywhere, so that one set of probes,
one PodMonitor and one runbook fit every Deployment:

* ``/healthz`` (liveness): 200 ``{"status": "ok"}`` while the process can make
  progress; 503 ``{"status": "stalled", ...}`` once it knows it cannot (the
  processor's stall watch), for the supervisor to restart it.
* ``/readyz`` (readiness): 200 when every dependency the service needs answers
  and it is serving, else 503; the body says which part is not ready:
  ``{"ready": false, "status": "not ready", "failing": ["kafka"], ...}``.
* ``/metrics``: the service's own Prometheus registry (never the global one,
  so two services in one test process do not mix their series). A service whose
  port is public (the gateway) serves it on a port of its own instead
  (:func:`serve_metrics_on`), never on the public one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Detail = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Status:
    """An answer of a probe: ``ok`` and what to say about it."""

    ok: bool
    detail: Detail = field(default_factory=dict)


def alive() -> Status:
    return Status(True)


@dataclass(frozen=True, slots=True)
class HealthChecks:
    """What a service answers its probes with. ``before_scrape`` refreshes
    gauges that mirror state held elsewhere (lag, readiness) just before
    ``/metrics`` renders them."""

    registry: CollectorRegistry
    ready: Callable[[], Status]
    live: Callable[[], Status] = alive
    before_scrape: Callable[[], None] | None = None


def _metrics_handler(checks: HealthChecks) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def metrics(request: web.Request) -> web.Response:
        if checks.before_scrape is not None:
            checks.before_scrape()
        body = generate_latest(checks.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


METRICS_APP = web.AppKey("metrics_app", web.Application)


def serve_metrics_on(
    app: web.Application, checks: HealthChecks, host: str, port: int
) -> web.Application:
    """``/metrics`` on ``host:port``, a listener of its own that starts and stops
    with ``app`` (its ``cleanup_ctx``): a port no Ingress routes to, for Prometheus.
    Returns that listener's app (also ``app[METRICS_APP]``)."""
    metrics_app = web.Application()
    metrics_app.router.add_get("/metrics", _metrics_handler(checks))
    app[METRICS_APP] = metrics_app

    async def listener(app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(metrics_app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            yield
        finally:
            await runner.cleanup()

    app.cleanup_ctx.append(listener)
    return metrics_app


def add_health_routes(app: web.Application, checks: HealthChecks, *, metrics: bool = True) -> None:
    """``/healthz`` and ``/readyz``, and ``/metrics`` unless ``metrics`` is false
    (served elsewhere: :func:`serve_metrics_on`)."""

    async def healthz(request: web.Request) -> web.Response:
        status = checks.live()
        if status.ok:
            return web.json_response({"status": "ok", **status.detail})
        return web.json_response({"status": "stalled", **status.detail}, status=503)

    async def readyz(request: web.Request) -> web.Response:
        status = checks.ready()
        body = {"ready": status.ok, "status": "ready" if status.ok else "not ready"}
        return web.json_response({**body, **status.detail}, status=200 if status.ok else 503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics:
        app.router.add_get("/metrics", _metrics_handler(checks))
