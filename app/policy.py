"""Composition root of the policy service (``leadflow run policy``).

It reads the ``events`` topic from the beginning into a
:class:`~policy.rewards.RewardLedger` (:mod:`policy.events_feed`; every
partition, manually assigned: the ledger is rebuilt from the log at every
start), runs the fitting schedule
(:mod:`policy.fitting`: fits in a worker process, conjugate updates between
them) once it has caught up, publishes snapshots to the compacted
``policy-snapshots`` topic, and follows that topic itself (what it serves is what
the processors serve). Guardrail changes are records of the
``policy-control`` topic (:mod:`policy.control_kafka`), folded once the
snapshots are loaded and followed afterwards, so a restart keeps them. HTTP:
``/healthz``, ``/readyz`` (ready once caught up with both topics), ``/metrics``
and the policy API (:mod:`policy.api`). Nothing connects before the app starts (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from policy.api import PolicyApiContext, create_policy_api
from policy.control import ControlState
from policy.control_feed import ControlFeed, guardrails_applier, stop_task
from policy.control_kafka import ControlPublisher, control_follower
from policy.events_feed import EventsFeed
from policy.fit_worker import ProcessFitter
from policy.fitting import FitScheduler, conjugate_update
from policy.flow_snapshots import flow_checker
from policy.holdout_ledger import HoldoutLedger
from policy.metrics import PolicyMetrics
from policy.settings import PolicySettings
from policy.snapshot import PolicySnapshot
from policy.snapshots_kafka import SnapshotFollower, SnapshotPublisher
from policy.thompson import ThompsonPolicy
from services.catalog import FlowCatalog
from services.distributed.kafka_follower import MIB, KafkaLogFollower
from services.distributed.kafka_probe import KafkaProbe
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.health import HealthChecks, Status, add_health_routes

log = logging.getLogger("leadflow.policy.service")


FIT_DIAGNOSTICS = ("rhat_max", "ess_bulk_min", "divergences")


def fit_diagnostics(diagnostics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric diagnostics of a fit that are exported (absent or not a number: left out)."""
    out: dict[str, float] = {}
    for name in FIT_DIAGNOSTICS:
        value = diagnostics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def events_follower(kafka: KafkaSettings) -> KafkaLogFollower:
    """Every partition of the ``events`` topic, manually assigned (no group: the
    ledger is rebuilt from the log at every start)."""
    return KafkaLogFollower(
        kafka,
        kafka.events_topic,
        partitions=range(kafka.partitions),
        max_partition_fetch_bytes=4 * MIB,
        fetch_max_wait_ms=200,
    )


@dataclass
class PolicyRuntime:
    settings: PolicySettings
    kafka: KafkaSettings
    catalog: FlowCatalog
    metrics: PolicyMetrics = field(default_factory=PolicyMetrics)
    policy: ThompsonPolicy = field(default_factory=ThompsonPolicy)
    ledger: HoldoutLedger = field(init=False)
    feed: EventsFeed = field(init=False)
    publisher: SnapshotPublisher = field(init=False)
    follower: SnapshotFollower = field(init=False)
    fitter: ProcessFitter = field(init=False)
    scheduler: FitScheduler = field(init=False)
    control_publisher: ControlPublisher = field(init=False)
    control: ControlFeed = field(init=False)
    kafka_up: bool = False  # the last metadata probe answered

    def __post_init__(self) -> None:
        self.ledger = HoldoutLedger(
            self.settings.horizon_seconds,
            self.settings.idle_seconds,
            holdout_of=lambda flow_id: self.scheduler.guardrails(flow_id).holdout,
        )
        self.feed = EventsFeed(
            events_follower(self.kafka),
            self.ledger,
            self.metrics,
            retry_on=(KafkaError, OSError),
        )
        self.publisher = SnapshotPublisher(self.kafka)
        self.follower = SnapshotFollower(self.kafka, self.policy, check=flow_checker(self.catalog))
        self.fitter = ProcessFitter(self.settings.fit)
        self.scheduler = FitScheduler(
            self.ledger,
            self.settings.schedule,
            self.settings.fit,
            self.settings.guardrails,
            self.fitter,
            self._publish,
            conjugate_update(),
            catalog=self.catalog,
            before_tick=self._before_tick,
        )
        self.control_publisher = ControlPublisher(self.kafka)
        self.control = ControlFeed(
            control_follower(self.kafka),
            ControlState(self.settings.guardrails),
            guardrails_applier(
                self.scheduler.set_guardrails, self.policy.snapshots.get, self._publish
            ),
            writer=self.control_publisher,
            retry_on=(KafkaError, OSError),
        )

    async def _publish(self, snapshot: PolicySnapshot) -> None:
        await self.publisher.publish(snapshot)
        self.metrics.published.labels(snapshot.flow_id).inc()

    def _before_tick(self) -> None:
        self.feed.expire()
        for key, counts in self.ledger.flows.items():
            self.metrics.outcomes.labels(f"{key.flow_id}@{key.flow_version}").set(counts.trials())
        for key, late in self.ledger.late_leads.items():
            self.metrics.late_leads.labels(f"{key.flow_id}@{key.flow_version}").set(late)
        for flow_id, state in self.scheduler.flows.items():
            self.metrics.fits.labels(flow_id, "published").set(state.fits)
            self.metrics.fits.labels(flow_id, "failed").set(state.failures)
            if state.last_fit_seconds is not None:
                self.metrics.fit_seconds.labels(flow_id).set(state.last_fit_seconds)
            for name, value in fit_diagnostics(state.last_diagnostics).items():
                self.metrics.fit_diagnostics.labels(flow_id, name).set(value)
        self.metrics.version.clear()
        for flow_id, state in self.scheduler.flows.items():
            if state.published is not None:
                self.metrics.version.labels(flow_id, state.published.version).set(1)

    def ready(self) -> bool:
        return self.feed.caught_up.is_set() and self.follower.loaded.is_set() and self.kafka_up

    async def probe(self, seconds: float = 1.0) -> None:
        """Kafka's answer to a metadata request, every ``seconds`` (readiness)."""
        probe = KafkaProbe(self.kafka)
        try:
            while True:
                self.kafka_up = await probe.answers()
                await asyncio.sleep(seconds)
        finally:
            await probe.close()

    async def schedule(self) -> None:
        await self.feed.caught_up.wait()
        await self.follower.loaded.wait()
        await self.control.load()  # after the snapshots: a change made while down is published
        following = asyncio.create_task(self.control.run(), name="policy-control")
        try:
            await self.scheduler.run()
        finally:
            await stop_task(following)


RUNTIME = web.AppKey("policy_runtime", PolicyRuntime)


def readiness(runtime: PolicyRuntime) -> Status:
    """Ready once the ledger caught up with the events log and the snapshots loaded."""
    if runtime.ready():
        return Status(True)
    detail = {
        "events_caught_up": runtime.feed.caught_up.is_set(),
        "snapshots_loaded": runtime.follower.loaded.is_set(),
        "kafka": runtime.kafka_up,
    }
    return Status(False, detail)


def init_app(
    settings: PolicySettings,
    kafka: KafkaSettings,
    catalog: FlowCatalog,
    admin_key_sha256: str | None = None,
) -> web.Application:
    runtime = PolicyRuntime(settings, kafka, catalog)
    app = create_policy_api(
        PolicyApiContext(
            policy=runtime.policy,
            ledger=runtime.ledger,
            scheduler=runtime.scheduler,
            catalog=catalog,
            admin_key_sha256=admin_key_sha256,
            control=runtime.control,
        ),
        public=("/healthz", "/readyz", "/metrics"),
    )
    app[RUNTIME] = runtime
    add_health_routes(app, HealthChecks(runtime.metrics.registry, lambda: readiness(runtime)))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await ensure_topics(kafka)
        await runtime.publisher.start()
        await runtime.control_publisher.start()
        runtime.fitter.warm()
        tasks = [
            asyncio.create_task(runtime.feed.run(), name="policy-events"),
            asyncio.create_task(runtime.follower.run(), name="policy-snapshots"),
            asyncio.create_task(runtime.schedule(), name="policy-schedule"),
            asyncio.create_task(runtime.probe(), name="kafka-probe"),
        ]
        yield
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.fitter.close()
        await runtime.control_publisher.stop()
        await runtime.publisher.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
