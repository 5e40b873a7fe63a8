"""The flow registry in a distributed service's app: built by the CLI, run by the app.

:func:`distributed_registry` reads ``LEADFLOW_FLOWS_DIR`` (validated: a broken
file stops the start, as before the registry) and the sites file, and builds
the service's :class:`~services.registry.distributed.DistributedRegistry` over
an empty catalog the registry fills. :func:`registry_lifecycle` is the aiohttp
``cleanup_ctx`` of a service that runs one: it loads (and seeds) the registry in
the background, so ``/healthz`` answers while Kafka is away and ``/readyz``
says not ready until the registry is loaded (each app's readiness asks
:attr:`~services.registry.distributed.DistributedRegistry.loaded`), then
follows it until the app's cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from services.distributed.settings import KafkaSettings
from services.registry.distributed import DistributedRegistry
from services.registry.seed import read_flow_documents
from services.sites import load_sites

Lifecycle = Callable[[web.Application], AsyncIterator[None]]


def distributed_registry(
    kafka: KafkaSettings, service: str, flows_dir: Path, sites_file: Path | None
) -> DistributedRegistry:
    """InvalidFlow (every error) for a broken flow file, SitesError for a broken sites
    file. Lead delivery only reads the registry (it writes no topic)."""
    return DistributedRegistry(
        kafka,
        read_flow_documents(flows_dir),
        load_sites(sites_file),
        service=service,
        seed=service != "delivery",
    )


def registry_lifecycle(registry: DistributedRegistry) -> Lifecycle:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        running = asyncio.create_task(registry.run(), name="flow-registry-start")
        yield
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        await registry.stop()

    return lifecycle
