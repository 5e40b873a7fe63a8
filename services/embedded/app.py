"""Composition root of the embedded mode: one process, no Kafka, no Redis.

Builds the SQLite adapters, the conversation service behind an in-process
bus, the projector and the gateway app; nothing connects until the app starts
(``cleanup_ctx``), and everything is closed in reverse order on shutdown.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway.app import create_gateway_app
from gateway.connection import GatewayContext
from gateway.metrics import GatewayMetrics
from gateway.sites import load_checked_sites
from gateway.tokens import ResumeTokens
from policy.uniform import UniformPolicy
from projector.sqlite_store import SCHEMA as READ_MODEL_SCHEMA
from projector.sqlite_store import project_events
from services.catalog import FlowCatalog
from services.conversation.service import ConversationService, InProcessCommandBus
from services.embedded.settings import EmbeddedSettings
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_keystore import SqliteKeyStore

EVENTS_DB = "events.db"
KEYS_DB = "keys.db"


@dataclass
class EmbeddedRuntime:
    events: SqliteEventLog
    keys: SqliteKeyStore
    service: ConversationService
    ready: bool = False


def build_runtime(settings: EmbeddedSettings, catalog: FlowCatalog) -> EmbeddedRuntime:
    """The event log projects the read models in its own transactions; the keys
    live in a file of their own so that copies of the log never carry them."""
    sync = settings.sqlite_synchronous
    events = SqliteEventLog(
        settings.data_dir / EVENTS_DB,
        sync,
        projection=project_events,
        projection_schema=READ_MODEL_SCHEMA,
    )
    keys = SqliteKeyStore(settings.data_dir / KEYS_DB, sync)
    service = ConversationService(events, keys, catalog, UniformPolicy())
    return EmbeddedRuntime(events, keys, service)


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

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        sys.setswitchinterval(0.0005)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        runtime.events.start()
        runtime.keys.start()
        runtime.ready = True
        yield
        runtime.ready = False
        runtime.keys.close()
        runtime.events.close()

    app.cleanup_ctx.append(lifecycle)
    return app
