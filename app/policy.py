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
``/healthz``, ``/readyz`` (ready once caught up with both topics and the
guardrail changes are loaded; it names the instance's ``role``), ``/metrics``
and the policy API (:mod:`policy.api`).
Nothing connects before the app starts (``cleanup_ctx``).

Two or more instances may run (a standby): once caught up, each joins the
leader election (:mod:`policy.leader_kafka`). Only the leader fits and
publishes; a standby folds the events, learns and adopts the leader's
snapshots (:meth:`policy.fitting.FitScheduler.adopt`). On election an instance
starts its transactional publisher (which fences the previous leader's), reads
the snapshots topic to its end (so it knows the previous leader's last
publication and numbers its own after it), republishes guardrail changes the
previous leader left unpublished, and leads. Fenced or deposed, it stands by.
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

from policy.api import create_policy_api
from policy.api.context import PolicyApiContext
from policy.archive import is_compact
from policy.control import ControlState
from policy.control_feed import Apply, ControlFeed, guardrails_applier, stop_task
from policy.control_kafka import ControlPublisher, control_follower
from policy.events_feed import EventsFeed
from policy.fit_worker import ProcessFitter
from policy.fitting import FitScheduler, conjugate_update
from policy.flow_snapshots import flow_checker
from policy.holdout_ledger import HoldoutLedger
from policy.leader_kafka import KafkaLeaderElection
from policy.metrics import PolicyMetrics
from policy.settings import PolicySettings
from policy.snapshot import PolicySnapshot
from policy.snapshots_kafka import Fenced, SnapshotFollower, SnapshotPublisher
from policy.thompson import ThompsonPolicy
from services.catalog import FlowCatalog
from services.distributed.kafka_follower import MIB, KafkaLogFollower
from services.distributed.kafka_probe import KafkaProbe
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.health import HealthChecks, Status, add_health_routes
from services.registry.distributed import DistributedRegistry

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


class NotLeading(RuntimeError):
    """A publication asked of a standby (or of a leader that was just fenced)."""


def publisher_id(kafka: KafkaSettings) -> str:
    """The policy publishers' transactional id: one for all instances (fencing)."""
    return f"{kafka.prefix}policy-publisher"


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
    election: KafkaLeaderElection = field(init=False)
    kafka_up: bool = False  # the last metadata probe answered
    takeover_seconds: float = 30.0  # a new leader reads the snapshots topic to its end

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
        self.publisher = SnapshotPublisher(self.kafka, transactional_id=publisher_id(self.kafka))
        self.follower = SnapshotFollower(
            self.kafka,
            self.policy,
            check=flow_checker(self.catalog),
            on_installed=lambda snapshot: self.scheduler.adopt(snapshot),
        )
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
        self.scheduler.leading = False  # until elected
        self.control_publisher = ControlPublisher(self.kafka)
        self.control = ControlFeed(
            control_follower(self.kafka),
            ControlState(self.settings.guardrails),
            self._applier(),
            writer=self.control_publisher,
            retry_on=(KafkaError, OSError),
        )
        self.election = KafkaLeaderElection(self.kafka, self._elected, self._deposed)

    def _applier(self) -> Apply:
        return guardrails_applier(
            self.scheduler.set_guardrails,
            self.policy.snapshots.get,
            self._publish,
            leading=lambda: self.scheduler.leading,
        )

    @property
    def role(self) -> str:
        return self.scheduler.role

    async def _publish(self, snapshot: PolicySnapshot) -> None:
        if not self.scheduler.leading or not self.publisher.started:
            raise NotLeading(f"a standby does not publish ({snapshot.version})")
        try:
            await self.publisher.publish(snapshot)
        except Fenced:
            log.warning("policy publisher fenced: another instance leads now")
            await self.election.depose("fenced by another instance's publisher")
            raise
        self.metrics.published.labels(snapshot.flow_id).inc()
        archived = self.publisher.last_archived
        form = "compact" if is_compact(archived) else "full"
        self.metrics.archived_bytes.labels(form).inc(len(archived))

    async def _elected(self) -> None:
        """Fence the previous leader, learn its last publication, then lead."""
        await self.publisher.start()
        try:
            await self.follower.caught_up(self.takeover_seconds)
        except BaseException:
            await self.publisher.stop()
            raise
        self.scheduler.leading = True
        self.metrics.leader.set(1)
        self.metrics.elections.inc()
        log.info("policy service leads", extra={"role": self.role})
        apply = self._applier()
        for flow_id, rails in sorted(self.control.state.rails.items()):
            current = self.policy.snapshots.get(flow_id)
            if current is not None and current.guardrails != rails:
                await apply(flow_id, rails, None)  # left unpublished by the previous leader

    async def _deposed(self) -> None:
        self.scheduler.leading = False
        self.metrics.leader.set(0)
        with contextlib.suppress(KafkaError, OSError):
            await self.publisher.stop()
        log.info("policy service stands by", extra={"role": self.role})

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
        """Caught up with the events and the snapshots, and the guardrail changes
        loaded (before that, ``GET .../guardrails`` would show the configured ones
        and a change would wait). Not "every flow has a snapshot": a flow gets its
        first only after enough outcomes. A standby is ready too: it serves the API."""
        return (
            self.feed.caught_up.is_set()
            and self.follower.loaded.is_set()
            and self.control.loaded.is_set()
            and self.kafka_up
        )

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
        electing = asyncio.create_task(self.election.run(), name="policy-election")
        try:
            await self.scheduler.run()
        finally:
            await stop_task(electing)
            await stop_task(following)


RUNTIME = web.AppKey("policy_runtime", PolicyRuntime)


def readiness(runtime: PolicyRuntime) -> Status:
    """Ready once the ledger caught up with the events log, the snapshots and the
    guardrail changes loaded; either way it names the instance's role (leader or standby)."""
    if runtime.ready():
        return Status(True, {"role": runtime.role})
    detail = {
        "role": runtime.role,
        "events_caught_up": runtime.feed.caught_up.is_set(),
        "snapshots_loaded": runtime.follower.loaded.is_set(),
        "guardrails_loaded": runtime.control.loaded.is_set(),
        "kafka": runtime.kafka_up,
    }
    return Status(False, detail)


def init_app(
    settings: PolicySettings,
    kafka: KafkaSettings,
    catalog: FlowCatalog,
    admin_key_sha256: str | None = None,
    registry: DistributedRegistry | None = None,
) -> web.Application:
    """With a flow registry (``catalog`` is then its catalog), the registry is
    loaded before anything else starts and followed until the cleanup."""
    runtime = PolicyRuntime(settings, kafka, catalog)
    if registry is not None:
        registry.bind_metrics(runtime.metrics.registry)
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
        if registry is not None:  # the ledger and the fits need the flows' versions
            await registry.load_until_up()
            registry.start_following()
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
        if registry is not None:
            await registry.stop()

    app.cleanup_ctx.append(lifecycle)
    return app
