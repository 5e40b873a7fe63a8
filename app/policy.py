"""Composition root of the policy service (``leadflow run policy``).

It reads the ``events`` topic from the beginning into a
:class:`~policy.rewards.RewardLedger` (every partition, manually assigned: the
ledger is rebuilt from the log at every start), runs the fitting schedule
(:mod:`policy.fitting`: fits in a worker process, conjugate updates between
them) once it has caught up, publishes snapshots to the compacted
``policy-snapshots`` topic, and follows that topic itself (what it serves is what
the processors serve). HTTP: ``/healthz``, ``/readyz`` (ready once caught up
with both topics), ``/metrics`` and the policy API (:mod:`policy.api`).
Nothing connects before the app starts (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from policy.api import PolicyApiContext, create_policy_api
from policy.fit_worker import ProcessFitter
from policy.fitting import FitScheduler, conjugate_update
from policy.flow_snapshots import flow_checker
from policy.rewards import RewardLedger
from policy.settings import PolicySettings
from policy.snapshot import PolicySnapshot
from policy.snapshots_kafka import SnapshotFollower, SnapshotPublisher, follow_forever
from policy.thompson import ThompsonPolicy
from schemas.batches import decode_batch
from schemas.codec import MessageError
from services.catalog import FlowCatalog
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.health import HealthChecks, Status, add_health_routes

log = logging.getLogger("leadflow.policy.service")


class PolicyMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "leadflow_policy_events_total", "Events read from the log", registry=self.registry
        )
        self.skipped = Counter(
            "leadflow_policy_skipped_records_total",
            "Records of the events topic that could not be read",
            registry=self.registry,
        )
        self.lag = Gauge(
            "leadflow_policy_lag_records",
            "Records of the events topic not read yet",
            ["partition"],
            registry=self.registry,
        )
        self.open = Gauge(
            "leadflow_policy_open_conversations",
            "Conversations with decisions waiting for their outcome",
            registry=self.registry,
        )
        self.outcomes = Gauge(
            "leadflow_policy_outcomes",
            "Decision outcomes counted, per flow",
            ["flow"],
            registry=self.registry,
        )
        self.published = Counter(
            "leadflow_policy_snapshots_published_total",
            "Snapshots published, per flow",
            ["flow"],
            registry=self.registry,
        )
        self.fits = Gauge(
            "leadflow_policy_fits",
            "Fits per flow and outcome (published, failed) since the start",
            ["flow", "outcome"],
            registry=self.registry,
        )
        self.fit_seconds = Gauge(
            "leadflow_policy_last_fit_seconds",
            "How long the flow's last fit took",
            ["flow"],
            registry=self.registry,
        )
        self.fit_diagnostics = Gauge(
            "leadflow_policy_last_fit_diagnostic",
            "The flow's last fit: max r-hat (rhat_max), min bulk ESS (ess_bulk_min), "
            "divergent transitions (divergences)",
            ["flow", "diagnostic"],
            registry=self.registry,
        )
        self.version = Gauge(
            "leadflow_policy_version",
            "1 for the snapshot version last published per flow",
            ["flow", "version"],
            registry=self.registry,
        )


FIT_DIAGNOSTICS = ("rhat_max", "ess_bulk_min", "divergences")


def fit_diagnostics(diagnostics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric diagnostics of a fit that are exported (absent or not a number: left out)."""
    out: dict[str, float] = {}
    for name in FIT_DIAGNOSTICS:
        value = diagnostics.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


class EventsFeed:
    """The ``events`` topic into the ledger: all partitions from offset 0, no group.

    While catching up, conversations are expired against the oldest event time
    among the partitions still behind (a lead of a lagging partition is not
    mistaken for a failure); afterwards against the wall clock."""

    def __init__(
        self,
        settings: KafkaSettings,
        ledger: RewardLedger,
        metrics: PolicyMetrics,
        *,
        max_records: int = 5_000,
        poll_timeout_ms: int = 200,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._metrics = metrics
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._wall = wall
        self._topic = settings.events_topic
        self.caught_up = asyncio.Event()
        self.records = 0
        self._positions: dict[int, int] = {}  # next offset per partition
        self._times: dict[int, float] = {}  # newest event time per partition

    def expire(self) -> int:
        """Count as failures the conversations past the horizon (the schedule calls it)."""
        expired = self._ledger.expire(self._wall())
        self._metrics.open.set(self._ledger.open_conversations())
        return expired

    async def run(self) -> None:
        await follow_forever(self._follow, "events topic")

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=self._poll_timeout_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            partitions = [TopicPartition(self._topic, p) for p in range(self._settings.partitions)]
            consumer.assign(partitions)
            for tp in partitions:
                consumer.seek(tp, self._positions.get(tp.partition, 0))
            ends = await consumer.end_offsets(partitions)
            behind = {tp.partition: ends[tp] for tp in partitions}
            started = time.monotonic()
            while True:
                batches = await consumer.getmany(
                    timeout_ms=self._poll_timeout_ms, max_records=self._max_records
                )
                for tp, messages in batches.items():
                    self._apply(tp.partition, messages)
                if not self.caught_up.is_set():
                    behind = {
                        p: end for p, end in behind.items() if self._positions.get(p, 0) < end
                    }
                    self._expire_behind(behind)
                    if not behind:
                        self._caught_up(time.monotonic() - started)
                for tp in partitions:
                    high = consumer.highwater(tp)
                    if high is not None:
                        lag = max(0, high - self._positions.get(tp.partition, 0))
                        self._metrics.lag.labels(str(tp.partition)).set(lag)
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()

    def _apply(self, partition: int, messages: list[Any]) -> None:
        for message in messages:
            offset: int = message.offset
            value: bytes | None = message.value
            self._positions[partition] = offset + 1
            self.records += 1
            if value is None:
                continue
            try:
                batch = decode_batch(value)
            except MessageError as exc:
                self._metrics.skipped.inc()
                log.warning(
                    "unreadable events record skipped: %s",
                    exc,
                    extra={"partition": partition, "offset": offset},
                )
                continue
            self._ledger.observe(batch.events)
            self._metrics.events.inc(len(batch.events))
            if batch.events:
                newest = max(e.at for e in batch.events)
                self._times[partition] = max(self._times.get(partition, 0.0), newest)

    def _expire_behind(self, behind: dict[int, int]) -> None:
        if behind:
            self._ledger.expire(min(self._times.get(p, 0.0) for p in behind))
        self._metrics.open.set(self._ledger.open_conversations())

    def _caught_up(self, seconds: float) -> None:
        self.expire()
        self.caught_up.set()
        log.info(
            "policy ledger caught up with the events log",
            extra={
                "records": self.records,
                "seconds": round(seconds, 2),
                "open_conversations": self._ledger.open_conversations(),
                "outcomes": {
                    f"{k.flow_id}@{k.flow_version}": c.trials()
                    for k, c in self._ledger.flows.items()
                },
            },
        )


@dataclass
class PolicyRuntime:
    settings: PolicySettings
    kafka: KafkaSettings
    catalog: FlowCatalog
    metrics: PolicyMetrics = field(default_factory=PolicyMetrics)
    policy: ThompsonPolicy = field(default_factory=ThompsonPolicy)
    ledger: RewardLedger = field(init=False)
    feed: EventsFeed = field(init=False)
    publisher: SnapshotPublisher = field(init=False)
    follower: SnapshotFollower = field(init=False)
    fitter: ProcessFitter = field(init=False)
    scheduler: FitScheduler = field(init=False)

    def __post_init__(self) -> None:
        self.ledger = RewardLedger(self.settings.horizon_seconds)
        self.feed = EventsFeed(self.kafka, self.ledger, self.metrics)
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

    async def _publish(self, snapshot: PolicySnapshot) -> None:
        await self.publisher.publish(snapshot)
        self.metrics.published.labels(snapshot.flow_id).inc()

    def _before_tick(self) -> None:
        self.feed.expire()
        for key, counts in self.ledger.flows.items():
            self.metrics.outcomes.labels(f"{key.flow_id}@{key.flow_version}").set(counts.trials())
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
        return self.feed.caught_up.is_set() and self.follower.loaded.is_set()

    async def schedule(self) -> None:
        await self.feed.caught_up.wait()
        await self.follower.loaded.wait()
        await self.scheduler.run()


RUNTIME = web.AppKey("policy_runtime", PolicyRuntime)


def readiness(runtime: PolicyRuntime) -> Status:
    """Ready once the ledger caught up with the events log and the snapshots loaded."""
    if runtime.ready():
        return Status(True)
    detail = {
        "events_caught_up": runtime.feed.caught_up.is_set(),
        "snapshots_loaded": runtime.follower.loaded.is_set(),
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
        ),
        public=("/healthz", "/readyz", "/metrics"),
    )
    app[RUNTIME] = runtime
    add_health_routes(app, HealthChecks(runtime.metrics.registry, lambda: readiness(runtime)))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await ensure_topics(kafka)
        await runtime.publisher.start()
        runtime.fitter.warm()
        tasks = [
            asyncio.create_task(runtime.feed.run(), name="policy-events"),
            asyncio.create_task(runtime.follower.run(), name="policy-snapshots"),
            asyncio.create_task(runtime.schedule(), name="policy-schedule"),
        ]
        yield
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        runtime.fitter.close()
        await runtime.publisher.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
