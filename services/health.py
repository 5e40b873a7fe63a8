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
  so two services in one test process do not mix their series).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def add_health_routes(app: web.Application, checks: HealthChecks) -> None:
    async def healthz(request: web.Request) -> web.Response:
        status = checks.live()
        if status.ok:
            return web.json_response({"status": "ok", **status.detail})
        return web.json_response({"status": "stalled", **status.detail}, status=503)

    async def readyz(request: web.Request) -> web.Response:
        status = checks.ready()
        body = {"ready": status.ok, "status": "ready" if status.ok else "not ready"}
        return web.json_response({**body, **status.detail}, status=200 if status.ok else 503)

    async def metrics(request: web.Request) -> web.Response:
        if checks.before_scrape is not None:
            checks.before_scrape()
        body = generate_latest(checks.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
