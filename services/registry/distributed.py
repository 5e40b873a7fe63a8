"""One distributed service's flow registry: load, seed, follow, observe.

Every service of the distributed mode (gateway, processor, projector, policy
service, delivery) builds one :class:`DistributedRegistry` over its own (empty)
:class:`~services.catalog.FlowCatalog` and

1. :meth:`DistributedRegistry.load_until_up` before it reports ready: creates
   the ``flows`` topic if missing, publishes the flow files of
   ``LEADFLOW_FLOWS_DIR`` whose content is new (every service but lead delivery
   seeds, serialised by the writers' shared transactional id and
   compare-and-append: :func:`services.registry.kafka.seed_registry`; so the
   order in which they start does not matter and none waits for another kind.
   Delivery writes no topic and only reads: it needs a version only once a
   processor, which seeded first, ran a conversation on it), folds the registry
   into the catalog and checks that every flow the sites file lists is in the
   registry or the files; retried while Kafka is away;
2. :meth:`DistributedRegistry.start_following`: follows the registry in the
   background (a new version or activation is served at once, no restart) and
   refreshes the metrics;
3. :meth:`DistributedRegistry.stop` in its cleanup.

``feed`` (a :class:`~services.registry.feed.RegistryFeed` with a Kafka writer)
is what an admin API publishes and activates through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.catalog import FlowCatalog
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics, registry_topic_specs
from services.registry.feed import RegistryFeed
from services.registry.kafka import (
    KafkaRegistryWriter,
    RegistryFenced,
    RegistryStale,
    registry_follower,
    seed_registry,
)
from services.registry.observe import ObservedCatalog, RegistryMetrics, RegistryObserver
from services.sites import Site, SitesError, check_flows

log = logging.getLogger("leadflow.registry")
OBSERVE_SECONDS = 0.2


class DistributedRegistry:
    def __init__(
        self,
        kafka: KafkaSettings,
        documents: Sequence[Mapping[str, Any]],
        sites: Mapping[str, Site],
        *,
        service: str,
        seed: bool = True,
        catalog: FlowCatalog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kafka = kafka
        self.documents = list(documents)
        self.sites = sites
        self.service = service
        self.seed = seed
        self.catalog = ObservedCatalog(self.observe) if catalog is None else catalog
        self.follower = registry_follower(kafka)
        self.writer = KafkaRegistryWriter(kafka, expected_end=lambda: self.feed.position)
        self.feed = RegistryFeed(
            self.follower, self.catalog, self.writer, retry_on=(KafkaError, OSError)
        )
        self.feed.clock = clock
        self._clock = clock
        self._observer: RegistryObserver | None = None
        self._metrics: RegistryMetrics | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()  # seeded, loaded and the sites checked

    def bind_metrics(self, registry: CollectorRegistry) -> None:
        """Declare the registry's gauges in the service's Prometheus registry."""
        self._metrics = RegistryMetrics(registry)
        self._observer = RegistryObserver(self._metrics, self.service, self._clock)

    @property
    def loaded(self) -> bool:
        """Seeded, folded up to the end and the sites checked (what readiness asks)."""
        return self._ready.is_set()

    async def wait_loaded(self) -> None:
        await self._ready.wait()

    def check_sites(self) -> None:
        """SitesError if a site names a flow neither registry nor files have."""
        known = {*self.feed.registry.flow_ids(), *(str(d["id"]) for d in self.documents)}
        problems = check_flows(self.sites.values(), known)
        if problems:
            raise SitesError("; ".join(problems))

    async def load(self) -> None:
        """Create the topic if missing, seed the files, fold the registry, check the sites."""
        await ensure_topics(self.kafka, registry_topic_specs(self.kafka))
        if self.seed:
            seeded = await seed_registry(self.feed, self.writer, self.documents, clock=self._clock)
        else:
            await self.feed.load()
            seeded = []
        self.check_sites()
        self.observe()
        if self._metrics is not None:
            self._metrics.loaded.set(1)
        self._ready.set()
        log.info(
            "flow registry ready",
            extra={
                "service": self.service,
                "flows": self.feed.registry.flow_ids(),
                "versions": len(self.feed.registry.published),
                "seeded_records": len(seeded),
            },
        )

    async def load_until_up(self, retry_seconds: float = 1.0) -> None:
        """:meth:`load`, retried while Kafka is away (and, slower, while the sites
        file names a flow nobody published yet: an admin may publish it)."""
        while True:
            try:
                await self.load()
                return
            except SitesError as exc:
                log.error("the sites file names unknown flows, not ready: %s", exc)
                await asyncio.sleep(retry_seconds * 10)
            except (KafkaError, OSError, RegistryFenced, RegistryStale, TimeoutError) as exc:
                log.warning("flow registry unavailable, retrying: %s", exc)
                await asyncio.sleep(retry_seconds)

    def observe(self) -> None:
        """Metrics and log lines of what the feed applied since the last call (the
        catalog calls it after every change; a timer refreshes the lag)."""
        if self._observer is None:
            return
        try:
            lag: int | None = sum(self.follower.lag().values())
        except RuntimeError:  # the follower is between two starts
            lag = None
        self._observer.observe(
            self.feed.registry,
            lag=lag,
            record_at=self.feed.applied_at,
            skipped=self.feed.skipped,
            quiet=not self.loaded,
        )

    async def _observe_forever(self) -> None:
        while True:
            await asyncio.sleep(OBSERVE_SECONDS)
            self.observe()

    def start_following(self) -> None:
        """Follow the registry (after :meth:`load`) until :meth:`stop`."""
        self._tasks.append(asyncio.create_task(self.feed.run(), name="flow-registry"))
        self._tasks.append(
            asyncio.create_task(self._observe_forever(), name="flow-registry-metrics")
        )

    async def run(self) -> None:
        """:meth:`load_until_up` then :meth:`start_following`: one task to start in a lifecycle."""
        await self.load_until_up()
        self.start_following()

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.writer.stop()
