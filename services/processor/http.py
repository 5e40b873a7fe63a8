"""The processor's small HTTP server: ``/healthz``, ``/readyz`` and ``/metrics``.

The composition root (app/processor.py) starts it first, before the processor
joins its group and recovers its partitions, so that the kubelet can tell
"alive and recovering" from "dead".

* ``/healthz`` answers while the process and its event loop do: it touches nothing.
  It turns 503 only when the stall watch fires (services/processor/stall.py), just
  before the process exits for its supervisor to restart it.
* ``/readyz`` is 503 until the processor serves (its partitions assigned and their
  states recovered), while it rebalances or recovers, while a partition is out of
  service (the body names it), and while Kafka or Redis did not answer the last
  dependency check. The checks run in the background every
  ``check_seconds`` (each bounded by ``timeout_seconds``), so a probe never waits on
  a broker.
* ``/metrics`` refreshes the mirrored gauges and renders the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from services.health import HealthChecks, Status, add_health_routes
from services.processor.metrics import ProcessorMetrics
from services.processor.stall import StallWatch, WorkerView

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[object]]
DEFAULT_PORT = 8092


def address_from_env(env: Mapping[str, str]) -> tuple[str, int]:
    """(host, port) of the server: LEADFLOW_PROCESSOR_HTTP_HOST (0.0.0.0) and
    LEADFLOW_PROCESSOR_HTTP_PORT (8092)."""
    host = env.get("LEADFLOW_PROCESSOR_HTTP_HOST", "0.0.0.0")
    port = int(env.get("LEADFLOW_PROCESSOR_HTTP_PORT", str(DEFAULT_PORT)))
    if not 0 <= port <= 65535:
        raise ValueError(f"LEADFLOW_PROCESSOR_HTTP_PORT={port} is not a port")
    return host, port


@dataclass
class Stall:
    """The stall watch, what it watches, and what to do when it fires."""

    watch: StallWatch
    view: Callable[[], WorkerView]
    on_stall: Callable[[float], None]  # gets the spell's length in seconds
    clock: Callable[[], float] = time.monotonic


@dataclass
class Readiness:
    """Is the worker serving (``worker_ready``) and did its dependencies answer?
    Each check also feeds the stall watch, if there is one."""

    worker_ready: Callable[[], bool]
    checks: Mapping[str, Check]
    check_seconds: float = 5.0
    timeout_seconds: float = 2.0
    failing: set[str] = field(default_factory=set)
    checked: bool = False
    stall: Stall | None = None
    stalled: bool = False

    def ready(self) -> bool:
        return self.checked and not self.failing and self.worker_ready()

    async def check_once(self) -> None:
        failing: set[str] = set()
        for name, check in self.checks.items():
            try:
                await asyncio.wait_for(check(), self.timeout_seconds)
            except Exception:  # any failure of a dependency means "not ready"
                failing.add(name)
        if failing != self.failing:
            log.warning("dependencies not answering: %s", ", ".join(sorted(failing)) or "none")
        self.failing = failing
        self.checked = True
        self._watch(not failing)

    def _watch(self, dependencies_answer: bool) -> None:
        if self.stall is None or self.stalled:
            return
        now = self.stall.clock()
        if self.stall.watch.observe(now, self.stall.view(), dependencies_answer):
            self.stalled = True
            self.stall.on_stall(self.stall.watch.stalled_for(now))

    async def run(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.check_seconds)


def create_http_app(
    metrics: ProcessorMetrics,
    readiness: Readiness,
    refresh: Callable[[], None],
    detail: Callable[[], Mapping[str, object]] = dict,
) -> web.Application:
    def ready() -> Status:
        ok = readiness.ready()
        metrics.ready.set(1 if ok else 0)
        return Status(ok, {"failing": sorted(readiness.failing), **detail()})

    def live() -> Status:
        return Status(not readiness.stalled)

    def before_scrape() -> None:
        refresh()
        metrics.ready.set(1 if readiness.ready() else 0)

    app = web.Application()
    add_health_routes(app, HealthChecks(metrics.registry, ready, live, before_scrape))
    return app


@dataclass
class ProcessorHttp:
    """The server and its dependency checker; ``start`` and ``stop`` once each."""

    app: web.Application
    readiness: Readiness
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    _runner: web.AppRunner | None = None
    _checker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self._checker = asyncio.create_task(self.readiness.run(), name="processor-readiness")
        log.info("processor HTTP on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
        if self._runner is not None:
            await self._runner.cleanup()
