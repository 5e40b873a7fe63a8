"""The connection cap of one gateway: shed load before the process runs out of files.

Each visitor socket holds a file descriptor. Past the open-files limit the process
cannot accept anything, not even its own health probes (``Too many open files``), so
the gateway stops short of it: at ``max_connections`` open sockets a new WebSocket
upgrade gets 503 with a jittered ``Retry-After`` *before* the upgrade (the response
closes its connection, so a refused client holds no descriptor), and ``/readyz``
turns unready so that a load balancer sends new visitors to another gateway. It turns
ready again only once the count has fallen to the low-water mark (95% of the cap):
hysteresis, so that one socket closing and one opening do not flap the pool member.
``/healthz`` and ``/metrics`` keep answering: the default cap leaves headroom below
the open-files limit for them, the event log, Kafka and the delivery clients.

The default cap (``LEADFLOW_MAX_CONNECTIONS`` unset) is derived from the soft
open-files limit the process has once it serves (raised to the hard one at start,
:mod:`services.limits`): the limit less 128 and less a tenth
(:func:`default_max_connections`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import resource
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.config import GatewaySettings
from gateway.loop_lag import LoopLag
from gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)
RESERVED_FILES = 128  # listeners, event log, Kafka/Redis clients, probes in flight
RESERVED_FRACTION = 0.10
LOW_WATER_FRACTION = 0.95  # ready again at or below this share of the cap


def default_max_connections(open_files: int) -> int:
    """The cap for a soft open-files limit: the limit less 128 and a tenth, at least 1
    (1,024 files: 794 sockets; 1,048,576: 943,591)."""
    return max(1, open_files - RESERVED_FILES - int(open_files * RESERVED_FRACTION))


def soft_open_files() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def low_water(cap: int) -> int:
    """The count at which a gateway at its cap turns ready again (below the cap)."""
    return min(cap - 1, int(cap * LOW_WATER_FRACTION))


@dataclass(eq=False)
class Admission:
    """Counts the gateway's sockets (upgrades in progress included) against the cap.

    ``admit()`` takes a slot synchronously, before any ``await`` of the upgrade, so
    concurrent upgrades never overshoot; ``release()`` gives it back. ``saturated``
    is the readiness view with hysteresis (set at the cap, cleared at the low-water
    mark). ``on_change(open, saturated)`` mirrors the count into metrics."""

    cap: int | None = None  # None: not resolved yet (resolve() at start-up)
    retry_after_seconds: int = 2
    # refuse upgrades while the loop's worst lateness of the last second is above
    # this (gateway.loop_lag); None: never
    shed_lag_seconds: float | None = None
    lag: LoopLag = field(default_factory=LoopLag, repr=False)
    open: int = 0
    saturated: bool = False
    on_change: Callable[[int, bool], None] = field(default=lambda n, s: None, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

    def resolve(self, open_files: int | None = None) -> int:
        """Fix the cap (the configured one, or the default for the current soft
        open-files limit) and log the capacity; once, when the gateway starts."""
        files = soft_open_files() if open_files is None else open_files
        configured = self.cap is not None
        if self.cap is None:
            self.cap = default_max_connections(files)
        log.info(
            "accepting at most %d WebSockets (%s; open files %d)",
            self.cap,
            "LEADFLOW_MAX_CONNECTIONS" if configured else "derived from the open-files limit",
            files,
            extra={"max_connections": self.cap, "open_files": files},
        )
        self.on_change(self.open, self.saturated)
        return self.cap

    @property
    def limit(self) -> int:
        return self.resolve() if self.cap is None else self.cap

    def overloaded(self, now: float) -> bool:
        """Whether the event loop has been too late, lately, to take a new socket."""
        return self.shed_lag_seconds is not None and self.lag.worst(now) > self.shed_lag_seconds

    def admit(self) -> bool:
        """Take a slot for a new socket; False at the cap (the caller refuses it)."""
        if self.open >= self.limit:
            self.saturated = True
            self.on_change(self.open, True)
            return False
        self.open += 1
        if self.open >= self.limit:
            self.saturated = True
        self.on_change(self.open, self.saturated)
        return True

    def release(self) -> None:
        self.open -= 1
        if self.saturated and self.open <= low_water(self.limit):
            self.saturated = False
        self.on_change(self.open, self.saturated)

    def retry_after(self) -> int:
        """``Retry-After`` seconds: the base plus up to as much again, so refused
        visitors do not all come back in the same second."""
        base = self.retry_after_seconds
        return base + int(self.rand() * (base + 1))


ADMISSION = web.AppKey("admission", Admission)


def install_admission(
    app: web.Application, settings: GatewaySettings, metrics: GatewayMetrics
) -> Admission:
    """The app's :class:`Admission`, its cap resolved when the app starts (after the
    CLI has raised the open-files limit) and mirrored into ``metrics``."""

    def mirror(open_sockets: int, saturated: bool) -> None:
        metrics.at_capacity.set(1 if saturated else 0)

    admission = Admission(
        settings.max_connections,
        settings.busy_retry_seconds,
        shed_lag_seconds=settings.shed_lag_seconds,
        on_change=mirror,
    )
    app[ADMISSION] = admission

    async def resolve(app: web.Application) -> None:
        metrics.max_connections.set(admission.resolve())

    async def measure_lag(app: web.Application) -> AsyncIterator[None]:
        ticker = asyncio.create_task(admission.lag.run(), name="loop-lag")
        yield
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker

    app.on_startup.append(resolve)
    metrics.loop_lag.set_function(lambda: admission.lag.worst(time.monotonic()))
    if settings.shed_lag_seconds is not None:
        app.cleanup_ctx.append(measure_lag)
    return admission


def refuse_at_capacity(admission: Admission, metrics: GatewayMetrics) -> web.Response | None:
    """None when a slot was taken (release it when the socket ends); else the 503, its
    connection closed after the answer (a refused client keeps no descriptor). An
    overloaded loop refuses too, before taking a slot."""
    if admission.overloaded(asyncio.get_running_loop().time()):
        return _busy(admission, metrics, "overloaded", "this server is busy; retry soon")
    if admission.admit():
        return None
    return _busy(admission, metrics, "at_capacity", "too many visitors here; retry soon")


def _busy(admission: Admission, metrics: GatewayMetrics, code: str, message: str) -> web.Response:
    metrics.upgrades_refused.labels(code).inc()
    response = web.json_response(
        {"error": {"code": code, "message": message}},
        status=503,
        headers={"Retry-After": str(admission.retry_after()), "Cache-Control": "no-store"},
    )
    response.force_close()
    return response
