"""``leadflow serve``'s flow registry: events.db's ``flow_registry`` table, seeded
from the flow files, loaded before serving, followed (a CLI on the same data
directory may write it), observed as metrics and log lines.

The embedded twin of :class:`services.registry.distributed.DistributedRegistry`:
the same feed, catalog and observer over the SQLite log instead of the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from services.embedded.sqlite_follower import SqliteLogFollower
from services.registry.feed import RegistryFeed
from services.registry.observe import ObservedCatalog, RegistryMetrics, RegistryObserver
from services.registry.seed import plan_seed

log = logging.getLogger("leadflow.registry")


class EmbeddedRegistry:
    def __init__(self, events_db: Path, documents: Sequence[Mapping[str, Any]]) -> None:
        """The writer is the event log (``feed.writer``), set once it is built."""
        self.documents = list(documents)
        self.catalog = ObservedCatalog(self.observe)
        self.follower = SqliteLogFollower(events_db, table="flow_registry")
        self.feed = RegistryFeed(self.follower, self.catalog)
        self._metrics: RegistryMetrics | None = None
        self._observer: RegistryObserver | None = None
        self._following: asyncio.Task[None] | None = None

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        self._metrics = RegistryMetrics(registry)
        self._observer = RegistryObserver(self._metrics, "serve")

    def observe(self) -> None:
        if self._observer is None:
            return
        try:
            lag: int | None = sum(self.follower.lag().values())
        except RuntimeError:  # between the load and the follow
            lag = None
        self._observer.observe(
            self.feed.registry, lag=lag, record_at=self.feed.applied_at, skipped=self.feed.skipped
        )

    async def start(self) -> None:
        """Load the registry, follow it, publish the files whose content is new."""
        await self.feed.load()
        self._following = asyncio.create_task(self.feed.run(), name="flow-registry")
        try:
            await self.feed.append(plan_seed(self.feed.registry, self.documents, time.time()))
        except BaseException:
            await self.stop()
            raise
        self.observe()
        if self._metrics is not None:
            self._metrics.loaded.set(1)
        registry = self.feed.registry
        log.info(
            "flows served: %s",
            ", ".join(f"{f} v{registry.active_version(f)}" for f in registry.flow_ids()),
        )

    async def stop(self) -> None:
        task, self._following = self._following, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
