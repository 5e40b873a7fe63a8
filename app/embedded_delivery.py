"""Lead delivery inside ``leadflow serve`` (the embedded mode, docs/delivery.md).

The worker follows events.db (a :class:`~services.embedded.sqlite_follower.SqliteLogFollower`)
into deliveries.db, a file of its own beside it, and sends from there. It reads a
lead's conversation from events.db when the lead arrives, so deliveries.db keeps
no conversation states.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

from app.delivery import DeliveryParts, build_delivery, resolve_destinations
from app.embedded_settings import EmbeddedSettings
from schemas.events import Event, decode_event
from services.catalog import FlowCatalog
from services.delivery.log_intake import DecodeRecord, ReadConversation
from services.delivery.metrics import DeliveryMetrics
from services.embedded.sqlite_deliveries import SqliteDeliveryStore
from services.embedded.sqlite_follower import SqliteLogFollower
from services.log_follower import LogRecord, decode_record
from services.ports import KeyStore
from services.sites import Site

DELIVERIES_DB = "deliveries.db"
LEAD_CAPTURED = "LeadCaptured"  # the type column of LeadCaptured's rows


class EmbeddedDelivery:
    """Lead delivery in ``leadflow serve``: the worker follows events.db into
    deliveries.db and sends from there (docs/delivery.md). The destinations are
    resolved when the app is built, so a mistake stops the start-up."""

    def __init__(
        self,
        settings: EmbeddedSettings,
        sites: Mapping[str, Site],
        catalog: FlowCatalog,
        events_db: Path,
        keys: KeyStore,
        history: ReadConversation,
        metrics: DeliveryMetrics | None = None,
    ) -> None:
        """``history``: events.db read by conversation (the event log's
        ``read_conversation``); ``metrics``: on the gateway's registry, so
        LEADFLOW_METRICS_PORT serves them."""
        self.settings = settings
        self.destinations = resolve_destinations(sites, settings.environ, settings.delivery)
        self.catalog = catalog
        self.events_db = events_db
        self.keys = keys
        self.history = history
        self.metrics = DeliveryMetrics() if metrics is None else metrics
        self.store = SqliteDeliveryStore(
            settings.data_dir / DELIVERIES_DB, settings.sqlite_synchronous
        )
        self.parts: DeliveryParts | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.start()
        await self.store.release_claims()  # this process is the file's only worker
        # the intake reads each lead's conversation itself: it follows the leads only
        follower = SqliteLogFollower(self.events_db, types=(LEAD_CAPTURED,))
        self.parts = build_delivery(
            follower,
            single_events(follower.name),
            self.store,
            self.keys,
            self.catalog,
            self.destinations,
            self.settings.delivery,
            metrics=self.metrics,
            history=self.history,
        )
        self._task = asyncio.create_task(self.parts.worker.run(), name="delivery")

    async def stop(self) -> None:
        if self.parts is not None:
            await self.parts.worker.stop()
            if self._task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            await self.parts.close()
        await self.store.close()


def single_events(name: str) -> DecodeRecord:
    """events.db holds one event per row."""

    def decode(record: LogRecord) -> list[Event]:
        return [decode_record(name, record, decode_event)]

    return decode
