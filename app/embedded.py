"""Composition root of the embedded mode: one process, no Kafka, no Redis.

Builds the SQLite adapters, the conversation service behind an in-process
bus, the projector and the gateway app; nothing connects until the app starts
(``cleanup_ctx``), and everything is closed in reverse order on shutdown.

Edges are chosen by a :class:`~policy.thompson.ThompsonPolicy` that learns in
process: a :class:`~policy.rewards.RewardLedger` folds the log's history (in the
background) and then the service's new events (its ``on_events`` listener); the
fitting schedule (:mod:`policy.fitting`) fits in a worker process and installs
each snapshot straight into the policy, after archiving it by version in the
event log's ``policy_snapshots`` table (replays need every version a decision
names). Guardrail changes (the policy API's, ``leadflow policy promote``'s) are
records of events.db's ``policy_control`` table, folded at start and followed
while serving (:mod:`policy.control_feed`), so a restart keeps them. No Kafka.
``LEADFLOW_POLICY=uniform``
turns all of it off (docs/policy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from app.embedded_delivery import EmbeddedDelivery
from app.embedded_registry import EmbeddedRegistry
from app.embedded_settings import EmbeddedSettings
from app.embedded_timers import EmbeddedTimers
from gateway.app import create_gateway_app
from gateway.connection import GatewayContext
from gateway.metrics import GatewayMetrics
from gateway.tokens import ResumeTokens
from policy.api import create_policy_api
from policy.api.context import PolicyApiContext
from policy.archive import archive_body
from policy.control import ControlState
from policy.control_feed import ControlFeed, guardrails_applier, stop_task
from policy.fit_worker import ProcessFitter
from policy.fitting import FitScheduler, conjugate_update
from policy.holdout_ledger import HoldoutLedger
from policy.log_feed import LogFeed
from policy.settings import PolicySettings
from policy.snapshot import PolicySnapshot
from policy.thompson import CompiledSnapshot, ThompsonPolicy, compile_snapshot
from policy.uniform import UniformPolicy
from projector.admin_api import add_flow_admin_routes
from projector.api import create_read_api
from projector.deliveries_api import add_delivery_routes
from projector.sqlite_projection import project_in_transaction
from projector.sqlite_rebuild import rebuild_sqlite
from projector.sqlite_schema import SCHEMA as READ_MODEL_SCHEMA
from projector.sqlite_store import SqliteReadModel
from projector.studio import add_studio_routes
from services.beacons import CLIENT_HEADER_ENV
from services.catalog import FlowCatalog
from services.conversation.service import ConversationService, InProcessCommandBus
from services.delivery.metrics import DeliveryMetrics
from services.embedded.beacon_counts import BEACONS_DB, SqliteBeaconCounts
from services.embedded.sqlite_eventlog import SqliteEventLog, registry_flow_ids
from services.embedded.sqlite_follower import SqliteLogFollower
from services.embedded.sqlite_keystore import SqliteKeyStore
from services.log_follower import LogFollower
from services.policy_port import EdgePolicy
from services.pushes import Pushes
from services.registry.seed import read_flow_documents
from services.sites import load_checked_sites

EVENTS_DB = "events.db"
KEYS_DB = "keys.db"

log = logging.getLogger(__name__)


class SnapshotArchive(Protocol):
    async def archive_snapshot(
        self, flow_id: str, flow_version: int, version: str, created_at: float, body: bytes
    ) -> None: ...

    async def append_control(self, flow_id: str, at: float, body: bytes) -> int: ...


class EmbeddedLearning:
    """The embedded mode's edge selection: ledger, schedule, worker process, policy."""

    def __init__(
        self,
        settings: PolicySettings,
        catalog: FlowCatalog,
        archive: SnapshotArchive,
        control: LogFollower | None = None,
    ) -> None:
        """``control``: a follower of events.db's ``policy_control`` table (None: guardrail
        changes are applied in memory only)."""
        self.settings = settings
        self.archive = archive
        self.policy = ThompsonPolicy()
        self.ledger = HoldoutLedger(
            settings.horizon_seconds,
            settings.idle_seconds,
            holdout_of=lambda flow_id: self.scheduler.guardrails(flow_id).holdout,
        )
        self.feed = LogFeed(self.ledger)
        self.fitter = ProcessFitter(settings.fit)
        self.scheduler = FitScheduler(
            self.ledger,
            settings.schedule,
            settings.fit,
            settings.guardrails,
            self.fitter,
            self._install,
            conjugate_update(),
            catalog=catalog,
            before_tick=self.ledger.expire,  # by the log's time (its watermark)
        )
        self._task: asyncio.Task[None] | None = None
        self._control_task: asyncio.Task[None] | None = None
        self.control = (
            None
            if control is None
            else ControlFeed(
                control,
                ControlState(settings.guardrails),
                guardrails_applier(
                    self.scheduler.set_guardrails, self.policy.snapshots.get, self._install
                ),
                writer=archive,
            )
        )

    async def _install(self, snapshot: PolicySnapshot) -> None:
        """Archive first: no decision is ever made with a snapshot a replay cannot find
        (an update in its compact form, :mod:`policy.archive`). Its encoding and
        compiled form are built in a worker thread: ~7 ms and ~5 ms of a visitor's
        event loop per publication otherwise."""
        body, compiled = await asyncio.to_thread(_encoded_and_compiled, snapshot)
        await self.archive.archive_snapshot(
            snapshot.flow_id,
            snapshot.flow_version,
            snapshot.version,
            snapshot.created_at,
            body,
        )
        if self.policy.install(snapshot, compiled):
            log.info(
                "policy snapshot installed",
                extra={"flow_id": snapshot.flow_id, "policy_version": snapshot.version},
            )

    async def start(self, events: SqliteEventLog) -> None:
        """Call it before serving: the history the ledger is loaded from ends
        where the log stands now (later events reach it through the service's
        listener)."""
        await self.feed.begin(SqliteLogFollower(events.path))
        if self.control is not None:
            await self.control.load()  # the guardrails in force before any snapshot is made
            self._control_task = asyncio.create_task(self.control.run(), name="policy-control")

        async def learn() -> None:
            await self.feed.load()
            await self.scheduler.run()

        self._task = asyncio.create_task(learn(), name="policy-learning")

    async def stop(self) -> None:
        await stop_task(self._control_task)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.feed.close()
        self.fitter.close()


@dataclass
class EmbeddedRuntime:
    events: SqliteEventLog
    keys: SqliteKeyStore
    readmodel: SqliteReadModel
    service: ConversationService
    learning: EmbeddedLearning | None = None
    ready: bool = False


def build_runtime(
    settings: EmbeddedSettings, catalog: FlowCatalog, policy: PolicySettings | None = None
) -> EmbeddedRuntime:
    """The event log projects the read models in its own transactions; the keys
    live in a file of their own so that copies of the log never carry them."""
    sync = settings.sqlite_synchronous
    events = SqliteEventLog(
        settings.data_dir / EVENTS_DB,
        sync,
        projection=project_in_transaction,
        projection_schema=READ_MODEL_SCHEMA,
    )
    keys = SqliteKeyStore(settings.data_dir / KEYS_DB, sync)
    readmodel = SqliteReadModel(settings.data_dir / EVENTS_DB, sync)
    policy = PolicySettings() if policy is None else policy
    learning = (
        EmbeddedLearning(
            policy,
            catalog,
            events,
            SqliteLogFollower(events.path, table="policy_control"),
        )
        if policy.enabled
        else None
    )
    edges: EdgePolicy = learning.policy if learning is not None else UniformPolicy()
    service = ConversationService(
        events,
        keys,
        catalog,
        edges,
        on_events=learning.feed.on_events if learning is not None else None,
    )
    return EmbeddedRuntime(events, keys, readmodel, service, learning)


async def rebuild_if_needed(runtime: EmbeddedRuntime) -> None:
    """A log written by an earlier version has read models without namespaces:
    rebuild them from the log (before serving, so nothing appends meanwhile),
    keep their erasures and drop the old tables."""
    if not await runtime.readmodel.needs_rebuild():
        return
    log.info("rebuilding the read models from the event log (first start of this version)")
    last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last >= 5:
            last = time.monotonic()
            log.info("rebuilding the read models: %d of %d events", done, total)

    report = await rebuild_sqlite(runtime.events, runtime.readmodel, None, progress)
    carried = await runtime.readmodel.adopt_legacy()
    log.info(
        "read models rebuilt: %d events, %d conversations, %d leads in %.1f s%s",
        report.events,
        report.conversations,
        report.leads,
        report.seconds,
        "" if carried is None else f"; {carried} erasures kept, old tables dropped",
    )


def init_app(settings: EmbeddedSettings, policy: PolicySettings | None = None) -> web.Application:
    # The flow files seed the registry (events.db's flow_registry table); the catalog
    # is the registry's, filled when it is loaded at start-up and kept current by it.
    seeds = read_flow_documents(settings.flows_dir)
    registry = EmbeddedRegistry(settings.data_dir / EVENTS_DB, seeds)
    catalog = registry.catalog
    known = {str(doc["id"]) for doc in seeds} | set(
        registry_flow_ids(settings.data_dir / EVENTS_DB)
    )
    sites = load_checked_sites(settings.sites_file, sorted(known))
    policy = PolicySettings.from_env() if policy is None else policy
    runtime = build_runtime(settings, catalog, policy)
    context = GatewayContext(
        settings=settings.gateway,
        sites=sites,
        catalog=catalog,
        bus=InProcessCommandBus(runtime.service),
        tokens=ResumeTokens(
            settings.gateway.resume_secret,
            settings.gateway.resume_ttl_seconds,
            settings.gateway.previous_resume_secrets,
        ),
        metrics=GatewayMetrics(),
    )
    beacons = SqliteBeaconCounts(settings.data_dir / BEACONS_DB)
    pushes = Pushes()
    timers = EmbeddedTimers(runtime.service, runtime.events, catalog, pushes)
    app = create_gateway_app(
        context,
        ready=lambda: runtime.ready,
        beacons=beacons,
        beacon_client_header=os.environ.get(CLIENT_HEADER_ENV) or None,
        pushes=pushes,
    )
    delivery = (
        EmbeddedDelivery(
            settings,
            sites,
            catalog,
            runtime.events.path,
            runtime.keys,
            runtime.events.read_conversation,
            DeliveryMetrics(context.metrics.registry),
        )
        if settings.delivery.enabled
        else None
    )
    read_api = create_read_api(
        runtime.readmodel, runtime.keys, sites, catalog, settings.admin_key_sha256, beacons
    )
    if delivery is not None:
        add_delivery_routes(read_api, delivery.store)
    registry.feed.writer = runtime.events
    registry.bind_metrics(context.metrics.registry)
    add_flow_admin_routes(read_api, registry.feed)
    app.add_subapp("/api/v1", read_api)
    add_studio_routes(app)  # the studio's static page at /studio/ (docs/admin-api.md)
    learning = runtime.learning
    if learning is not None and settings.admin_key_sha256 is not None:
        # the policy API on the public port: only with the admin key
        api = PolicyApiContext(
            policy=learning.policy,
            ledger=learning.ledger,
            scheduler=learning.scheduler,
            catalog=catalog,
            admin_key_sha256=settings.admin_key_sha256,
            control=learning.control,
        )
        app.add_subapp("/policy", create_policy_api(api))

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        sys.setswitchinterval(0.0005)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        runtime.events.start()
        await registry.start()
        runtime.keys.start()
        runtime.readmodel.start()
        beacons.start()
        await rebuild_if_needed(runtime)
        if runtime.learning is not None:
            await runtime.learning.start(runtime.events)  # nothing is appended before serving
        if delivery is not None:
            await delivery.start()
        await timers.start()
        runtime.ready = True
        yield
        runtime.ready = False
        await timers.stop()
        if delivery is not None:
            await delivery.stop()
        if runtime.learning is not None:
            await runtime.learning.stop()
        await registry.stop()
        beacons.close()
        runtime.readmodel.close()
        runtime.keys.close()
        runtime.events.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def _encoded_and_compiled(snapshot: PolicySnapshot) -> tuple[bytes, CompiledSnapshot]:
    return archive_body(snapshot), compile_snapshot(snapshot)
