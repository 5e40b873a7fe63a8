"""Composition root of the embedded mode: one process, no Kafka, no Redis.

Builds the SQLite adapters, the conversation service behind an in-process
bus, the projector and the gateway app; nothing connects until the app starts
(``cleanup_ctx``), and everything is closed in reverse order on shutdown.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway.app import create_gateway_app
from gateway.connection import GatewayContext
from gateway.metrics import GatewayMetrics
from gateway.sites import load_checked_sites
from gateway.tokens import ResumeTokens
from policy.uniform import UniformPolicy
from projector.api import create_read_api
from projector.sqlite_rebuild import rebuild_sqlite
from projector.sqlite_store import SCHEMA as READ_MODEL_SCHEMA
from projector.sqlite_store import SqliteReadModel, project_in_transaction
from services.catalog import FlowCatalog
from services.conversation.service import ConversationService, InProcessCommandBus
from services.embedded.settings import EmbeddedSettings
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_keystore import SqliteKeyStore

EVENTS_DB = "events.db"
KEYS_DB = "keys.db"

log = logging.getLogger(__name__)


@dataclass
class EmbeddedRuntime:
    events: SqliteEventLog
    keys: SqliteKeyStore
    readmodel: SqliteReadModel
    service: ConversationService
    ready: bool = False


def build_runtime(settings: EmbeddedSettings, catalog: FlowCatalog) -> EmbeddedRuntime:
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
    service = ConversationService(events, keys, catalog, UniformPolicy())
    return EmbeddedRuntime(events, keys, readmodel, service)


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


def init_app(settings: EmbeddedSettings) -> web.Application:
    catalog = FlowCatalog.from_directory(settings.flows_dir)
    sites = load_checked_sites(settings.sites_file, catalog.ids())
    runtime = build_runtime(settings, catalog)
    context = GatewayContext(
        settings=settings.gateway,
        sites=sites,
        catalog=catalog,
        bus=InProcessCommandBus(runtime.service),
        tokens=ResumeTokens(settings.gateway.resume_secret, settings.gateway.resume_ttl_seconds),
        metrics=GatewayMetrics(),
    )
    app = create_gateway_app(context, ready=lambda: runtime.ready)
    app.add_subapp(
        "/api/v1",
        create_read_api(runtime.readmodel, runtime.keys, sites, catalog, settings.admin_key_sha256),
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        sys.setswitchinterval(0.0005)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        runtime.events.start()
        runtime.keys.start()
        runtime.readmodel.start()
        await rebuild_if_needed(runtime)
        runtime.ready = True
        yield
        runtime.ready = False
        runtime.readmodel.close()
        runtime.keys.close()
        runtime.events.close()

    app.cleanup_ctx.append(lifecycle)
    return app
